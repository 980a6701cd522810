"""What a model version records about itself: the typed ``metadata.json`` and champion pointer.

:class:`ArtifactMetadata` (with its :data:`SCHEMA_VERSION`) names the series, the model and its
parameters, the training window, the data file and its sha256, every file of the version with
its sha256, the code version and the versions of the libraries the model depends on.
:class:`ChampionPointer` is the small ``champion.json`` that says which version is served.
:mod:`pipeline.artifacts.store` writes and verifies both.
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, ValidationError

from pipeline import __version__
from pipeline.errors import ArtifactError
from pipeline.fileio import sha256_file
from pipeline.series import SeriesId

if TYPE_CHECKING:
    from pipeline.forecasters import Forecaster

logger = logging.getLogger(__name__)

#: Version of the ``metadata.json`` layout; readers refuse a newer one.
SCHEMA_VERSION = 1
METADATA_FILE = "metadata.json"
#: Libraries whose installed version every ``metadata.json`` records.
TRACKED_LIBRARIES = ("numpy", "pandas", "statsmodels", "prophet", "joblib", "scipy", "arch")


class TrainingWindow(BaseModel):
    """The training data of a version: first and last timestamps and the number of points."""

    first_ds: datetime
    last_ds: datetime
    n_points: int


class ArtifactMetadata(BaseModel):
    """Everything needed to trust and reproduce one model version."""

    schema_version: int = SCHEMA_VERSION
    series: str
    coin: str
    vs_currency: str
    freq: str
    model: str
    version: str
    params: dict[str, Any] = Field(default_factory=dict)
    training: TrainingWindow
    horizon: int
    last_price: float
    metrics: dict[str, float | None] = Field(default_factory=dict)
    data_file: str | None = None
    data_sha256: str | None = None
    data_source: str | None = None
    files: dict[str, str] = Field(default_factory=dict, description="file name -> sha256")
    created_at: datetime
    code_version: str
    python_version: str
    libraries: dict[str, str] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict, description="e.g. calibration data")

    @property
    def series_id(self) -> SeriesId:
        return SeriesId(self.coin, self.vs_currency, self.freq)


class ChampionPointer(BaseModel):
    """``champion.json``: the served version, why, and the earlier champions (newest first)."""

    model: str
    version: str
    promoted_at: datetime
    reason: str = ""
    previous: list[dict[str, str]] = Field(default_factory=list)


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`TRACKED_LIBRARIES` (the ones that are installed)."""
    versions = {}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def code_version() -> str:
    """The git commit of the code when available, else the package version."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip() or __version__
    except (OSError, subprocess.SubprocessError):
        return __version__


def describe_version(
    series: SeriesId,
    forecaster: Forecaster,
    y: pd.Series,
    *,
    version: str,
    horizon: int,
    files: dict[str, str],
    metrics: dict[str, float | None] | None = None,
    data_file: Path | None = None,
    data_source: str | None = None,
    extra: dict[str, Any] | None = None,
) -> ArtifactMetadata:
    """The metadata of a new version of ``forecaster`` fitted on ``y``; ``files`` maps each of
    the version's file names to its sha256, and ``data_file`` (when given) is checksummed."""
    return ArtifactMetadata(
        series=series.name,
        coin=series.coin,
        vs_currency=series.vs,
        freq=series.freq,
        model=forecaster.name,
        version=version,
        params=json.loads(json.dumps(forecaster.get_params(), default=str)),
        training=TrainingWindow(
            first_ds=y.index[0].to_pydatetime(),
            last_ds=y.index[-1].to_pydatetime(),
            n_points=len(y),
        ),
        horizon=horizon,
        last_price=float(y.iloc[-1]),
        metrics=metrics or {},
        data_file=str(data_file) if data_file else None,
        data_sha256=sha256_file(data_file) if data_file else None,
        data_source=data_source,
        files=files,
        created_at=datetime.now(UTC),
        code_version=code_version(),
        python_version=platform.python_version(),
        libraries=library_versions(),
        extra=extra or {},
    )


def read_metadata_file(path: Path) -> ArtifactMetadata:
    """Parse a ``metadata.json``; a missing or invalid file is an :class:`ArtifactError`."""
    try:
        return ArtifactMetadata.model_validate_json(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: metadata file is missing") from None
    except (OSError, ValidationError, ValueError) as exc:
        raise ArtifactError(f"{path}: invalid metadata: {exc}") from exc


def read_forecast_file(path: Path) -> pd.DataFrame:
    """Parse a version's ``forecast.csv``: ``ds`` (UTC, strictly increasing) and finite numeric
    columns (``mean`` and the interval bounds); anything else is an :class:`ArtifactError`."""
    try:
        frame = pd.read_csv(path, dtype={"ds": "string"})
        frame["ds"] = pd.to_datetime(frame["ds"], utc=True, format="ISO8601")
        values = frame.drop(columns="ds").apply(pd.to_numeric).astype("float64")
        if "mean" not in values:
            raise ValueError("no mean column")
    except (OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
        raise ArtifactError(f"{path}: unreadable forecast: {exc}") from exc
    ds = pd.DatetimeIndex(frame["ds"])
    if frame.empty or ds.hasnans or not (ds.is_monotonic_increasing and ds.is_unique):
        raise ArtifactError(f"{path}: unreadable forecast: no rows, or ds not strictly increasing")
    if not np.isfinite(values.to_numpy()).all():
        raise ArtifactError(f"{path}: unreadable forecast: a value is missing or infinite")
    frame[values.columns] = values
    return frame
