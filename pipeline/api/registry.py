"""In-memory model registry for the API: load once, answer from memory, swap atomically.

:func:`load_registry` reads every series' champion and the latest version of every other model
through :meth:`ArtifactStore.load` (checksums verified; the model file is never unpickled: the
API serves the precomputed ``forecast.csv`` path). Each :class:`ServedModel` keeps that path as
JSON fragments, so a request only slices and joins bytes. :class:`RegistryHolder` owns the
current :class:`Registry`; a reload builds a new one beside it and replaces the reference in one
assignment, so a request sees either the old or the new registry, never a mix.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.artifacts.store import CHAMPION_FILE, METADATA_FILE, ArtifactStore, LoadedArtifact
from pipeline.errors import PipelineError
from pipeline.series import SeriesId, freq_offset

logger = logging.getLogger(__name__)

LEVELS: tuple[int, ...] = (80, 95)
Z95 = 1.959964
#: Data is "stale" when its last point is older than this many steps of its frequency.
FRESHNESS_STEPS = 3


def _num(value: float) -> str:
    """JSON text of a float (``null`` for NaN/inf, which JSON cannot carry)."""
    return json.dumps(float(value)) if math.isfinite(value) else "null"


def _iso(ts: datetime | pd.Timestamp) -> str:
    """``2026-11-21T00:00:00Z`` (UTC, second precision)."""
    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


_second: list[Any] = [-1, ""]


def now_iso() -> str:
    """The current UTC time with milliseconds, e.g. ``2026-11-21T12:00:00.123Z`` (hot path)."""
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second[1]}.{int((now - second) * 1000):03d}Z"


def confidence_score(mean: float, lower_95: float, upper_95: float, last_price: float) -> float:
    """Probability of the predicted direction of move at step 1 (see api_models for the rule).

    Log price at step 1 ~ Normal(log(mean), sd) with sd = (log upper_95 - log lower_95) / (2 z95).
    ``p_up = P(price > last_price)``; the score is ``p_up`` if ``mean >= last_price`` else
    ``1 - p_up``. A degenerate interval (sd = 0) gives 1.0, or 0.5 when mean equals last_price.
    """
    if min(mean, lower_95, upper_95, last_price) <= 0:
        return 0.5
    sd = (math.log(upper_95) - math.log(lower_95)) / (2 * Z95)
    diff = math.log(mean) - math.log(last_price)
    if sd <= 0 or not math.isfinite(sd):
        return 0.5 if diff == 0 else 1.0
    p_up = 0.5 * math.erfc(-diff / (sd * math.sqrt(2.0)))  # Phi(diff / sd)
    score = p_up if mean >= last_price else 1.0 - p_up
    return min(1.0, max(0.0, score))


class NotServedError(PipelineError):
    """A request names something that is not loaded (HTTP 404)."""

    def __init__(self, message: str, available: Sequence[str]) -> None:
        super().__init__(message)
        self.available = list(available)


class StepsError(PipelineError):
    """More steps than the artifact's horizon (HTTP 422)."""

    def __init__(self, message: str, maximum: int) -> None:
        super().__init__(message)
        self.maximum = maximum


