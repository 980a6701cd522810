"""Hostile files: every reader of a file we did not just write answers a PipelineError naming it.

Property-based (hypothesis, derandomized and bounded): arbitrary bytes, every truncation of a
valid file, a valid file with bytes flipped, and a valid CSV with garbage cells. Each reader
either refuses the input with a :class:`PipelineError` whose message names the file, or returns
a result that passes the reader's own validity rules; it never writes anything.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from pipeline.artifacts.metadata import METADATA_FILE, ArtifactMetadata, read_metadata_file
from pipeline.artifacts.store import FORECAST_FILE, ArtifactStore, LoadedArtifact
from pipeline.errors import ArtifactError, PipelineError
from pipeline.ingest.csv_formats import read_csv_export
from pipeline.ingest.store import COLUMNS, read_raw, to_csv_text
from pipeline.process.stage import load_training_series, processed_path
from pipeline.series import SeriesId
from tests.helpers.artifacts import write_version
from tests.helpers.exports import write_coingecko_export
from tests.helpers.prices import random_walk_prices
from tests.helpers.processed import write_processed

BTC_1D = SeriesId("bitcoin", "usd", "1d")
EXPORT_NAME = "hostile-export.csv"
T = TypeVar("T")

hostile_settings = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

GARBAGE_CELLS = [
    "", "nan", "NaN", "inf", "-inf", "-1", "0", "abc", "1e400", "\x00", "é", '"', "'",
    "2021-13-45", "9" * 40, ",,,", "\r", "NULL", "None", "0x1f", "1,5", "-0", "1e-400",
]  # fmt: skip


# -- strategies ----------------------------------------------------------------------------------
def truncations(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(0, len(valid)).map(lambda n: valid[:n])


def flips(valid: bytes) -> st.SearchStrategy[bytes]:
    def flip(changes: list[tuple[int, int]]) -> bytes:
        data = bytearray(valid)
        for position, mask in changes:
            data[position % len(data)] ^= mask
        return bytes(data)

    change = st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255))
    return st.lists(change, min_size=1, max_size=8).map(flip)


def garbage_cells(valid: bytes) -> st.SearchStrategy[bytes]:
    lines = valid.decode("utf-8").split("\n")
    cell = st.one_of(st.sampled_from(GARBAGE_CELLS), st.text(max_size=12))

    def inject(changes: list[tuple[int, int, str]]) -> bytes:
        rows = [line.split(",") for line in lines]
        for row, column, text in changes:
            fields = rows[row % len(rows)]
            fields[column % len(fields)] = text
        return "\n".join(",".join(fields) for fields in rows).encode("utf-8", "surrogatepass")

    change = st.tuples(st.integers(0, len(lines) - 1), st.integers(0, 7), cell)
    return st.lists(change, min_size=1, max_size=5).map(inject)


def hostile_bytes(valid: bytes, *, csv: bool) -> st.SearchStrategy[bytes]:
    options = [st.binary(max_size=2048), truncations(valid), flips(valid)]
    if csv:
        options.append(garbage_cells(valid))
    return st.one_of(*options)


# -- checks --------------------------------------------------------------------------------------
def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its sha256: readers must leave it exactly as it was."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def refused_or_valid(
    read: Callable[[], T], name: str, root: Path, check: Callable[[T], None]
) -> str:
    """Run ``read``: a PipelineError must name ``name``; a result must pass ``check``.
    Nothing under ``root`` may change either way. Returns which of the two happened."""
    before = tree(root)
    try:
        result = read()
    except PipelineError as exc:
        assert re.search(re.escape(name), str(exc)), f"{exc!r} does not name {name}"
        outcome = "refused"
    else:
        check(result)
        outcome = "accepted"
    assert tree(root) == before, "a reader changed files"
    if currently_in_test_context():
        event(outcome)  # shown by --hypothesis-show-statistics
    return outcome


def check_export(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == COLUMNS
    assert len(frame) >= 1
    assert str(frame["ds"].dt.tz) == "UTC"
    assert frame["ds"].is_monotonic_increasing and frame["ds"].is_unique
    price = frame["price"].to_numpy(dtype="float64")
    assert np.isfinite(price).all() and (price > 0).all()


def check_training_series(y: pd.Series) -> None:
    assert isinstance(y.index, pd.DatetimeIndex) and str(y.index.tz) == "UTC"
    assert y.index.is_monotonic_increasing and y.index.is_unique
    values = y.to_numpy(dtype="float64")
    assert np.isfinite(values).all() and (values > 0).all()


def check_metadata(meta: ArtifactMetadata) -> None:
    assert isinstance(meta, ArtifactMetadata)


def check_loaded(artifact: LoadedArtifact) -> None:
    assert isinstance(artifact.metadata, ArtifactMetadata)
    assert str(artifact.forecast["ds"].dt.tz) == "UTC"
    assert artifact.forecaster is not None


# -- the CSV importer ----------------------------------------------------------------------------
def _valid_export() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = write_coingecko_export(Path(folder) / EXPORT_NAME, random_walk_prices(20))
        return path.read_bytes()


VALID_EXPORT = _valid_export()


@hostile_settings
@given(data=hostile_bytes(VALID_EXPORT, csv=True))
def test_csv_importer_refuses_hostile_bytes_naming_the_file(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / EXPORT_NAME
        path.write_bytes(data)
        refused_or_valid(lambda: read_csv_export(path), EXPORT_NAME, Path(folder),
                         check_export)  # fmt: skip


def test_csv_importer_reads_the_valid_export(tmp_path: Path) -> None:
    path = tmp_path / EXPORT_NAME
    path.write_bytes(VALID_EXPORT)
    frame = read_csv_export(path)
    check_export(frame)
    assert len(frame) == 20


def _valid_raw() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / EXPORT_NAME
        path.write_bytes(VALID_EXPORT)
        return to_csv_text(read_csv_export(path)).encode("utf-8")


VALID_RAW = _valid_raw()


@hostile_settings
@given(data=hostile_bytes(VALID_RAW, csv=True))
def test_raw_file_reader_refuses_hostile_bytes_naming_the_file(data: bytes) -> None:
    """The raw files under data/raw are read back before every merge."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bitcoin-usd-1d.csv"
        path.write_bytes(data)
        refused_or_valid(lambda: read_raw(path), path.name, Path(folder), check_export)


