"""The model card of a series (``GET /api/v1/model-card``): what the dashboard shows beside the
chart and no other endpoint answers.

The champion's decision (``champion.json``: when it was promoted and why) and the selection
backtest's figures of every served model against naive (from each version's verified
``metadata.json``, already in memory) are gathered once per loaded registry; a request adds
only the data freshness of the processed file (:class:`pipeline.api.data.DataCache`).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.api.registry import Registry
from pipeline.api.served import ServedModel
from pipeline.artifacts.metadata import ChampionPointer
from pipeline.artifacts.store import ArtifactStore
from pipeline.errors import PipelineError
from pipeline.series import SeriesId

logger = logging.getLogger(__name__)

#: The backtest figures shown, and whether each is compared with naive's as a ratio.
FIGURES: dict[str, bool] = {
    "mase": True,
    "wis": True,
    "winkler_95": True,
    "coverage_80": False,
    "coverage_95": False,
}


class ChampionInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    version: str
    trained_at: datetime
    issued_at: datetime
    origin: datetime
    promoted_at: datetime | None = Field(description="when the champion pointer was last moved")
    reason: str = Field(description="why it is the champion: the promotion decision's words")


class BacktestRow(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model: str
    version: str
    is_champion: bool
    figures: dict[str, float | None] = Field(
        description="mase, wis, winkler_95, coverage_80, coverage_95 of the selection backtest"
    )
    vs_naive: dict[str, float | None] = Field(
        description="mase, wis and winkler_95 divided by naive's on the same backtest (null when "
        "naive was not backtested with the same protocol)"
    )


class Backtest(BaseModel):
    protocol: dict[str, Any] = Field(description="origins, horizon, window, ... of the backtest")
    rows: list[BacktestRow] = Field(description="the champion first, then naive, then the rest")


class DataFreshness(BaseModel):
    status: str = Field(description="ok, stale, missing or unreadable")
    last_ds: datetime | None = None
    age_seconds: float | None = None
    max_age_seconds: float | None = None
    error: str | None = None


class ModelCard(BaseModel):
    series: str
    coin: str
    vs_currency: str
    timeframe: str
    champion: ChampionInfo
    models: list[str] = Field(description="every model served for the series")
    backtest: Backtest | None = Field(description="null when the versions hold no backtest")
    data: DataFreshness
    accuracy_url: str | None = Field(
        None, description="where this API answers the live (ledger) accuracy; null when it does not"
    )


def _figures(metrics: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in FIGURES:
        value = metrics.get(name)
        out[name] = (
            float(value) if isinstance(value, int | float) and math.isfinite(value) else None
        )
    return out


def _backtest_of(served: ServedModel) -> tuple[dict[str, Any], dict[str, Any]] | None:
    art = served.artifact
    block = art.metadata.extra.get("backtest") if art is not None else None
    if not isinstance(block, dict) or not isinstance(block.get("metrics"), dict):
        return None
    protocol = block.get("protocol")
    return (protocol if isinstance(protocol, dict) else {}), block["metrics"]


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return round(value / base, 4)


def backtest(registry: Registry, series: str) -> Backtest | None:
    """The champion's backtest protocol and every model backtested under it, against naive."""
    champion = registry.find(series)
    found = _backtest_of(champion) if champion is not None else None
    if champion is None or found is None:
        return None
    protocol = found[0]
    naive = registry.models.get((series, "naive"))
    naive_bt = _backtest_of(naive) if naive is not None else None
    base = _figures(naive_bt[1]) if naive_bt is not None and naive_bt[0] == protocol else None
    rows = []
    for model in registry.model_names(series):
        served = registry.models[(series, model)]
        bt = _backtest_of(served)
        if bt is None or bt[0] != protocol:
            continue
        figures = _figures(bt[1])
        ratios = {
            name: _ratio(figures[name], None if base is None else base[name])
            for name, compared in FIGURES.items()
            if compared
        }
        rows.append(
            BacktestRow(
                model=model,
                version=served.version,
                is_champion=served.is_champion,
                figures=figures,
                vs_naive=ratios,
            )
        )
    rows.sort(key=lambda r: (not r.is_champion, r.model != "naive", r.model))
    return Backtest(protocol=protocol, rows=rows)


class CardCache:
    """The registry-dependent part of every series' card, built once per loaded registry."""

    def __init__(self) -> None:
        self._registry: Registry | None = None
        self._cards: dict[str, dict[str, Any]] = {}

    def static_part(
        self, registry: Registry, store: ArtifactStore, series: SeriesId
    ) -> dict[str, Any]:
        """Everything but the data freshness (reads ``champion.json`` once per registry)."""
        if registry is not self._registry:
            self._registry, self._cards = registry, {}
        cached = self._cards.get(series.name)
        if cached is not None:
            return cached
        champion = registry.find(series.name)
        if champion is None:
            raise LookupError(series.name)
        try:
            pointer: ChampionPointer | None = store.champion(series)
        except PipelineError as exc:
            logger.warning("model card of %s: %s", series.name, exc)
            pointer = None
        if pointer is not None and (pointer.model, pointer.version) != (
            champion.model,
            champion.version,
        ):
            pointer = None  # the pointer moved since the registry was loaded: not this champion's
        part = {
            "series": series.name,
            "coin": series.coin,
            "vs_currency": series.vs,
            "timeframe": series.freq,
            "champion": ChampionInfo(
                model=champion.model,
                version=champion.version,
                trained_at=champion.trained_at,
                issued_at=champion.issued_at,
                origin=champion.origin,
                promoted_at=pointer.promoted_at if pointer else None,
                reason=pointer.reason if pointer else "",
            ),
            "models": registry.model_names(series.name),
            "backtest": backtest(registry, series.name),
        }
        self._cards[series.name] = part
        return part
