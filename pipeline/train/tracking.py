"""Optional MLflow tracking: every trained version is an MLflow run, every champion an alias.

With ``MLFLOW_TRACKING_URI`` set (and the extra installed: ``pip install -r
requirements-mlflow.txt``), :func:`log_training` records each version a training run wrote as
one run of the ``MLFLOW_EXPERIMENT`` experiment: its parameters (the model's configuration and
what fitting chose, the series, the training window, the holdout), its selection-backtest
metrics (``backtest_*``) and holdout metrics (``holdout_*``), and the version folder as the
run's artifacts (``version/``). The folder is registered as a version of the registered model
named after the series (``bitcoin-usd-1d``), tagged with our model and version names, and
:func:`log_promotion` moves that registered model's ``champion`` alias (MLflow's own
champion/challenger convention) whenever a champion is promoted or rolled back, whichever
command did it.

Unset, nothing here imports mlflow. Tracking never fails training or a promotion: a missing
package or an unreachable server is logged as a warning (requests to the server time out after
``MLFLOW_HTTP_REQUEST_TIMEOUT`` seconds, 10 unless set, with at most
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` retries, 1 unless set).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from pipeline.series import SeriesId

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from pipeline.artifacts.store import ArtifactStore
    from pipeline.train.stage import TrainResult

logger = logging.getLogger(__name__)

#: The alias of the served version in the series' registered model.
CHAMPION_ALIAS = "champion"
#: Tags that tie an MLflow run and model version to our version folder.
MODEL_TAG = "pipeline.model"
VERSION_TAG = "pipeline.version"
SERIES_TAG = "pipeline.series"
#: MLflow's limit on a parameter value's length (we cut longer ones).
_MAX_PARAM = 500


def enabled(settings: Settings) -> bool:
    return settings.mlflow_tracking_uri is not None


def _client(settings: Settings) -> MlflowClient | None:
    """An MLflow client for the tracking server; None (logged) when mlflow is not installed."""
    uri = settings.mlflow_tracking_uri
    if uri is None:
        return None
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # our stdout is ours
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        logger.warning(
            "MLFLOW_TRACKING_URI is set but mlflow is not installed: "
            "pip install -r requirements-mlflow.txt (tracking skipped)"
        )
        return None
    url = uri.get_secret_value()
    return MlflowClient(tracking_uri=url, registry_uri=url)


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), item, out)
        return
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    out[prefix] = text[:_MAX_PARAM]


def run_params(result: TrainResult, model: str) -> dict[str, str]:
    """The parameters one version's run records (flattened, as text)."""
    meta = result.versions[model]
    params: dict[str, str] = {}
    _flat("", meta.params, params)
    _flat("", {
        "series": meta.series, "model": model, "version": meta.version,
        "horizon": meta.horizon, "train.first_ds": meta.training.first_ds.isoformat(),
        "train.last_ds": meta.training.last_ds.isoformat(),
        "train.n_points": meta.training.n_points, "holdout": meta.extra.get("holdout"),
        "data_source": meta.data_source, "data_sha256": meta.data_sha256,
        "code_version": meta.code_version,
    }, params)  # fmt: skip
    return params


def run_metrics(result: TrainResult, model: str) -> dict[str, float]:
    """``backtest_<metric>`` and ``holdout_<metric>`` of one model (finite values only)."""
    out: dict[str, float] = {}
    for prefix, metrics in (
        ("backtest", result.backtest.get(model, {})),
        ("holdout", result.metrics.get(model, {})),
    ):
        for name, value in metrics.items():
            if isinstance(value, int | float) and math.isfinite(value):
                out[f"{prefix}_{name}"] = float(value)
    return out


def _experiment(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def _registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description=f"Versions of the {name} forecasters (the champion alias serves)"
        )


def log_training(settings: Settings, result: TrainResult, store: ArtifactStore) -> list[str]:
    """Record every version of ``result`` as an MLflow run and registered model version.

    Returns the run ids (empty when tracking is off or failed).
    """
    if not enabled(settings) or not result.versions:
        return []
    client = _client(settings)
    if client is None:
        return []
    from mlflow.entities import Metric, Param

    series = result.series
    run_ids: list[str] = []
    try:
        experiment = _experiment(client, settings.mlflow_experiment)
        _registered_model(client, series.name)
        for model, meta in sorted(result.versions.items()):
            tags = {SERIES_TAG: series.name, MODEL_TAG: model, VERSION_TAG: meta.version}
            run = client.create_run(experiment, tags=tags, run_name=f"{series.name}/{model}")
            run_id = run.info.run_id
            now = int(time.time() * 1000)
            metrics = [Metric(k, v, now, 0) for k, v in run_metrics(result, model).items()]
            params = [Param(k, v) for k, v in run_params(result, model).items()]
            client.log_batch(run_id, metrics=metrics, params=params)
            folder = store.version_dir(series, model, meta.version)
            client.log_artifacts(run_id, str(folder), "version")
            client.set_terminated(run_id)
            client.create_model_version(
                series.name,
                f"{run.info.artifact_uri}/version",
                run_id=run_id,
                tags=tags,
                await_creation_for=0,
            )
            run_ids.append(run_id)
    except Exception as exc:  # noqa: BLE001 - tracking must never fail training
        logger.warning("MLflow tracking of %s failed: %s", series.name, exc)
    else:
        logger.info("logged %d run(s) of %s to MLflow", len(run_ids), series.name)
    return run_ids


def log_promotion(settings: Settings, series: SeriesId, model: str, version: str) -> str | None:
    """Point the series' ``champion`` alias at the MLflow version of ``model``/``version``.

    Returns the MLflow model version number, or None (tracking off, the version was never
    tracked, or the server failed; logged).
    """
    if not enabled(settings):
        return None
    client = _client(settings)
    if client is None:
        return None
    try:
        for found in client.search_model_versions(f"name='{series.name}'"):
            tags = found.tags or {}
            if tags.get(VERSION_TAG) == version and tags.get(MODEL_TAG) == model:
                client.set_registered_model_alias(series.name, CHAMPION_ALIAS, found.version)
                logger.info(
                    "MLflow: %s@%s is now version %s (%s/%s)",
                    series.name, CHAMPION_ALIAS, found.version, model, version,
                )  # fmt: skip
                return str(found.version)
    except Exception as exc:  # noqa: BLE001 - tracking must never fail a promotion
        logger.warning("MLflow alias of %s not moved: %s", series.name, exc)
        return None
    logger.warning(
        "MLflow alias of %s not moved: %s/%s was not tracked (trained without tracking?)",
        series.name, model, version,
    )  # fmt: skip
    return None


def promoted(series: SeriesId, model: str, version: str) -> None:
    """The artifact store's promotion hook: move the alias under the current settings."""
    from pipeline.config import get_settings

    try:
        settings = get_settings()
    except Exception:  # noqa: BLE001 - settings errors surface elsewhere, never here
        return
    if enabled(settings):
        log_promotion(settings, series, model, version)