@dataclass
class ServedModel:
    """One loaded version with its forecast path pre-serialised for fast answers."""

    series: SeriesId
    model: str
    version: str
    is_champion: bool
    horizon: int
    last_price: float
    trained_at: datetime
    data_end: datetime
    metrics: dict[str, float | None]
    params: dict[str, Any]
    data_source: str | None
    confidence: float
    #: step 1 point forecast
    first_mean: float
    #: per level-set key ("80,95", "80", "95"): JSON objects of the v1 forecast points
    points: dict[str, list[bytes]] = field(repr=False, default_factory=dict)
    #: compat: point forecasts as JSON numbers
    means: list[bytes] = field(repr=False, default_factory=list)
    #: compat: per level, ``{"step":k,"lower":..,"upper":..}`` objects
    intervals: dict[int, list[bytes]] = field(repr=False, default_factory=dict)
    #: v1 response head (everything but prediction_timestamp and forecasts), without braces
    head: bytes = field(repr=False, default=b"")
    #: compat response tail: ``"model_type":..,"metadata":..,"series":..``
    compat_tail: bytes = field(repr=False, default=b"")
    summary: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.series.name}/{self.model}"

    @property
    def age_seconds(self) -> float:
        return (datetime.now(UTC) - self.trained_at).total_seconds()

    def with_champion(self, is_champion: bool) -> ServedModel:
        """A copy flagged (or not) as its series' champion."""
        if is_champion == self.is_champion:
            return self
        return build_served(self.series, self.model, self.version, is_champion, self._artifact)

    _artifact: LoadedArtifact | None = field(repr=False, default=None)

    # -- answers ------------------------------------------------------------------------------
    def check_steps(self, steps: int) -> None:
        if steps > self.horizon:
            raise StepsError(
                f"steps={steps} is beyond the horizon of {self.key} ({self.version}): "
                f"the maximum is {self.horizon}",
                self.horizon,
            )

    def predict_json(self, steps: int, levels: Sequence[int] = LEVELS) -> bytes:
        """The v1 predict response body for ``steps`` steps (raises StepsError)."""
        self.check_steps(steps)
        points = self.points[levels_key(levels)]
        return b"".join(
            (
                b"{",
                self.head,
                b',"prediction_timestamp":"',
                now_iso().encode(),
                b'","forecasts":[',
                b",".join(points[:steps]),
                b"]}",
            )
        )

    def compat_json(self, steps: int, level: int) -> bytes:
        """The compatibility ``/predict`` body (predictions, intervals at ``level``)."""
        self.check_steps(steps)
        return b"".join(
            (
                b'{"predictions":[',
                b",".join(self.means[:steps]),
                b'],"timestamp":"',
                now_iso().encode(),
                b'","confidence_intervals":[',
                b",".join(self.intervals[level][:steps]),
                b'],"confidence_level":',
                str(level / 100).encode(),
                b",",
                self.compat_tail,
                b"}",
            )
        )


def levels_key(levels: Sequence[int]) -> str:
    return ",".join(str(level) for level in sorted(set(levels)))


def build_served(
    series: SeriesId, model: str, version: str, is_champion: bool, art: LoadedArtifact | None
) -> ServedModel:
    """Pre-serialise one loaded artifact."""
    if art is None:
        raise PipelineError(f"{series.name}/{model}/{version}: no artifact to serve")
    meta = art.metadata
    frame = art.forecast
    needed = ["ds", "mean"] + [f"{side}_{lv}" for lv in LEVELS for side in ("lower", "upper")]
    missing = [col for col in needed if col not in frame.columns]
    if missing:
        raise PipelineError(f"{art.path}/forecast.csv: missing columns {missing}")
    if frame.empty:
        raise PipelineError(f"{art.path}/forecast.csv: the forecast path is empty")
    values = {col: frame[col].to_numpy(dtype=float) for col in needed[1:]}
    if not np.all(np.isfinite(values["mean"])) or np.any(values["mean"] <= 0):
        raise PipelineError(f"{art.path}/forecast.csv: non-finite or non-positive mean forecast")
    stamps = [_iso(ts) for ts in frame["ds"]]
    horizon = min(len(frame), int(meta.horizon))
    trained_at = meta.created_at if meta.created_at.tzinfo else meta.created_at.replace(tzinfo=UTC)
    data_end = meta.training.last_ds
    data_end = data_end if data_end.tzinfo else data_end.replace(tzinfo=UTC)
    first = {col: float(values[col][0]) for col in needed[1:]}
    score = confidence_score(first["mean"], first["lower_95"], first["upper_95"], meta.last_price)

    num = {col: [_num(v) for v in values[col][:horizon]] for col in needed[1:]}
    points: dict[str, list[bytes]] = {}
    for subset in ((80, 95), (80,), (95,)):
        rows = []
        for i in range(horizon):
            parts = [f'"timestamp":"{stamps[i]}","step":{i + 1},"mean":{num["mean"][i]}']
            for lv in LEVELS:
                if lv in subset:
                    parts.append(
                        f'"lower_{lv}":{num[f"lower_{lv}"][i]},"upper_{lv}":{num[f"upper_{lv}"][i]}'
                    )
                else:
                    parts.append(f'"lower_{lv}":null,"upper_{lv}":null')
            rows.append(("{" + ",".join(parts) + "}").encode())
        points[levels_key(subset)] = rows
    intervals = {
        lv: [
            f'{{"step":{i + 1},"lower":{lo},"upper":{hi}}}'.encode()
            for i, (lo, hi) in enumerate(zip(num[f"lower_{lv}"], num[f"upper_{lv}"], strict=True))
        ]
        for lv in LEVELS
    }
    head_fields = {
        "series": series.name,
        "coin": series.coin,
        "vs_currency": series.vs,
        "timeframe": series.freq,
        "model": model,
        "model_version": version,
        "is_champion": is_champion,
        "trained_at": _iso(trained_at),
        "data_end": _iso(data_end),
        "last_price": float(meta.last_price),
        "predicted_price": first["mean"],
        "confidence_score": round(score, 6),
        "horizon": horizon,
    }
    metrics = {k: (v if v is None or math.isfinite(v) else None) for k, v in meta.metrics.items()}
    compat_meta = {"trained_at": _iso(trained_at), "metrics": metrics, "version": version}
    summary = {
        "series": series.name,
        "coin": series.coin,
        "vs_currency": series.vs,
        "timeframe": series.freq,
        "model": model,
        "version": version,
        "is_champion": is_champion,
        "trained_at": _iso(trained_at),
        "data_end": _iso(data_end),
        "horizon": horizon,
        "last_price": float(meta.last_price),
        "metrics": metrics,
        "params": meta.params,
        "data_source": meta.data_source,
    }
    return ServedModel(
        series=series,
        model=model,
        version=version,
        is_champion=is_champion,
        horizon=horizon,
        last_price=float(meta.last_price),
        trained_at=trained_at,
        data_end=data_end,
        metrics=metrics,
        params=meta.params,
        data_source=meta.data_source,
        confidence=score,
        first_mean=first["mean"],
        points=points,
        means=[n.encode() for n in num["mean"]],
        intervals=intervals,
        head=json.dumps(head_fields, separators=(",", ":"))[1:-1].encode(),
        compat_tail=(
            f'"model_type":{json.dumps(model)},"metadata":'
            f"{json.dumps(compat_meta, separators=(',', ':'))},"
            f'"series":{json.dumps(series.name)}'
        ).encode(),
        summary=summary,
        _artifact=art,
    )


