"""The data cache: verified, ordered, atomic fetching; seeded splits; padding."""

import gzip
import hashlib
import io
import logging
import os
import random
import tarfile
from pathlib import Path

import pytest
import torch

from suite import cache
from suite.data import (
    DebianMember,
    PyPIMember,
    RemoteFile,
    SplitDataModule,
    URLMember,
    atomic_path,
    balanced_subset,
    fetch,
    pad_sequences,
    split_indices,
    text_lines,
)
from suite.errors import DataError
from suite.sources import download_sdist, package_indexes

PAYLOAD = b"id\tscore\ttext\n1\t2.5\tgood\n"


def tar_with_members(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_with(member: str, data: bytes) -> bytes:
    return tar_with_members({member: data})


def test_fetch_tries_sources_in_order_and_verifies(data_cache, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"tampered")
    archive = tmp_path / "good.tar.gz"
    archive.write_bytes(tar_with("inner/data.tsv", PAYLOAD))
    file = RemoteFile("toy/data.tsv", hashlib.sha256(PAYLOAD).hexdigest(), (
        URLMember(f"file://{tmp_path}/missing.txt"),
        URLMember(f"file://{bad}"),
        URLMember(f"file://{archive}", member="inner/data.tsv"),
    ))
    assert not file.available()
    path = fetch(file)
    assert path == data_cache / "toy/data.tsv" and path.read_bytes() == PAYLOAD
    assert (path.stat().st_mode & 0o777) == 0o644
    assert fetch(file) == path  # cached: no source is touched again


def test_fetch_gunzips_and_reports_every_failure(data_cache, tmp_path):
    gz = tmp_path / "data.gz"
    gz.write_bytes(gzip.compress(PAYLOAD))
    file = RemoteFile("toy/plain.tsv", hashlib.sha256(PAYLOAD).hexdigest(),
                      (URLMember(f"file://{gz}", gunzip=True),))
    assert fetch(file).read_bytes() == PAYLOAD
    wrong = RemoteFile("toy/wrong.tsv", "0" * 64, (URLMember(f"file://{gz}"),
                                                  URLMember(f"file://{tmp_path}/nope")))
    with pytest.raises(DataError, match="sha256.*download failed"):
        fetch(wrong)
    assert not (data_cache / "toy/wrong.tsv").exists()


def test_missing_tool_is_a_data_error(data_cache, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DataError, match="apt-get"):
        DebianMember("no-such-package", "x").read()


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_split_indices_partition_and_seed():
    parts = split_indices(103, [0.8, 0.1, 0.1], seed=3)
    assert [len(p) for p in parts] == [82, 10, 11]
    assert sorted(torch.cat(parts).tolist()) == list(range(103))
    assert all(torch.equal(a, b) for a, b in zip(parts, split_indices(103, [0.8, 0.1, 0.1], 3),
                                                 strict=True))
    assert not torch.equal(parts[0], split_indices(103, [0.8, 0.1, 0.1], seed=4)[0])


def test_balanced_subset():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    idx = balanced_subset(labels, 31, seed=0)
    counts = torch.bincount(labels[idx])
    assert len(set(idx.tolist())) == 31 and counts.max() - counts.min() <= 1


def test_pad_sequences():
    padded, lengths = pad_sequences([torch.ones(3, 2), torch.ones(1, 2)], value=-1)
    assert padded.shape == (2, 3, 2) and lengths.tolist() == [3, 1]
    assert (padded[1, 1:] == -1).all()


def test_text_lines_number_the_non_blank_lines_and_refuse_other_encodings(tmp_path):
    path = tmp_path / "table.tsv"
    path.write_bytes("a\tb\n\n  \r\ncaf\u00e9\r\n".encode())
    assert list(text_lines(path)) == [(1, "a\tb"), (4, "caf\u00e9")]
    path.write_bytes("caf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        list(text_lines(path))


class Numbers(SplitDataModule):
    """Parts of 4, 2 and 3 numbers; counts its builds."""

    builds = 0

    def build_parts(self) -> dict[str, list[int]]:
        self.builds += 1
        return {"train": [0, 1, 2, 3], "val": [4, 5], "test": [6, 7, 8]}

    def loader(self, part: str) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(self.parts[part], batch_size=8)


def test_split_data_module_builds_its_parts_once_and_serves_each():
    data = Numbers()
    data.setup("fit")
    data.setup("test")
    assert data.builds == 1
    loaders = (data.train_dataloader(), data.val_dataloader(), data.test_dataloader())
    assert [next(iter(loader)).tolist() for loader in loaders] == [[0, 1, 2, 3], [4, 5], [6, 7, 8]]


# ----------------------------------------------------------------------------- integrity


def served(tmp_path, data: bytes = PAYLOAD) -> RemoteFile:
    """A RemoteFile whose one source is a local file holding ``data``."""
    source = tmp_path / "source.tsv"
    source.write_bytes(data)
    return RemoteFile("toy/data.tsv", hashlib.sha256(data).hexdigest(),
                      (URLMember(source.as_uri()),))


def test_a_damaged_file_is_detected_on_use_and_fetched_again(data_cache, tmp_path, caplog):
    file = served(tmp_path)
    path = fetch(file)
    assert file.state() == "ready" and cache.entry(path)["size"] == len(PAYLOAD)
    damages = {"truncated": lambda: path.write_bytes(PAYLOAD[:10]),
               "one byte flipped": lambda: path.write_bytes(bytes([PAYLOAD[0] ^ 1]) + PAYLOAD[1:]),
               "overwritten": lambda: path.write_bytes(b"x" * len(PAYLOAD))}
    for damage in damages.values():
        damage()
        assert file.state() == "corrupt"
        with caplog.at_level(logging.WARNING):
            assert fetch(file).read_bytes() == PAYLOAD
        assert "fetched it again" in caplog.text and file.state() == "ready"


def test_the_cheap_check_trusts_size_and_mtime_and_the_full_check_rehashes(data_cache, tmp_path):
    file = served(tmp_path)
    path = fetch(file)
    stat = path.stat()
    path.write_bytes(b"x" * len(PAYLOAD))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size and mtime as recorded
    assert file.state() == "ready"
    with cache.full_check():
        assert file.state() == "corrupt"
        assert fetch(file).read_bytes() == PAYLOAD
    path.touch()  # same bytes, new mtime: re-hashed once and re-recorded, not fetched
    (tmp_path / "source.tsv").unlink()
    assert fetch(file) == path and cache.entry(path)["mtime_ns"] == path.stat().st_mtime_ns


def test_a_damaged_file_no_source_can_replace_is_one_line_naming_the_fix(data_cache, tmp_path):
    file = served(tmp_path)
    path = fetch(file)
    path.write_bytes(PAYLOAD[:10])
    (tmp_path / "source.tsv").write_bytes(b"moved on")
    with pytest.raises(DataError) as err:
        fetch(file)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert f"10 bytes, recorded {len(PAYLOAD)}; sha256" in message and "source.tsv" in message
    assert message.endswith("run `suite data prepare toy`")
    assert file.state() == "corrupt"  # left for `suite list` to show


def test_a_file_from_before_the_manifest_is_hashed_once_then_trusted(data_cache, tmp_path):
    file = served(tmp_path)
    file.local.parent.mkdir(parents=True)
    file.local.write_bytes(PAYLOAD)
    assert cache.entry(file.local) is None and file.state() == "ready"
    assert cache.entry(file.local)["sha256"] == file.sha256


def test_a_built_file_is_rebuilt_when_damaged_or_its_inputs_change(data_cache):
    builds = []

    def build(path):
        builds.append(path)
        path.write_bytes(b"built from " + source_hash[-1].encode())

    source_hash = ["a" * 64]
    target = data_cache / "toy" / "processed.bin"
    inputs = {"source_sha256": source_hash[-1], "version": 1}
    assert cache.check(target, inputs=inputs).state == "missing"
    assert cache.built(target, inputs, build) == target and len(builds) == 1
    assert cache.built(target, inputs, build) == target and len(builds) == 1  # ready: kept
    target.write_bytes(target.read_bytes()[:5])  # a truncated processed file
    assert cache.check(target, inputs=inputs).state == "corrupt"
    cache.built(target, inputs, build)
    assert len(builds) == 2 and target.read_bytes() == b"built from " + b"a" * 64
    source_hash.append("b" * 64)  # the source changed: not served under the old build
    changed = {**inputs, "source_sha256": source_hash[-1]}
    assert cache.check(target, inputs=changed).state == "missing"
    cache.built(target, changed, build)
    assert len(builds) == 3 and target.read_bytes().endswith(b"b" * 64)


def test_a_failed_build_leaves_nothing_behind(data_cache):
    target = data_cache / "toy" / "processed.bin"

    def build(path):
        path.write_bytes(b"half")
        raise DataError("bad row")

    with pytest.raises(DataError, match="bad row"):
        cache.built(target, {"version": 1}, build)
    assert not target.exists() and cache.entry(target) is None


def sdist_index(tmp_path, monkeypatch, listed_sha: str | None = None) -> Path:
    """A package index (PEP 503, file://) holding ``toy-1.0.tar.gz`` whose setup.py would leave
    a mark if anything ran it; returns the mark's path."""
    mark = tmp_path / "setup-ran"
    package = tar_with_members({"toy-1.0/setup.py": f"open({str(mark)!r}, 'w')\n".encode(),
                                "toy-1.0/data.tsv": PAYLOAD})
    page = tmp_path / "index" / "toy"
    page.mkdir(parents=True)
    (page / "toy-1.0.tar.gz").write_bytes(package)
    digest = listed_sha or hashlib.sha256(package).hexdigest()
    (page / "index.html").write_text(
        f'<html><body><a href="toy-1.0.tar.gz#sha256={digest}">toy-1.0.tar.gz</a></body></html>')
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "index").as_uri())
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no extra indexes from pip.conf
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    return mark