# -- the processed-data reader -------------------------------------------------------------------
def _valid_processed() -> tuple[bytes, bytes]:
    with tempfile.TemporaryDirectory() as folder:
        path = write_processed(Path(folder), random_walk_prices(30), BTC_1D, source=None)
        return path.read_bytes(), path.with_name(f"{BTC_1D.name}.meta.json").read_bytes()


VALID_PROCESSED, VALID_PROCESSED_META = _valid_processed()


def _read_processed(csv: bytes, meta: bytes) -> str:
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        path = processed_path(data_dir, BTC_1D)
        path.parent.mkdir(parents=True)
        path.write_bytes(csv)
        path.with_name(f"{BTC_1D.name}.meta.json").write_bytes(meta)
        return refused_or_valid(lambda: load_training_series(data_dir, BTC_1D), path.name,
                                data_dir, check_training_series)  # fmt: skip


@hostile_settings
@given(data=hostile_bytes(VALID_PROCESSED, csv=True))
def test_processed_reader_refuses_a_hostile_csv_naming_it(data: bytes) -> None:
    _read_processed(data, VALID_PROCESSED_META)


@hostile_settings
@given(data=hostile_bytes(VALID_PROCESSED_META, csv=False))
def test_processed_reader_refuses_a_hostile_meta_file_naming_the_data(data: bytes) -> None:
    _read_processed(VALID_PROCESSED, data)


def test_processed_reader_reads_the_valid_files() -> None:
    assert _read_processed(VALID_PROCESSED, VALID_PROCESSED_META) == "accepted"


# -- the metadata.json parser and the artifact loader --------------------------------------------
@pytest.fixture
def arima_store(tmp_path: Path) -> tuple[ArtifactStore, ArtifactMetadata]:
    """One ARIMA version (a joblib model file) in a store of its own."""
    store = ArtifactStore(tmp_path / "models")
    meta = write_version(store, BTC_1D, "arima", random_walk_prices(80), horizon=3)
    return store, meta


def _copy_store(store: ArtifactStore, folder: str) -> ArtifactStore:
    root = Path(folder) / "models"
    shutil.copytree(store.root, root)
    return ArtifactStore(root)


