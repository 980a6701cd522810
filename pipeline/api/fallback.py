"""Fallbacks that say so: when the model asked for cannot answer, what answers instead.

Only a request that asks for it (``"fallback": true``; the default is ``ENABLE_FALLBACK``, off)
falls back; without the flag an unavailable model is a 404 or 503 as always. The chain, first
that answers wins:

1. the model asked for (by name or ``champion``); when its new version failed to load and the
   registry kept the previous one, that one answers, flagged ``previous_version``;
2. a named model that is missing or failed to load: the series' champion;
3. the champion failed to load: the previous champion of ``champion.json`` that still loads;
4. a timeframe with nothing loaded: derived from the finer timeframe it is built from, when that
   is exact (``4h`` from the ``1h`` champion's path at every 4th step, quantiles included: each
   4h bar's price is the hourly price at the bar's last hour, so they are quantiles of the same
   future price); refused for a timeframe with its own raw file (``1d`` is never derived);
5. a naive random walk (:class:`pipeline.forecasters.baselines.Naive`) fitted on the last
   ``FALLBACK_VOLATILITY_POINTS`` processed prices, so its bands follow the recent volatility.

Every answer of such a request carries ``fallback`` (:class:`FallbackInfo`); a used fallback is
counted in ``prediction_fallbacks_total{reason,strategy}`` and logged once per registry. The
steps that read files run in a worker thread, never on the event loop; what they build is cached
until the registry is replaced (and, for the naive walk, until the processed file changes).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import anyio

from pipeline.api.deps import ApiRuntime
from pipeline.api.errors import ApiError
from pipeline.api.fallback_paths import derive_issue, label, naive_served
from pipeline.api.fallback_schemas import FallbackInfo
from pipeline.api.registry import Registry, load_served
from pipeline.api.served import ServedModel, build_served
from pipeline.artifacts.store import ArtifactStore
from pipeline.errors import PipelineError, UsageError
from pipeline.series import FREQUENCY_TABLE, SeriesId, freq_offset

logger = logging.getLogger(__name__)

#: How a v1 answer without a fallback block ends (``fallback`` is the last field, null).
_TAIL = b',"fallback":null}'


def with_fallback(payload: bytes, info: FallbackInfo | bytes) -> bytes:
    """The v1 answer ``payload`` with its ``fallback`` block (a model or its JSON) filled in."""
    if not payload.endswith(_TAIL):
        raise ValueError("the predict answer does not end with its fallback field")
    block = info if isinstance(info, bytes) else info.model_dump_json().encode()
    return b'%s,"fallback":%s}' % (payload[: -len(_TAIL)], block)


@dataclass(frozen=True)
class Resolved:
    """What answers a request, and the fallback block its answer carries."""

    served: ServedModel
    info: FallbackInfo

    @property
    def info_json(self) -> bytes:
        return _info_json(self.info)


@lru_cache(maxsize=4096)
def _info_json(info: FallbackInfo) -> bytes:
    return info.model_dump_json().encode()


@lru_cache(maxsize=4096)
def _unused(requested: str, served: str) -> FallbackInfo:
    """The block of an answer that needed no fallback (the same for every such request)."""
    return FallbackInfo(
        used=False, reason=None, strategy=None, requested=requested, served=served, message=""
    )


class Fallbacks:
    """Resolves a request through the chain; one per API runtime (see :func:`fallbacks_of`)."""

    def __init__(self, runtime: ApiRuntime) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self._registry: Registry | None = None
        self._cache: dict[tuple[Any, ...], Any] = {}
        self._logged: set[tuple[str, str]] = set()

    def resolve(self, registry: Registry, series: SeriesId, model: str) -> Resolved:
        """The first of the chain that can answer; an :class:`ApiError` when none can."""
        with self._lock:
            if self._registry is not registry:
                self._registry, self._cache, self._logged = registry, {}, set()
            resolved = self._resolve(registry, series, model)
            if resolved.info.used:
                key = (resolved.info.requested, resolved.info.served)
                if key not in self._logged:
                    self._logged.add(key)
                    logger.warning(
                        "fallback for %s: %s",
                        resolved.info.requested,
                        resolved.info.message,
                        extra={"reason": resolved.info.reason, "strategy": resolved.info.strategy},
                    )
            return resolved

    def _resolve(self, registry: Registry, series: SeriesId, model: str) -> Resolved:
        settings = self.runtime._settings()
        store = ArtifactStore(settings.models_dir)
        requested = f"{series.name}/{model}"
        notes: list[str] = []
        reason: str | None = None

        def answer(
            served: ServedModel, why: str, strategy: str, what: str, source: str | None = None
        ) -> Resolved:
            notes.append(what)
            info = FallbackInfo(
                used=True,
                reason=why,  # type: ignore[arg-type]
                strategy=strategy,  # type: ignore[arg-type]
                requested=requested,
                served=source or label(served),
                message="; ".join(notes),
            )
            return Resolved(served, info)

        served = registry.find(series.name, model)
        if served is not None:
            error = registry.kept.get((series.name, served.model))
            if error is None:
                return Resolved(served, self.unused(requested, served))
            why = "champion_failed" if model == "champion" else "model_failed"
            what = f"the champion of {series.name}" if model == "champion" else requested
            notes.append(f"the new version of {what} failed to load ({error})")
            return answer(
                served,
                why,
                "previous_version",
                f"the version served before, {served.model}/{served.version}, answered",
            )
        if model != "champion":
            on_disk = (
                bool(store.list_versions(series, model))
                if store.series_dir(series).is_dir()
                else False
            )
            reason = "model_failed" if on_disk else "model_missing"
            notes.append(
                f"model {model!r} of {series.name} "
                + ("failed to load" if on_disk else "has no trained version")
            )
            champion = registry.find(series.name, "champion")
            if champion is not None:
                return answer(
                    champion, reason, "champion", f"the champion {champion.model} answered"
                )
        previous, why, note = self._previous(store, registry, series)
        reason = reason or why
        notes.append(note)
        if previous is not None:
            return answer(
                previous,
                reason,
                "previous_version",
                f"the previous champion {previous.model}/{previous.version} answered",
            )
        derived, note = self._derived(registry, series)
        if derived is not None:
            source = derived.artifact.metadata if derived.artifact is not None else None
            origin = f"{source.series}/{source.model}/{source.version}" if source else None
            return answer(derived, reason, "derived_timeframe", note, origin)
        notes.append(note)
        naive, note = self._naive(series)
        if naive is not None:
            return answer(naive, reason, "naive_random_walk", note)
        notes.append(note)
        raise ApiError(
            404,
            "not_found",
            f"no fallback can answer {requested}: " + "; ".join(notes),
            available=registry.series_names(),
        )

    @staticmethod
    def unused(requested: str, served: ServedModel) -> FallbackInfo:
        return _unused(requested, label(served))

    def _cached(self, key: tuple[Any, ...], build: Callable[[], ServedModel]) -> ServedModel:
        cached: ServedModel | None = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = build()
        return cached

    def _previous(
        self, store: ArtifactStore, registry: Registry, series: SeriesId
    ) -> tuple[ServedModel | None, str, str]:
        """The previous champion that loads, when the champion failed to: (it, reason, note)."""
        try:
            pointer = store.champion(series)
        except PipelineError as exc:
            return None, "champion_failed", f"the champion pointer is unreadable ({exc})"
        if pointer is None:
            if registry.model_names(series.name):
                return None, "no_champion", f"{series.name} has no champion"
            return None, "series_missing", f"nothing is loaded for {series.name}"
        failed = f"the champion {pointer.model}/{pointer.version} failed to load"
        for prev in pointer.previous:
            model, version = prev.get("model"), prev.get("version")
            if not model or not version or (model, version) == (pointer.model, pointer.version):
                continue
            try:
                served = self._cached(
                    ("previous", series.name, model, version),
                    partial(load_served, store, series, model, version, False),
                )
            except PipelineError as exc:
                failed += f"; its previous version {model}/{version} too ({exc})"
                continue
            return served, "champion_failed", failed
        return None, "champion_failed", failed + " and no previous version loads"

    def _derived(self, registry: Registry, series: SeriesId) -> tuple[ServedModel | None, str]:
        """The path derived from the finer timeframe's champion, or why there is none."""
        built_from = FREQUENCY_TABLE[series.freq].raw
        if built_from == series.freq:
            finer = [f for f in FREQUENCY_TABLE if freq_offset(f) < freq_offset(series.freq)]
            return None, (
                f"{series.freq} is not derived from {', '.join(finer) or 'a finer timeframe'}: it "
                f"is built from its own raw file, so a finer path does not forecast the same bars"
            )
        fine = SeriesId(series.coin, series.vs, built_from)
        source = registry.find(fine.name, "champion")
        if source is None:
            return None, f"{fine.name} has no champion to derive {series.freq} from"
        try:
            served = self._cached(
                ("derived", series.name, label(source), source.issued_at),
                lambda: build_served(
                    series,
                    source.model,
                    source.version,
                    False,
                    source.artifact,
                    derive_issue(source, series),
                ),
            )
        except PipelineError as exc:
            return None, f"cannot derive {series.freq} from {fine.name}: {exc}"
        ratio = freq_offset(series.freq) // freq_offset(fine.freq)
        return served, (
            f"every {ratio}th step of the {fine.name} champion's path ({source.model}) answered"
        )

    def _naive(self, series: SeriesId) -> tuple[ServedModel | None, str]:
        """A naive random walk on the recent processed prices, or why there is none."""
        from pipeline.process.stage import processed_path

        settings = self.runtime._settings()
        path = processed_path(settings.data_dir, series)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None, f"no processed data for {series.name} for a naive random walk"
        key = ("naive", series.name, stat.st_mtime_ns, stat.st_size)
        points = settings.fallback_volatility_points
        try:
            served = self._cached(
                key,
                lambda: naive_served(
                    series, settings.data_dir, points, settings.horizon(series.freq)
                ),
            )
        except PipelineError as exc:
            return None, f"no naive random walk for {series.name}: {exc}"
        return served, (
            f"a naive random walk from the last processed price, with bands from the last "
            f"{points} processed points, answered"
        )