def test_an_sdist_is_downloaded_and_hash_checked_without_running_its_build_code(
        data_cache, tmp_path, monkeypatch):
    mark = sdist_index(tmp_path, monkeypatch)
    file = RemoteFile("toy/data.tsv", hashlib.sha256(PAYLOAD).hexdigest(),
                      (PyPIMember("toy", "1.0", "toy-1.0/data.tsv", sdist=True),))
    assert fetch(file).read_bytes() == PAYLOAD and not mark.exists()
    kept = next((data_cache / "_downloads").rglob("*.tar.gz"))
    assert cache.entry(kept)["sha256"] == hashlib.sha256(kept.read_bytes()).hexdigest()
    kept.write_bytes(kept.read_bytes()[:40])  # a truncated download: fetched again
    file.local.unlink()
    assert fetch(file).read_bytes() == PAYLOAD


def test_an_sdist_whose_bytes_differ_from_the_index_hash_is_refused(data_cache, tmp_path,
                                                                     monkeypatch):
    sdist_index(tmp_path, monkeypatch, listed_sha="0" * 64)
    assert package_indexes() == [(tmp_path / "index").as_uri()]
    with pytest.raises(DataError, match="toy-1.0.tar.gz: sha256 differs from the index's"):
        download_sdist("toy", "1.0", tmp_path)
    with pytest.raises(DataError, match="no sdist of version 2.0"):
        download_sdist("toy", "2.0", tmp_path)


