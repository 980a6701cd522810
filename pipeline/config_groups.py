"""Groups of settings that :class:`pipeline.config.Settings` inherits: object storage and the
forecast ledger (its trust summary and the live promotion rule). Every field is the upper-case
environment variable of the same name; use :func:`pipeline.config.get_settings`."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from pipeline.evaluation.live import DEFAULT_LIVE_MIN_POINTS, DEFAULT_LIVE_TOLERANCE


class StorageSettings(BaseSettings):
    """Object storage: DATA_DIR, MODELS_DIR and REPORTS_DIR may be s3://bucket/prefix URLs."""

    storage_cache_dir: Path = Field(
        Path(tempfile.gettempdir()) / "crypto-forecast-store",
        description="where the local working copies of s3:// folders live",
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, moto...); unset = AWS_ENDPOINT_URL/AWS"
    )
    s3_access_key_id: SecretStr | None = Field(None, description="unset = AWS_ACCESS_KEY_ID")
    s3_secret_access_key: SecretStr | None = Field(
        None, description="secret; unset = AWS_SECRET_ACCESS_KEY"
    )
    s3_region: str | None = Field(None, description="unset = AWS_DEFAULT_REGION")
    s3_timeout_seconds: float = Field(30.0, gt=0, description="connect and read timeout (s)")


class LedgerSettings(BaseSettings):
    """The forecast ledger, its trust summary and the live promotion rule."""

    ledger_url: SecretStr | None = Field(
        None,
        description="secret (it can carry a password): the ledger database, e.g. "
        "postgresql://user:pass@host/db or sqlite:///path; default <MODELS_DIR>/ledger.sqlite3",
    )
    ledger_busy_timeout_seconds: float = Field(
        30.0, gt=0, le=600, description="how long a ledger write waits for a lock (s)"
    )
    ledger_scale_window: int = Field(
        1000, ge=2, description="points up to the origin of an issue that scale its MASE"
    )
    trust_window: Literal["7d", "30d", "90d", "all"] = Field(
        "30d", description="the ledger window behind the trust summary of a model"
    )
    trust_min_points: int = Field(
        30, ge=1, description="matured points needed before the trust status is ok/degraded"
    )
    trust_max_wis_ratio: float = Field(
        1.2, gt=0, description="trust is degraded when live WIS / naive WIS is above this"
    )
    trust_in_predictions: bool = Field(
        True, description="add the trust block (ages, live coverage, status) to predict answers"
    )
    trust_refresh_seconds: float = Field(
        60.0,
        ge=0,
        description="re-read the ledger's trust summaries this often (s); 0 = at start-up and "
        "after each model reload only",
    )
    accuracy_cache_seconds: float = Field(
        60.0,
        ge=0,
        description="an API worker serves a /api/v1/accuracy answer from its cache this long "
        "(s) and after a model reload reads the ledger again; 0 = read it for every request",
    )
    live_promotion_min_points: int = Field(
        DEFAULT_LIVE_MIN_POINTS,
        ge=2,
        description="matured ledger points a candidate and the champion both need before "
        "live WIS can block a promotion",
    )
    live_promotion_tolerance: float = Field(
        DEFAULT_LIVE_TOLERANCE, ge=0, description="allowed relative live WIS worsening"
    )
    live_calibration_fallback: bool = Field(
        False,
        description="a champion failing the live 95% coverage test is replaced by the best "
        "calibrated model",
    )