_BY_RUNTIME: weakref.WeakKeyDictionary[ApiRuntime, Fallbacks] = weakref.WeakKeyDictionary()


def fallbacks_of(runtime: ApiRuntime) -> Fallbacks:
    """The runtime's resolver (created on first use)."""
    found = _BY_RUNTIME.get(runtime)
    if found is None:
        found = _BY_RUNTIME[runtime] = Fallbacks(runtime)
    return found


def requested_series(
    runtime: ApiRuntime, coin: str | None, vs: str | None, freq: str | None
) -> SeriesId:
    """The series a request names (the settings' defaults for what it leaves out)."""
    settings = runtime._settings()
    try:
        return SeriesId(
            coin or settings.coins[0], vs or settings.vs_currency, freq or settings.frequencies[0]
        )
    except UsageError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None


async def resolve(
    runtime: ApiRuntime, coin: str | None, vs: str | None, freq: str | None, model: str
) -> Resolved:
    """What answers a request that asked for fallbacks (the served model, its block)."""
    registry = runtime.registry_holder().registry
    settings = runtime._settings()
    coin, vs = coin or settings.coins[0], vs or settings.vs_currency
    name = f"{coin}-{vs}-{freq or settings.frequencies[0]}"
    served = registry.find(name, model)  # the fast path: a served model, as without fallbacks
    if served is not None and (name, served.model) not in registry.kept:
        return Resolved(served, _unused(f"{name}/{model}", label(served)))
    series = requested_series(runtime, coin, vs, freq)
    return await anyio.to_thread.run_sync(fallbacks_of(runtime).resolve, registry, series, model)


def count(runtime: ApiRuntime, info: FallbackInfo) -> None:
    """Count a used fallback in ``prediction_fallbacks_total``."""
    if info.used:
        runtime.metrics.fallbacks.labels(info.reason, info.strategy).inc()
