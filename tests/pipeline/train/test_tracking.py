"""MLflow tracking: never imported when off, never failing training, and a real MLflow server.

The server runs from its own virtual environment (``.venv-mlflow``, made by ``make
mlflow-server``; CI makes it): the full ``mlflow`` package brings pyarrow and Flask, which our
own environment does without, while the client we depend on is ``mlflow-skinny``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from pipeline.artifacts.store import ArtifactStore
from pipeline.config import get_settings
from pipeline.series import SeriesId
from pipeline.train.stage import train_many
from tests.helpers.processes import free_port, wait_until

ROOT = Path(__file__).resolve().parents[3]
SERVER = ROOT / ".venv-mlflow" / "bin" / "mlflow"
BTC_1D = SeriesId("bitcoin", "usd", "1d")


@pytest.mark.slow
def test_without_a_tracking_uri_mlflow_is_never_imported(y: pd.Series) -> None:
    code = (
        "import sys\n"
        "from pipeline.artifacts.store import ArtifactStore\n"
        "from pipeline.config import get_settings\n"
        "from pipeline.series import SeriesId\n"
        "from pipeline.train.stage import train_many\n"
        "s = get_settings()\n"
        "(r,) = train_many([SeriesId('bitcoin', 'usd', '1d')], s, models=['naive', 'drift'])\n"
        "store = ArtifactStore(s.models_dir)\n"
        "other = 'drift' if r.champion == 'naive' else 'naive'\n"
        "store.promote(r.series, other, r.versions[other].version, 'test')\n"
        "store.rollback(r.series)\n"
        "print(r.champion, sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    champion, modules = done.stdout.split(" ", 1)
    assert champion in {"naive", "drift"} and modules.strip() == "[]"


@pytest.mark.slow
def test_an_unreachable_server_never_fails_training(
    y: pd.Series, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("mlflow", reason="the MLflow extra is not installed")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    get_settings.cache_clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.train.tracking"):
        (result,) = train_many([BTC_1D], get_settings(), models=["naive"])
    assert result.champion == "naive"
    assert ArtifactStore(get_settings().models_dir).champion(BTC_1D) is not None
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("MLflow tracking of bitcoin-usd-1d failed") for m in messages)
    assert any(m.startswith("MLflow alias of bitcoin-usd-1d not moved") for m in messages)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 with a SQLite backend; its URL."""
    pytest.importorskip("mlflow", reason="the MLflow extra is not installed")
    if not SERVER.is_file():
        pytest.skip(f"no MLflow server at {SERVER}: run `make mlflow-server` (CI does)")
    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log_path = folder / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(SERVER), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
             "--artifacts-destination", str(folder / "artifacts")],
            cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=5) as http:
            wait_until(http, "/health", proc, log_path, timeout=240)
        yield url
    finally:  # the server and the uvicorn process it starts, as one process group
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.mark.slow
def test_runs_versions_and_the_champion_alias_reach_a_real_server(
    y: pd.Series, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT", "tracking-test")
    get_settings.cache_clear()
    settings = get_settings()
    (result,) = train_many([BTC_1D], settings, models=["naive", "drift"])
    store = ArtifactStore(settings.models_dir)
    pointer = store.champion(BTC_1D)
    assert pointer is not None and result.champion == pointer.model

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    experiment = client.get_experiment_by_name("tracking-test")
    assert experiment is not None
    runs = {r.data.params["model"]: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["drift", "naive"]
    for model, run in runs.items():
        meta = result.versions[model]
        assert run.data.params["version"] == meta.version
        assert run.data.params["series"] == "bitcoin-usd-1d"
        assert run.data.params["train.n_points"] == str(meta.training.n_points)
        assert run.data.metrics["holdout_mase"] == pytest.approx(result.metrics[model]["mase"])
        assert run.data.metrics["backtest_mase"] == pytest.approx(result.backtest[model]["mase"])
        assert run.info.status == "FINISHED"
        files = {a.path for a in client.list_artifacts(run.info.run_id, "version")}
        assert "version/metadata.json" in files and "version/forecast.csv" in files

    def alias() -> tuple[str, str]:
        found = client.get_model_version_by_alias("bitcoin-usd-1d", "champion")
        return found.tags["pipeline.model"], found.tags["pipeline.version"]

    assert alias() == (pointer.model, pointer.version)
    other = "drift" if pointer.model == "naive" else "naive"
    store.promote(BTC_1D, other, result.versions[other].version, "test")
    assert alias() == (other, result.versions[other].version)
    store.rollback(BTC_1D)
    assert alias() == (pointer.model, pointer.version)
