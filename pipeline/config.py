"""Every knob of the pipeline, read from the environment and ``.env`` (pydantic-settings).

Use :func:`get_settings` everywhere; never read ``os.environ`` elsewhere.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from pipeline.config_groups import LedgerSettings, StorageSettings
from pipeline.errors import UsageError
from pipeline.evaluation.champion import DEFAULT_PROMOTION_TOLERANCE
from pipeline.series import (
    FREQUENCY_TABLE,
    SeriesId,
    check_coin,
    check_vs,
    freq_offset,
    frequency,
)

_NAMED_SOURCES = ("auto", "coingecko", "sample")
#: The accepted ``SOURCE`` values (``csv:PATH`` names an export file), and as a phrase.
SOURCES: tuple[str, ...] = (*_NAMED_SOURCES, "csv:PATH")
SOURCE_CHOICES = f"{', '.join(SOURCES[:-1])} or {SOURCES[-1]}"


def is_valid_source(value: str) -> bool:
    """Whether ``value`` is one of :data:`SOURCES`."""
    return value in _NAMED_SOURCES or (value.startswith("csv:") and bool(value[4:]))


CommaList = Annotated[list[str], NoDecode]

#: The HTTP header that carries ``ADMIN_API_KEY`` (:attr:`Settings.admin_api_key`) to the API's
#: admin routes: the API checks it, the scheduler sends it, CORS allows it.
ADMIN_KEY_HEADER = "X-Admin-Key"


def _raw_minutes(freq: str) -> int:
    """Minutes between new prices of ``freq``'s raw file: the default refresh cadence."""
    return int(freq_offset(FREQUENCY_TABLE[freq].raw).total_seconds() // 60)


class Settings(StorageSettings, LedgerSettings):
    """Settings; each field is the upper-case environment variable of the same name (the object
    storage and ledger groups are inherited from :mod:`pipeline.config_groups`)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", validate_default=True
    )

    # Where things live
    data_dir: Path = Path("data")
    models_dir: Path = Path("models")
    reports_dir: Path = Path("reports")
    # What to forecast
    coins: CommaList = ["bitcoin"]
    vs_currency: str = "usd"
    frequencies: CommaList = ["1d", "1h"]

    # Ingestion
    source: str = Field("auto", description=" | ".join(SOURCES))
    history_days: int = Field(365, ge=1, le=5000, description="days fetched on a first ingest")
    coingecko_base_url: str = "https://api.coingecko.com/api/v3"
    coingecko_api_key: SecretStr | None = None
    coingecko_api_plan: Literal["auto", "demo", "pro"] = "auto"
    http_connect_timeout: float = Field(5.0, gt=0)
    http_read_timeout: float = Field(30.0, gt=0)
    http_max_attempts: int = Field(5, ge=1, le=20)
    http_retry_budget: float = Field(60.0, gt=0, description="max seconds spent retrying")
    http_backoff_initial: float = Field(1.0, ge=0)
    http_backoff_max: float = Field(20.0, ge=0)
    coingecko_calls_per_minute: float = Field(
        25.0,
        ge=0,
        description="CoinGecko calls a cycle or refresh makes per minute, shared by every "
        "process and cluster worker (CoinGecko allows about 30 without a key); 0 = no limit",
    )
    coingecko_burst: int = Field(
        5, ge=1, description="CoinGecko calls allowed at once before the per-minute pace applies"
    )
    breaker_failures: int = Field(
        3,
        ge=0,
        description="circuit breaker: consecutive failed calls to a provider (after their "
        "retries) that open its circuit; while open nothing calls it; 0 = off",
    )
    breaker_cooldown_seconds: float = Field(
        900.0,
        gt=0,
        description="circuit breaker: how long an open circuit refuses calls before one probe "
        "call is let through (half-open); the probe's success closes it, its failure reopens it",
    )
    max_jump: float = Field(0.8, gt=0, description="largest accepted one-step relative move")
    sample_seed: int = 42

    # Processing
    max_fill_gap: int = Field(3, ge=0, description="gaps up to this many steps are forward-filled")

    # Training and serving horizons (steps)
    horizon_1h: int = Field(FREQUENCY_TABLE["1h"].horizon, ge=1, le=1000)
    horizon_4h: int = Field(FREQUENCY_TABLE["4h"].horizon, ge=1, le=1000)
    horizon_1d: int = Field(FREQUENCY_TABLE["1d"].horizon, ge=1, le=1000)
    n_jobs: int = Field(1, description="parallel fits (joblib); -1 = all cores")
    keep_versions: int = Field(5, ge=1)

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    api_key: SecretStr | None = None
    admin_api_key: SecretStr | None = None
    cors_origins: CommaList = []
    rate_limit_per_minute: int = Field(600, ge=0, description="per client; 0 disables")
    max_body_bytes: int = Field(65536, ge=1024)
    max_batch_size: int = Field(100, ge=1)
    model_poll_seconds: float = Field(
        0.0, ge=0, description="re-check champion pointers this often (s); 0 = off"
    )
    prometheus_multiproc_dir: Path | None = Field(
        None, description="set by api_service.py for several workers (multiprocess metrics)"
    )
    api_loop: Literal["asyncio", "uvloop"] = Field(
        "asyncio",
        description="event loop of the API workers: asyncio accepts every pending connection "
        "at once, so 1,000+ concurrent clients are all served; uvloop is ~20% faster with few "
        "connections (e.g. behind a pooling proxy) but accepts one connection per loop turn, so "
        "under many concurrent connections new ones wait in the listen queue and time out",
    )
    api_backlog: int = Field(
        4096,
        ge=64,
        le=65535,
        description="listen backlog: connections the kernel queues until a worker accepts "
        "them (Linux caps it at net.core.somaxconn)",
    )
    api_keepalive_seconds: int = Field(
        5, ge=1, le=3600, description="an idle keep-alive connection is closed after this long"
    )
    api_limit_concurrency: int = Field(
        0,
        ge=0,
        description="per worker: above this many open connections and tasks new requests "
        "get 503 at once (a memory guard); 0 = no limit",
    )
    api_max_open_files: int = Field(
        0,
        ge=0,
        description="file-descriptor limit (RLIMIT_NOFILE) the API raises its soft limit to "
        "at start-up; each connection is one descriptor; 0 = the hard limit",
    )

    # Live feed (the /ws WebSocket) and the dashboard
    ws_max_connections: int = Field(
        1000,
        ge=1,
        description="WebSocket connections on /ws each API worker accepts at once; one more is "
        "answered with an error event and closed (code 1013)",
    )
    ws_heartbeat_seconds: float = Field(
        20.0,
        gt=0,
        description="seconds between heartbeat events on /ws; the stale checks behind health "
        "events run at the same pace",
    )

    # Serving freshness
    stale_after_periods: float = Field(
        2.0,
        gt=0,
        description="answers are flagged stale when their forecast issue is older than this "
        "many periods of the series' frequency",
    )
    stale_limit_periods: float = Field(
        0.0,
        ge=0,
        description="predictions answer 503 when the forecast issue is older than this many "
        "periods; 0 = off (always answer, flagged stale)",
    )

    # Serving fallbacks
    enable_fallback: bool = Field(
        False,
        description="the default of the predict requests' `fallback` flag: when the asked model "
        "cannot answer, serve the champion, its previous version, a path derived from a finer "
        "timeframe or a naive random walk, labelled in the answer's `fallback` block",
    )
    fallback_volatility_points: int = Field(
        90, ge=3, le=10000, description="recent processed points the naive fallback's bands use"
    )

    # Retraining scheduler
    retrain_at: str = Field("02:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description="UTC HH:MM")
    retrain_catchup: bool = True
    stage_timeout_seconds: float = Field(1800.0, gt=0)
    gate_config: Path = Field(
        Path(__file__).resolve().parents[1] / "quality_gate.json",
        description="thresholds of the quality gate",
    )
    backtest_origins: int = Field(
        8, ge=1, le=200, description="origins of the selection backtest (training and the gate)"
    )
    backtest_window: int = Field(1000, ge=10, description="points each selection-backtest fit sees")
    promotion_tolerance: float = Field(
        DEFAULT_PROMOTION_TOLERANCE, ge=0, description="allowed relative MASE worsening"
    )
    api_url: str | None = None
    alert_webhook_url: SecretStr | None = Field(
        None, description="secret: its path or query usually carries a token"
    )
    scheduler_metrics_port: int = Field(9100, ge=0, le=65535, description="0 disables")
    dask_scheduler_address: str | None = Field(
        None,
        description="run the cycle and the refresh on this Dask cluster (e.g. "
        "tcp://10.0.0.5:8786): one task per series; unset = on this machine",
    )

    # Refreshing forecasts between trainings
    refresh_enabled: bool = Field(
        True, description="the scheduler re-issues every served forecast after each period"
    )
    refresh_minutes_1h: int = Field(
        _raw_minutes("1h"), ge=0, le=10080, description="minutes between refreshes; 0 = never"
    )
    refresh_minutes_4h: int = Field(
        _raw_minutes("4h"), ge=0, le=10080, description="minutes between refreshes; 0 = never"
    )
    refresh_minutes_1d: int = Field(
        _raw_minutes("1d"), ge=0, le=10080, description="minutes between refreshes; 0 = never"
    )
    refresh_offset_seconds: float = Field(
        120.0, ge=0, le=3600, description="refresh this long after a period closes (UTC)"
    )
    refresh_keep_issues: int = Field(
        48, ge=1, description="forecast issues kept per version (older ones are pruned)"
    )

    # Experiment tracking (optional: pip install -r requirements-mlflow.txt)
    mlflow_tracking_uri: SecretStr | None = Field(
        None,
        description="secret (it can carry a password): the MLflow tracking server, e.g. "
        "http://127.0.0.1:5000; unset = no tracking and mlflow is never imported",
    )
    mlflow_experiment: str = Field(
        "crypto-forecast", min_length=1, description="the MLflow experiment training runs log to"
    )

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _store_urls(cls, data: Any) -> Any:
        """``<FOLDER>=s3://...``: the folder becomes the URL's working copy (see store_url)."""
        from pipeline.storage.url import working_copies

        return working_copies(data, cls.model_fields["storage_cache_dir"].default)

    @field_validator("coins", "frequencies", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("frequencies")
    @classmethod
    def _known_freqs(cls, value: list[str]) -> list[str]:
        bad = [f for f in value if f not in FREQUENCY_TABLE]
        if bad:
            raise ValueError(f"unknown frequency {bad}: use {', '.join(FREQUENCY_TABLE)}")
        return value

    @field_validator("coins")
    @classmethod
    def _valid_coins(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one coin is needed")
        try:
            return [check_coin(coin) for coin in value]
        except UsageError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("vs_currency")
    @classmethod
    def _valid_vs(cls, value: str) -> str:
        try:
            return check_vs(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("source")
    @classmethod
    def _valid_source(cls, value: str) -> str:
        if is_valid_source(value):
            return value
        raise ValueError(f"use {SOURCE_CHOICES}")

    @field_validator("coingecko_base_url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("alert_webhook_url")
    @classmethod
    def _valid_webhook(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never quotes the value: it is a secret.
        if value is not None and value.get_secret_value():
            if not value.get_secret_value().startswith(("http://", "https://")):
                raise ValueError("must start with http:// or https://")
            return value
        return None

    def store_url(self, folder: Literal["data_dir", "models_dir", "reports_dir"]) -> str | None:
        """The ``s3://`` URL that ``folder`` was set to (it is then that URL's working copy
        under ``STORAGE_CACHE_DIR``), or None for a local folder."""
        from pipeline.storage.url import StoreUrl

        return StoreUrl.of_copy(getattr(self, folder), self.storage_cache_dir)

    def horizon(self, freq: str) -> int:
        """Maximum forecast horizon (steps) served for ``freq`` (its ``HORIZON_<freq>`` setting)."""
        steps: int = getattr(self, horizon_field(frequency(freq).name))
        return steps

    def refresh_interval(self, freq: str) -> timedelta | None:
        """How often ``freq`` series are refreshed (``REFRESH_MINUTES_<freq>``); ``None``: never."""
        minutes: int = getattr(self, refresh_field(frequency(freq).name))
        return timedelta(minutes=minutes) if minutes else None

    def series(self) -> list[SeriesId]:
        """Every configured series, in configuration order."""
        return [SeriesId(c, self.vs_currency, f) for c in self.coins for f in self.frequencies]


def horizon_field(freq: str) -> str:
    """The settings field holding the horizon of ``freq``: one per frequency-table entry."""
    return f"horizon_{freq}"


def refresh_field(freq: str) -> str:
    """The settings field holding the refresh cadence of ``freq`` (minutes)."""
    return f"refresh_minutes_{freq}"


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into a :class:`UsageError` naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors()
        )
        raise UsageError(f"invalid setting(s): {problems}") from None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return load_settings()
