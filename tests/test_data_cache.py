"""The data cache: verified, ordered, atomic fetching; seeded splits; padding."""

import gzip
import hashlib
import io
import tarfile

import pytest
import torch

from suite.data import (
    DataError,
    DebianMember,
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

PAYLOAD = b"id\tscore\ttext\n1\t2.5\tgood\n"


def tar_with(member: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


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