def _version_dir(store: ArtifactStore, meta: ArtifactMetadata) -> Path:
    return store.version_dir(BTC_1D, meta.model, meta.version)


def _load(store: ArtifactStore, meta: ArtifactMetadata) -> LoadedArtifact:
    return store.load(BTC_1D, meta.model, meta.version, with_model=True)


def _draw(
    data: st.DataObject, store: ArtifactStore, meta: ArtifactMetadata, name: str
) -> tuple[bytes, bytes]:
    """The version's file ``name`` as written, and a hostile variant of it."""
    valid = (_version_dir(store, meta) / name).read_bytes()
    return valid, data.draw(hostile_bytes(valid, csv=name.endswith(".csv")), label=name)


def _damaged_copy(
    store: ArtifactStore, meta: ArtifactMetadata, folder: str, name: str, content: bytes
) -> tuple[ArtifactStore, Path]:
    """A copy of ``store`` in ``folder`` whose file ``name`` holds ``content``; and the
    copied version's folder."""
    copy = _copy_store(store, folder)
    version_dir = _version_dir(copy, meta)
    (version_dir / name).write_bytes(content)
    return copy, version_dir


@hostile_settings
@given(data=st.data())
def test_metadata_parser_refuses_hostile_bytes_naming_the_file(
    arima_store: tuple[ArtifactStore, ArtifactMetadata], data: st.DataObject
) -> None:
    store, meta = arima_store
    _, hostile = _draw(data, store, meta, METADATA_FILE)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / METADATA_FILE
        path.write_bytes(hostile)
        refused_or_valid(lambda: read_metadata_file(path), str(path), Path(folder),
                         check_metadata)  # fmt: skip


@hostile_settings
@given(data=st.data())
def test_artifact_loader_refuses_any_damaged_file_naming_it(
    arima_store: tuple[ArtifactStore, ArtifactMetadata], data: st.DataObject
) -> None:
    store, meta = arima_store
    name = data.draw(st.sampled_from(sorted([*meta.files, METADATA_FILE])), label="file")
    valid, hostile = _draw(data, store, meta, name)
    with tempfile.TemporaryDirectory() as folder:
        copy, folder_path = _damaged_copy(store, meta, folder, name, hostile)
        outcome = refused_or_valid(lambda: _load(copy, meta), str(folder_path), copy.root,
                                   check_loaded)  # fmt: skip
        if hostile != valid and name != METADATA_FILE:
            assert outcome == "refused"  # a changed listed file never passes its checksum


@hostile_settings
@given(data=st.data())
def test_artifact_loader_refuses_a_forecast_forged_with_its_checksum(
    arima_store: tuple[ArtifactStore, ArtifactMetadata], data: st.DataObject
) -> None:
    """Even a forecast.csv whose sha256 was re-recorded in metadata.json is parsed safely."""
    store, meta = arima_store
    _, hostile = _draw(data, store, meta, FORECAST_FILE)
    with tempfile.TemporaryDirectory() as folder:
        copy, folder_path = _damaged_copy(store, meta, folder, FORECAST_FILE, hostile)
        record = json.loads((folder_path / METADATA_FILE).read_text("utf-8"))
        record["files"][FORECAST_FILE] = hashlib.sha256(hostile).hexdigest()
        (folder_path / METADATA_FILE).write_text(json.dumps(record), "utf-8")
        refused_or_valid(lambda: _load(copy, meta), str(folder_path / FORECAST_FILE), copy.root,
                         check_loaded)  # fmt: skip


def test_a_corrupted_model_file_is_refused_before_joblib_reads_it(
    arima_store: tuple[ArtifactStore, ArtifactMetadata], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, meta = arima_store
    model_file = next(name for name in meta.files if name.endswith(".joblib"))
    path = _version_dir(store, meta) / model_file
    path.write_bytes(b"\x80\x04cos\nsystem\n(S'echo pwned'\ntR.")  # a hostile pickle

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("joblib.load was called on an unverified file")

    monkeypatch.setattr("joblib.load", forbidden)
    with pytest.raises(ArtifactError, match=rf"{re.escape(str(path))}: checksum mismatch"):
        _load(store, meta)


def test_the_valid_artifact_loads(arima_store: tuple[ArtifactStore, ArtifactMetadata]) -> None:
    store, meta = arima_store
    check_loaded(_load(store, meta))
