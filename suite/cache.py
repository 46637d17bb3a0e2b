"""The data cache: where it lives, atomic writes, and the manifest that vouches for each file.

Every file the suite fetches or builds into ``$SUITE_DATA_DIR`` is recorded in
``manifest.json`` there: its size, modification time and sha256, and, for a file built from
others (a processed cache), the ``inputs`` it was built from (their hashes, a format
version). :func:`check` says whether a cached file is still what was recorded:

- cheaply, on every use: size and mtime as recorded -> trusted without reading it; otherwise
  it is re-hashed (a file copied or touched but unchanged is re-recorded, not refetched);
- fully, inside :func:`full_check` (``suite data verify`` and ``suite data prepare``): every
  file is re-hashed.

A file is *missing*, *ready* or *corrupt* (:class:`State`); callers fetch or build a file
again when it is not ready.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def cache_dir() -> Path:
    """The data cache: ``$SUITE_DATA_DIR``, default ``~/.cache/suite``."""
    return Path(os.environ.get("SUITE_DATA_DIR", Path.home() / ".cache" / "suite"))


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; it is renamed onto ``path`` only if the body succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            tmp_path.chmod(0o644)  # mkstemp makes files owner-only; the cache is shared
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            if tmp_path.is_dir():
                shutil.rmtree(tmp_path)
            else:
                tmp_path.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via :func:`atomic_path`: readers see the old or the new file."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mismatch(digest: str, expected: str) -> str:
    """A hash mismatch in words, for one-line errors."""
    return f"sha256 {digest[:12]}... != expected {expected[:12]}..."


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in chunks (cached files run to hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- manifest


class State(str, enum.Enum):
    """A cached file's (or data set's) state; compares equal to its name."""

    MISSING = "missing"
    READY = "ready"
    CORRUPT = "corrupt"

    def __str__(self) -> str:
        return self.value


def worst(states: Iterable[State]) -> State:
    """A data set's state from its files': corrupt if any is, else missing if any is."""
    states = list(states)
    for state in (State.CORRUPT, State.MISSING):
        if state in states:
            return state
    return State.READY


@dataclass(frozen=True)
class Verdict:
    """What :func:`check` found: the state and, when not ready, what is wrong in words."""

    state: State
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.state is State.READY


_FULL = False


@contextlib.contextmanager
def full_check() -> Iterator[None]:
    """Within this block :func:`check` re-hashes every file instead of trusting size + mtime."""
    global _FULL
    previous, _FULL = _FULL, True
    try:
        yield
    finally:
        _FULL = previous


def _key(path: Path) -> str:
    """A file's manifest key: its path inside the cache (absolute for a file elsewhere)."""
    resolved = Path(path).resolve()
    root = cache_dir().resolve()
    return resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else str(resolved)


@contextlib.contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold the cache's lock ``name`` (a file ``.<name>.lock`` in the cache): processes that
    prepare the same data side by side (``suite experiment --jobs``) take turns, and the
    later one finds the earlier one's result."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


_parsed: tuple[tuple[Any, ...], dict[str, Any]] | None = None


def _read() -> dict[str, Any]:
    """The manifest's entries (do not mutate); parsed again only when the file changes, since
    :func:`check` runs per file on every use."""
    global _parsed
    path = cache_dir() / MANIFEST
    try:
        stat = path.stat()
        stamp = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if _parsed is None or _parsed[0] != stamp:
            entries = json.loads(path.read_text())
            _parsed = stamp, entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        return {}  # no manifest yet, or an unreadable one: every file is re-hashed once
    return _parsed[1]


def _plain(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` as the manifest stores them (JSON), so that a recorded set compares equal."""
    return json.loads(json.dumps(dict(inputs), sort_keys=True))


def entry(path: Path) -> dict[str, Any] | None:
    """The manifest's record of a cached file, or None."""
    found = _read().get(_key(path))
    return found if isinstance(found, dict) else None


def record(path: Path, sha256: str | None = None, inputs: Mapping[str, Any] | None = None
           ) -> str:
    """Record a file just fetched or built (hashing it unless ``sha256`` is given); its sha256."""
    path = Path(path)
    stat = path.stat()
    digest = sha256 or sha256_file(path)
    item: dict[str, Any] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    if inputs is not None:
        item["inputs"] = _plain(inputs)
    with exclusive("manifest"):  # manifest updates, one process at a time
        entries = {**_read(), _key(path): item}
        atomic_write_bytes(cache_dir() / MANIFEST,
                           json.dumps(entries, indent=1, sort_keys=True).encode())
    return digest


def check(path: Path, sha256: str | None = None, inputs: Mapping[str, Any] | None = None
          ) -> Verdict:
    """Whether the cached file at ``path`` is intact: trusted when its size and mtime are as
    recorded, re-hashed otherwise (and always inside :func:`full_check`).

    ``sha256`` is the hash the file must have (a declared data file); without it the
    manifest's recorded hash is the reference (a built file), and ``inputs`` must equal what it
    was recorded as built from: a built file recorded from other inputs, or not at all, is
    not the one asked for, so it is missing (to be built).
    """
    path = Path(path)
    if not path.is_file():
        return Verdict(State.MISSING, "not in the cache")
    known = entry(path)
    if inputs is not None and (known is None or known.get("inputs") != _plain(inputs)):
        # not the file these inputs make (stale, or from before the manifest): build it
        return Verdict(State.MISSING, "built from other inputs" if known else
                       "not in the cache's manifest")
    expected = sha256 or (known or {}).get("sha256")
    if expected is None:
        return Verdict(State.CORRUPT, "not in the cache's manifest")
    stat = path.stat()
    recorded = known is not None and known.get("sha256") == expected
    if recorded and not _FULL and (stat.st_size, stat.st_mtime_ns) == (
            known.get("size"), known.get("mtime_ns")):
        return Verdict(State.READY)
    digest = sha256_file(path)
    if digest != expected:
        size = (f"{stat.st_size} bytes, recorded {known['size']}; "
                if recorded and known.get("size") != stat.st_size else "")
        return Verdict(State.CORRUPT, size + mismatch(digest, expected))
    if not recorded or (stat.st_size, stat.st_mtime_ns) != (known.get("size"),
                                                             known.get("mtime_ns")):
        with contextlib.suppress(OSError):  # a read-only cache is re-hashed on each use instead
            record(path, digest, known.get("inputs") if known else None)
    return Verdict(State.READY)


def built(path: Path, inputs: Mapping[str, Any], build: Callable[[Path], None]) -> Path:
    """The cached file ``path`` that ``build(tmp)`` writes from ``inputs`` (the hashes and
    format version it depends on); built again when missing, corrupt or built from other
    inputs, so a processed cache is never served for data it was not made from."""
    verdict = check(path, inputs=inputs)
    if verdict.ready:
        return path
    with atomic_path(path) as tmp:
        build(tmp)
    record(path, inputs=inputs)
    if verdict.state is State.CORRUPT:
        log.warning("%s was damaged (%s): built it again", path, verdict.reason)
    return path
