"""The artifact store: round trips, integrity checks, crash safety, champion management."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pipeline
from pipeline.artifacts import metadata
from pipeline.artifacts import store as artifacts
from pipeline.artifacts.store import (
    CHAMPION_FILE,
    FORECAST_FILE,
    METADATA_FILE,
    SCHEMA_VERSION,
    ArtifactStore,
    read_metadata_file,
)
from pipeline.errors import ArtifactError
from pipeline.forecasters import make_forecaster
from pipeline.series import SeriesId
from tests.helpers import fakes
from tests.helpers.artifacts import write_version
from tests.helpers.paths import TEST_DATA
from tests.helpers.prices import random_walk_prices

SERIES = SeriesId("bitcoin", "usd", "1d")
H = 7


@pytest.fixture
def y() -> pd.Series:
    return random_walk_prices(120)


def write(store: ArtifactStore, y: pd.Series, model: str = "naive", **kw: object) -> str:
    return write_version(store, SERIES, model, y, horizon=H, **kw).version


@pytest.mark.parametrize("model", ["naive", "drift"])
def test_save_load_round_trip_gives_identical_forecasts(
    store: ArtifactStore, y: pd.Series, model: str
) -> None:
    fitted = make_forecaster(model).fit(y)
    meta = store.write_version(SERIES, fitted, y, horizon=H, metrics={"mase": 1.0})
    loaded = store.load(SERIES, model, meta.version, with_model=True)
    assert loaded.forecaster is not None
    pd.testing.assert_frame_equal(loaded.forecaster.predict(H), fitted.predict(H))
    # the precomputed path equals the live forecast (CSV keeps full float precision)
    pd.testing.assert_frame_equal(loaded.forecast, fitted.predict(H), check_freq=False)
    assert loaded.metadata.training.n_points == len(y)
    assert loaded.metadata.training.last_ds == y.index[-1]
    assert loaded.metadata.last_price == pytest.approx(float(y.iloc[-1]))
    assert set(loaded.metadata.files) >= {"state.json", FORECAST_FILE}


def test_metadata_json_records_the_values_of_the_version(
    store: ArtifactStore, y: pd.Series, tmp_path: Path
) -> None:
    data_file = tmp_path / "prices.csv"
    data_file.write_text("ds,price\n2021-01-01T00:00:00Z,20000.0\n", "utf-8")
    before = datetime.now(UTC)
    written = write_version(
        store,
        SERIES,
        "naive",
        y,
        horizon=H,
        metrics={"mase": 1.25, "coverage_95": None},
        data_file=data_file,
        data_source="sample",
        extra={"simulated": True},
    )
    after = datetime.now(UTC)
    folder = store.version_dir(SERIES, "naive", written.version)
    raw = json.loads((folder / METADATA_FILE).read_text("utf-8"))

    assert raw["schema_version"] == SCHEMA_VERSION == 1
    assert (raw["series"], raw["coin"], raw["vs_currency"], raw["freq"]) == (
        "bitcoin-usd-1d", "bitcoin", "usd", "1d",
    )  # fmt: skip
    assert (raw["model"], raw["version"]) == ("naive", folder.name)
    assert raw["horizon"] == H
    assert raw["last_price"] == float(y.iloc[-1])
    assert raw["metrics"] == {"mase": 1.25, "coverage_95": None}
    assert raw["data_file"] == str(data_file) and raw["data_source"] == "sample"
    assert raw["data_sha256"] == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert raw["extra"] == {"simulated": True}
    # Every file of the version but metadata.json itself, each with its real sha256.
    assert set(raw["files"]) == {p.name for p in folder.iterdir()} - {METADATA_FILE}
    assert set(raw["files"]) == {"state.json", "baseline.json", FORECAST_FILE}
    for name, digest in raw["files"].items():
        assert digest == hashlib.sha256((folder / name).read_bytes()).hexdigest(), name
    # The training window is the series'.
    training = read_metadata_file(folder / METADATA_FILE).training
    assert (training.first_ds, training.last_ds, training.n_points) == (
        y.index[0], y.index[-1], len(y),
    )  # fmt: skip
    # What the naive model fitted: the spread of the log returns.
    log_returns = np.diff(np.log(y.to_numpy()))
    assert raw["params"] == {
        "sigma_log_return": pytest.approx(float(np.std(log_returns, ddof=1)), rel=1e-12),
        "n_returns": len(y) - 1,
    }
    # Where and with what it was made.
    created = datetime.fromisoformat(raw["created_at"])
    assert created.tzinfo is not None and before <= created <= after
    assert raw["python_version"] == platform.python_version()
    assert raw["code_version"] == metadata.code_version()
    assert re.fullmatch(r"[0-9a-f]{12}", raw["code_version"]) or raw["code_version"] == (
        pipeline.__version__
    )
    installed = {}
    for name in metadata.TRACKED_LIBRARIES:
        try:
            installed[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    assert raw["libraries"] == installed
    assert {"numpy", "pandas", "scipy"} <= set(installed)
    # The typed model read back is the one the store returned.
    assert store.read_metadata(SERIES, "naive", written.version) == written


def test_the_store_re_exports_the_metadata_names() -> None:
    for name in ("ArtifactMetadata", "ChampionPointer", "TrainingWindow", "read_metadata_file"):
        assert getattr(artifacts, name) is getattr(metadata, name)
    assert (artifacts.METADATA_FILE, artifacts.SCHEMA_VERSION) == ("metadata.json", 1)
    assert set(artifacts.__all__) >= {"ArtifactStore", "LoadedArtifact", "code_version"}


def test_golden_metadata_still_loads() -> None:
    """A metadata.json written by an earlier version of the code must keep loading."""
    meta = read_metadata_file(TEST_DATA / "golden_metadata.json")
    assert meta.schema_version == 1
    assert meta.series_id == SeriesId("bitcoin", "usd", "1d")
    assert meta.model == "arima" and meta.params["order"] == [1, 1, 0]
    assert meta.training.n_points == 1065
    assert meta.metrics["mase"] == pytest.approx(1.0321)
    assert meta.metrics["directional_accuracy"] is None
    assert meta.files["forecast.csv"].startswith("5e1f")


def test_invalid_metadata_file_is_an_artifact_error(tmp_path: Path) -> None:
    path = tmp_path / METADATA_FILE
    path.write_text('{"schema_version": 1}', "utf-8")
    with pytest.raises(ArtifactError, match="metadata.json: invalid metadata"):
        read_metadata_file(path)
    with pytest.raises(ArtifactError, match="metadata file is missing"):
        read_metadata_file(tmp_path / "nope.json")


@pytest.mark.parametrize("damage", ["truncate", "tamper", "delete"])
def test_damaged_model_file_is_refused_naming_the_file(
    store: ArtifactStore, y: pd.Series, damage: str
) -> None:
    version = write(store, y)
    path = store.version_dir(SERIES, "naive", version) / "baseline.json"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "tamper":
        path.write_bytes(data.replace(b"sigma", b"sigmb"))
    else:
        path.unlink()
    expected = "missing" if damage == "delete" else "checksum mismatch"
    with pytest.raises(ArtifactError, match=rf"baseline\.json: .*{expected}"):
        store.load(SERIES, "naive", version, with_model=True)


def test_tampered_forecast_is_refused(store: ArtifactStore, y: pd.Series) -> None:
    version = write(store, y)
    path = store.version_dir(SERIES, "naive", version) / FORECAST_FILE
    path.write_text(path.read_text("utf-8").replace("2021", "2022"), "utf-8")
    with pytest.raises(ArtifactError, match=r"forecast\.csv: checksum mismatch"):
        store.load(SERIES, "naive", version)


def test_library_version_mismatch_is_refused(
    store: ArtifactStore, y: pd.Series, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes.register(monkeypatch, fakes.NumpyBound)
    version = write(store, y, model="numpybound")
    assert store.load(SERIES, "numpybound", version, with_model=True).forecaster is not None
    installed = artifacts.library_versions()
    monkeypatch.setattr(artifacts, "library_versions", lambda: {**installed, "numpy": "0.0.1"})
    with pytest.raises(ArtifactError, match=r"saved with numpy .* but numpy 0\.0\.1 is installed"):
        store.load(SERIES, "numpybound", version)
    # a library the model does not depend on may differ
    monkeypatch.setattr(artifacts, "library_versions", lambda: {**installed, "scipy": "0.0.1"})
    store.load(SERIES, "numpybound", version)


def test_metadata_copied_into_another_folder_is_refused(store: ArtifactStore, y: pd.Series) -> None:
    version = write(store, y)
    src = store.version_dir(SERIES, "naive", version)
    shutil.copytree(src, src.parent / "20990101T000000000000Z-abcdef")
    with pytest.raises(ArtifactError, match="not this folder"):
        store.load(SERIES, "naive", "20990101T000000000000Z-abcdef")


def test_metadata_naming_files_outside_the_folder_is_refused(
    store: ArtifactStore, y: pd.Series
) -> None:
    version = write(store, y)
    path = store.version_dir(SERIES, "naive", version) / METADATA_FILE
    meta = json.loads(path.read_text("utf-8"))
    meta["files"]["../../../champion.json"] = "0" * 64
    path.write_text(json.dumps(meta), "utf-8")
    with pytest.raises(ArtifactError, match="invalid file name"):
        store.verify(SERIES, "naive", version)


def test_unknown_model_in_store_is_an_artifact_error(store: ArtifactStore, y: pd.Series) -> None:
    version = write(store, y)
    src = store.version_dir(SERIES, "naive", version)
    dst = store.series_dir(SERIES) / "mystery" / version
    shutil.copytree(src, dst)
    meta = json.loads((dst / METADATA_FILE).read_text("utf-8"))
    meta["model"] = "mystery"
    (dst / METADATA_FILE).write_text(json.dumps(meta), "utf-8")
    with pytest.raises(ArtifactError, match="cannot use model 'mystery'"):
        store.load(SERIES, "mystery", version)


@pytest.mark.parametrize("where", ["save", "predict"])
def test_crash_while_writing_leaves_no_version_and_the_champion_intact(
    store: ArtifactStore, y: pd.Series, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    old = write(store, y)
    store.promote(SERIES, "naive", old, "first")
    pointer = (store.series_dir(SERIES) / CHAMPION_FILE).read_bytes()
    expected = store.load(SERIES, "naive", old, with_model=True).forecast

    forecaster = make_forecaster("naive").fit(y.iloc[:-5])
    if where == "save":
        real_save = forecaster._save_state

        def save_then_crash(folder: Path) -> list[str]:
            real_save(folder)  # a model file is half way to disk...
            raise OSError("disk full")

        monkeypatch.setattr(forecaster, "_save_state", save_then_crash)
    else:
        monkeypatch.setattr(
            forecaster, "predict", lambda h: (_ for _ in ()).throw(MemoryError("boom"))
        )
    with pytest.raises((OSError, MemoryError)):
        store.write_version(SERIES, forecaster, y.iloc[:-5], horizon=H)

    assert store.list_versions(SERIES, "naive") == [old]
    assert os.listdir(store.series_dir(SERIES) / "naive") == [old]  # temp folder cleaned up
    assert (store.series_dir(SERIES) / CHAMPION_FILE).read_bytes() == pointer
    champ = store.champion(SERIES)
    assert champ is not None and champ.version == old
    reloaded = store.load(SERIES, "naive", old, with_model=True)
    pd.testing.assert_frame_equal(reloaded.forecast, expected)


def test_hidden_temporary_folders_are_not_versions(store: ArtifactStore, y: pd.Series) -> None:
    version = write(store, y)
    (store.series_dir(SERIES) / "naive" / ".tmp-20990101-x").mkdir()
    (store.series_dir(SERIES) / "naive" / "20990101T000000000000Z-nometa").mkdir()
    assert store.list_versions(SERIES, "naive") == [version]
    assert store.latest(SERIES, "naive") == version


def test_versions_list_in_creation_order(store: ArtifactStore, y: pd.Series) -> None:
    written = [write(store, y) for _ in range(4)]  # same second: order must still hold
    assert store.list_versions(SERIES, "naive") == written
    assert store.latest(SERIES, "naive") == written[-1]


def test_promote_records_history_and_rollback_goes_back(store: ArtifactStore, y: pd.Series) -> None:
    assert store.champion(SERIES) is None
    v1, v2 = write(store, y), write(store, y, model="drift")
    store.promote(SERIES, "naive", v1, "first")
    store.promote(SERIES, "drift", v2, "better")
    champ = store.champion(SERIES)
    assert champ is not None
    assert (champ.model, champ.version, champ.reason) == ("drift", v2, "better")
    assert champ.previous == [{"model": "naive", "version": v1}]
    back = store.rollback(SERIES)
    assert (back.model, back.version) == ("naive", v1)
    assert store.champion(SERIES) == back
    with pytest.raises(ArtifactError, match="no previous champion"):
        store.rollback(SERIES)


def test_rollback_skips_broken_and_identical_previous(store: ArtifactStore, y: pd.Series) -> None:
    v1, v2, v3 = write(store, y), write(store, y), write(store, y)
    for v in (v1, v2, v3, v3):  # v3 promoted twice: rolling back must not land on v3 again
        store.promote(SERIES, "naive", v)
    (store.version_dir(SERIES, "naive", v2) / "baseline.json").write_text("{}", "utf-8")
    back = store.rollback(SERIES)
    assert back.version == v1


def test_promote_refuses_a_broken_version(store: ArtifactStore, y: pd.Series) -> None:
    v1, v2 = write(store, y), write(store, y)
    store.promote(SERIES, "naive", v1)
    before = (store.series_dir(SERIES) / CHAMPION_FILE).read_bytes()
    (store.version_dir(SERIES, "naive", v2) / FORECAST_FILE).write_text("x", "utf-8")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        store.promote(SERIES, "naive", v2)
    assert (store.series_dir(SERIES) / CHAMPION_FILE).read_bytes() == before


def test_prune_keeps_the_champion_and_the_last_n(store: ArtifactStore, y: pd.Series) -> None:
    naive = [write(store, y) for _ in range(5)]
    drift = [write(store, y, model="drift") for _ in range(2)]
    store.promote(SERIES, "naive", naive[0])
    removed = store.prune(SERIES, keep=2)
    assert sorted(p.name for p in removed) == sorted(naive[1:3])
    assert store.list_versions(SERIES, "naive") == [naive[0], *naive[3:]]
    assert store.list_versions(SERIES, "drift") == drift
    assert store.load(SERIES, "naive", naive[0]).metadata.version == naive[0]
    assert store.prune(SERIES, keep=2) == []


def test_prune_keeps_the_rollback_target(store: ArtifactStore, y: pd.Series) -> None:
    versions = [write(store, y) for _ in range(4)]
    store.promote(SERIES, "naive", versions[0])
    store.promote(SERIES, "naive", versions[3])
    store.prune(SERIES, keep=1)
    assert store.list_versions(SERIES, "naive") == [versions[0], versions[3]]
    assert store.rollback(SERIES).version == versions[0]


@pytest.mark.parametrize(
    ("model", "version"), [("naive", "../../../../etc"), ("..", "../../outside"), ("naive", "/etc")]
)
def test_refuses_to_read_outside_the_models_folder(
    store: ArtifactStore, model: str, version: str
) -> None:
    with pytest.raises(ArtifactError, match="outside the models folder"):
        store.load(SERIES, model, version)


def test_refuses_a_symlink_leading_out_of_the_models_folder(
    store: ArtifactStore, y: pd.Series, tmp_path: Path
) -> None:
    version = write(store, y)
    outside = tmp_path / "elsewhere"
    shutil.copytree(store.version_dir(SERIES, "naive", version), outside)
    link = store.series_dir(SERIES) / "naive" / "20990101T000000000000Z-linked"
    link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ArtifactError, match="outside the models folder"):
        store.load(SERIES, "naive", link.name, with_model=True)


def test_unreadable_champion_pointer_is_an_artifact_error(store: ArtifactStore) -> None:
    store.series_dir(SERIES).mkdir(parents=True)
    (store.series_dir(SERIES) / CHAMPION_FILE).write_text("{not json", "utf-8")
    with pytest.raises(ArtifactError, match=r"champion\.json: unreadable champion pointer"):
        store.champion(SERIES)


def test_list_series_skips_foreign_folders(store: ArtifactStore, y: pd.Series) -> None:
    write(store, y)
    (store.root / "not a series").mkdir()
    (store.root / ".hidden-usd-1d").mkdir()
    assert store.list_series() == [SERIES]
    assert store.list_models(SERIES) == ["naive"]
