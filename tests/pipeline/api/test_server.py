"""Serving helpers: the multiprocess metrics folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.api.server import prepare_multiprocess_dir


def test_one_worker_needs_no_multiprocess_folder() -> None:
    assert prepare_multiprocess_dir(1, None) is None


def test_several_workers_get_a_fresh_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first, so that monkeypatch removes the variable prepare_multiprocess_dir sets
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    folder = prepare_multiprocess_dir(2, None)
    assert folder is not None and folder.is_dir() and not any(folder.iterdir())
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder)
    folder.rmdir()


def test_a_configured_folder_is_emptied_of_stale_files(tmp_path: Path) -> None:
    configured = tmp_path / "prom"
    configured.mkdir()
    (configured / "counter_1.db").write_bytes(b"old")
    (configured / "keep.txt").write_text("x", "utf-8")
    assert prepare_multiprocess_dir(2, configured) is None
    assert sorted(p.name for p in configured.iterdir()) == ["keep.txt"]