def test_a_truncated_archive_is_a_data_error_and_the_next_source_is_tried(data_cache, tmp_path):
    payload = random.Random(0).randbytes(20_000)  # incompressible: the cut reaches the member
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(tar_with("inner/data.tsv", payload)[:2_000])
    good = tmp_path / "good.tsv"
    good.write_bytes(payload)
    file = RemoteFile("toy/data.tsv", hashlib.sha256(payload).hexdigest(),
                      (URLMember(archive.as_uri(), member="inner/data.tsv"),
                       URLMember(good.as_uri())))
    with pytest.raises(DataError, match="cut.tar.gz :: inner/data.tsv: not a readable"):
        file.sources[0].read()
    assert fetch(file).read_bytes() == payload


def test_runs_side_by_side_download_a_package_once(data_cache):
    """Two processes needing the same package (``suite experiment --jobs 2``) take turns: the
    later one finds the earlier one's download instead of failing to rename its own onto it."""
    import threading
    import time

    from suite import sources

    folder = data_cache / "_downloads" / "pypi-demo-1.0-0"
    calls = []

    def download(tmp: Path) -> None:
        calls.append(tmp)
        time.sleep(0.2)  # both callers are inside before the first one finishes
        (tmp / "demo-1.0.whl").write_bytes(b"wheel")

    found: list[Path] = []
    threads = [threading.Thread(target=lambda: found.append(sources._download(folder, download)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert found == [folder / "demo-1.0.whl"] * 2
