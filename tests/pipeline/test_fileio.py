"""Atomic writes: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from pipeline.fileio import (
    atomic_open,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    sha256_file,
)


def test_write_replaces_the_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]  # no temporary left behind


def test_a_failed_write_leaves_the_old_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "good data")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_open(target) as fh:
            fh.write("half of the new")
            raise RuntimeError("crash in the middle of the write")
    assert target.read_text() == "good data"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_json_csv_and_checksum(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "m.json").read_text().startswith('{\n  "a"')
    frame = pd.DataFrame({"ds": ["2021-01-01T00:00:00Z"], "price": [1.5]})
    atomic_write_csv(tmp_path / "f.csv", frame)
    assert (tmp_path / "f.csv").read_text() == "ds,price\n2021-01-01T00:00:00Z,1.5\n"
    data = (tmp_path / "f.csv").read_bytes()
    assert sha256_file(tmp_path / "f.csv") == hashlib.sha256(data).hexdigest()