@dataclass
class Registry:
    """An immutable snapshot of everything served; replaced whole on reload."""

    models: dict[tuple[str, str], ServedModel]
    champions: dict[str, str]
    loaded_at: datetime
    errors: list[str]
    signature: tuple[Any, ...]
    models_json: bytes = b""

    @property
    def empty(self) -> bool:
        return not self.models

    def series_names(self) -> list[str]:
        return sorted({name for name, _ in self.models})

    def get(self, series: SeriesId, model: str = "champion") -> ServedModel:
        """The served model, or :class:`NotServedError` listing what is available."""
        names = self.series_names()
        if series.name not in names:
            raise NotServedError(
                f"no model is loaded for {series.name}; available series: "
                f"{', '.join(names) or 'none (no artifacts: run the pipeline first)'}",
                names,
            )
        if model == "champion":
            champ = self.champions.get(series.name)
            if champ is None:
                available = self.model_names(series.name)
                raise NotServedError(
                    f"{series.name} has no champion; ask for a model by name: "
                    f"{', '.join(available)}",
                    available,
                )
            model = champ
        served = self.models.get((series.name, model))
        if served is None:
            available = ["champion", *self.model_names(series.name)]
            raise NotServedError(
                f"model {model!r} is not loaded for {series.name}; available: "
                f"{', '.join(available)}",
                available,
            )
        return served

    def find(self, series_name: str, model: str = "champion") -> ServedModel | None:
        """Fast lookup by series name; None when absent (then :meth:`get` explains)."""
        if model == "champion":
            champ = self.champions.get(series_name)
            if champ is None:
                return None
            model = champ
        return self.models.get((series_name, model))

    def model_names(self, series_name: str) -> list[str]:
        return sorted(m for s, m in self.models if s == series_name)


def store_signature(store: ArtifactStore) -> tuple[Any, ...]:
    """A cheap fingerprint of what is on disk: champion pointers and the latest versions."""
    parts: list[Any] = []
    for series in store.list_series():
        pointer = store.series_dir(series) / CHAMPION_FILE
        try:
            stat = pointer.stat()
            parts.append((series.name, CHAMPION_FILE, stat.st_mtime_ns, stat.st_size))
        except FileNotFoundError:
            parts.append((series.name, CHAMPION_FILE, None))
        for model in store.list_models(series):
            parts.append((series.name, model, store.latest(series, model)))
    return tuple(parts)


def _load_one(
    store: ArtifactStore, series: SeriesId, model: str, version: str, is_champion: bool
) -> ServedModel:
    art = store.load(series, model, version)
    return build_served(series, model, version, is_champion, art)


class _Loader:
    """Builds the models of a new registry, falling back to ``previous`` on failures."""

    def __init__(self, store: ArtifactStore, previous: Registry | None) -> None:
        self.store = store
        self.previous = previous
        self.models: dict[tuple[str, str], ServedModel] = {}
        self.champions: dict[str, str] = {}
        self.errors: list[str] = []

    def fail(self, what: str, exc: Exception, series: SeriesId, model: str | None) -> None:
        self.errors.append(str(exc))
        logger.error("cannot load %s: %s", what, exc, extra={"series": series.name, "model": model})

    def keep_previous(self, series: SeriesId, model: str | None, champion: bool) -> None:
        if self.previous is None:
            return
        if model is None:
            model = self.previous.champions.get(series.name)
        old = self.previous.models.get((series.name, model)) if model else None
        if model is None or old is None:
            return
        self.models[(series.name, model)] = old
        if champion and self.previous.champions.get(series.name) == model:
            self.champions[series.name] = model
        logger.warning(
            "keeping %s/%s version %s",
            series.name,
            model,
            old.version,
            extra={"series": series.name, "model": model, "version": old.version},
        )

    def load_champion(self, series: SeriesId) -> None:
        try:
            pointer = self.store.champion(series)
        except PipelineError as exc:
            self.fail(f"the champion pointer of {series.name}", exc, series, None)
            self.keep_previous(series, None, champion=True)
            return
        if pointer is None:
            return
        try:
            self.models[(series.name, pointer.model)] = _load_one(
                self.store, series, pointer.model, pointer.version, True
            )
            self.champions[series.name] = pointer.model
        except PipelineError as exc:
            what = f"the champion {series.name}/{pointer.model}/{pointer.version}"
            self.fail(what, exc, series, pointer.model)
            self.keep_previous(series, None, champion=True)

    def load_others(self, series: SeriesId) -> None:
        for model in self.store.list_models(series):
            if (series.name, model) in self.models:
                continue
            version = self.store.latest(series, model)
            if version is None:
                continue
            try:
                self.models[(series.name, model)] = _load_one(
                    self.store, series, model, version, False
                )
            except PipelineError as exc:
                self.fail(f"{series.name}/{model}/{version}", exc, series, model)
                self.keep_previous(series, model, champion=False)


def load_registry(store: ArtifactStore, previous: Registry | None = None) -> Registry:
    """Load every champion and the latest version of every other model.

    A version that fails to load (missing, corrupt, tampered, wrong library versions) is logged
    and listed in ``errors``; when ``previous`` served that series/model, its old version is kept
    (and the old champion stays champion), so a bad new artifact never takes a model away.
    """
    signature = store_signature(store)
    loader = _Loader(store, previous)
    for series in store.list_series():
        loader.load_champion(series)
        loader.load_others(series)
    models, champions, errors = loader.models, loader.champions, loader.errors
    # A model carried over as non-champion must not keep a stale champion flag, and vice versa.
    for key, served in list(models.items()):
        should = champions.get(key[0]) == key[1]
        if served.is_champion != should:
            models[key] = served.with_champion(should)
    registry = Registry(
        models=models,
        champions=champions,
        loaded_at=datetime.now(UTC),
        errors=errors,
        signature=signature,
    )
    registry.models_json = json.dumps(
        {
            "models": [registry.models[k].summary for k in sorted(registry.models)],
            "champions": champions,
            "loaded_at": _iso(registry.loaded_at),
            "load_errors": errors,
        },
        separators=(",", ":"),
        default=str,
    ).encode()
    return registry


@dataclass
class ReloadResult:
    outcome: str
    message: str
    models: int
    changed: list[str]
    failures: list[str]
    duration_ms: float


class RegistryHolder:
    """Owns the current registry; :meth:`reload` swaps in a new one atomically."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self.registry: Registry = Registry({}, {}, datetime.now(UTC), [], ())

    def load_initial(self) -> Registry:
        self.registry = load_registry(self.store)
        return self.registry

    def needs_reload(self) -> bool:
        """True when the champion pointers or latest versions changed on disk."""
        return store_signature(self.store) != self.registry.signature

    def reload(self) -> ReloadResult:
        """Load beside the current registry, then swap; failures keep the old versions."""
        start = time.perf_counter()
        with self._lock:
            old = self.registry
            try:
                new = load_registry(self.store, previous=old)
            except Exception as exc:  # noqa: BLE001 - anything unexpected keeps the old registry
                logger.exception("reload failed; the previous models keep serving")
                return ReloadResult(
                    "failure",
                    "reload failed; the previous models keep serving",
                    len(old.models),
                    [],
                    [f"{type(exc).__name__}: {exc}"],
                    (time.perf_counter() - start) * 1000,
                )
            changed = sorted(
                f"{s}/{m}: {old.models[(s, m)].version if (s, m) in old.models else 'none'}"
                f" -> {served.version}"
                for (s, m), served in new.models.items()
                if (s, m) not in old.models or old.models[(s, m)].version != served.version
            )
            changed += sorted(
                f"{s}/{m}: {old.models[(s, m)].version} -> removed"
                for (s, m) in old.models
                if (s, m) not in new.models
            )
            self.registry = new  # the atomic swap
        duration = (time.perf_counter() - start) * 1000
        if new.errors:
            message = (
                f"{len(new.errors)} artifact(s) failed to load and keep their previous version "
                "(if any); other changes were applied"
            )
            logger.error(message, extra={"failures": new.errors})
            return ReloadResult("failure", message, len(new.models), changed, new.errors, duration)
        message = f"loaded {len(new.models)} model(s); {len(changed)} changed"
        logger.info(message, extra={"changed": changed})
        return ReloadResult("success", message, len(new.models), changed, [], duration)


# -- processed data (for /data/latest and freshness) ------------------------------------------
class DataCache:
    """Reads ``data/processed/<series>.csv`` defensively, cached by file size and mtime."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._cache: dict[Path, tuple[tuple[int, int], pd.DataFrame]] = {}

    def path(self, series: SeriesId) -> Path:
        return self.data_dir / "processed" / f"{series.name}.csv"

    def frame(self, series: SeriesId) -> pd.DataFrame:
        """The processed frame: NotServedError when missing, PipelineError when unreadable."""
        path = self.path(series)
        try:
            stat = path.stat()
        except FileNotFoundError:
            available = (
                sorted(p.stem for p in (self.data_dir / "processed").glob("*.csv") if p.is_file())
                if (self.data_dir / "processed").is_dir()
                else []
            )
            raise NotServedError(
                f"no processed data for {series.name} (run the pipeline: python -m pipeline); "
                f"available: {', '.join(available) or 'none'}",
                available,
            ) from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            frame = pd.read_csv(path)
            frame["ds"] = pd.to_datetime(frame["ds"], utc=True)
            frame["price"] = frame["price"].astype(float)
        except (OSError, ValueError, KeyError) as exc:
            raise PipelineError(f"processed data for {series.name} is unreadable: {exc}") from exc
        if frame.empty:
            raise PipelineError(f"processed data for {series.name} is empty")
        self._cache[path] = (stamp, frame)
        return frame

    def latest(self, series: SeriesId, limit: int) -> dict[str, Any]:
        frame = self.frame(series)
        tail = frame.tail(limit)
        rows = []
        has_imputed = "imputed" in tail.columns
        for rec in tail.itertuples(index=False):
            row: dict[str, Any] = {"ds": _iso(rec.ds), "price": float(rec.price)}
            if has_imputed:
                row["imputed"] = _as_bool(rec.imputed)
            rows.append(row)
        last = frame["ds"].iloc[-1]
        return {
            "series": series.name,
            "rows": rows,
            "last_ds": _iso(last),
            "rows_total": len(frame),
            "age_seconds": round((pd.Timestamp.now(tz="UTC") - last).total_seconds(), 3),
        }

    def freshness(self, series: SeriesId) -> dict[str, Any]:
        """Age of the last point vs the expected frequency: ok, stale, missing or unreadable."""
        try:
            frame = self.frame(series)
        except NotServedError:
            return {"status": "missing", "path": f"processed/{series.name}.csv"}
        except PipelineError as exc:
            return {"status": "unreadable", "error": str(exc)}
        last = frame["ds"].iloc[-1]
        age = (pd.Timestamp.now(tz="UTC") - last).total_seconds()
        limit = FRESHNESS_STEPS * freq_offset(series.freq).total_seconds()
        return {
            "status": "ok" if age <= limit else "stale",
            "last_ds": _iso(last),
            "age_seconds": round(age, 1),
            "max_age_seconds": limit,
        }


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    if isinstance(value, int | float | np.integer | np.floating):
        return None if (isinstance(value, float) and math.isnan(value)) else bool(value)
    return None


__all__ = [
    "FRESHNESS_STEPS",
    "LEVELS",
    "METADATA_FILE",
    "DataCache",
    "NotServedError",
    "Registry",
    "RegistryHolder",
    "ReloadResult",
    "ServedModel",
    "StepsError",
    "build_served",
    "confidence_score",
    "load_registry",
    "now_iso",
    "store_signature",
]
