"""A small artifact store with issues to record in the ledger, and its prices; a ledger of
three models' issues scored against chosen prices."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.artifacts.issues import IssueInfo, IssueRecord
from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings
from pipeline.forecasters import make_forecaster
from pipeline.ledger.db import Ledger
from pipeline.ledger.record import IssueEntry, record
from pipeline.ledger.score import score
from pipeline.series import SeriesId, freq_offset
from tests.helpers.prices import random_walk_prices
from tests.helpers.processed import write_processed

DAILY = SeriesId("bitcoin", "usd", "1d")


@dataclass
class StoreWithIssues:
    store: ArtifactStore
    series: SeriesId
    y: pd.Series  # every price (the processed file holds the first ``observed`` of them)
    versions: dict[str, str]  # model -> version
    issues: int  # issues written under issues/ per model


def build_store(
    root: Path,
    data_dir: Path,
    *,
    models: tuple[str, ...] = ("naive", "drift"),
    train: int = 120,
    refreshes: int = 3,
    observed: int | None = None,
    horizon: int = 10,
    series: SeriesId = DAILY,
) -> StoreWithIssues:
    """Fit ``models`` on the first ``train`` prices (naive is the champion), then write
    ``refreshes`` issues a day apart with ``update``; the processed file holds ``observed``
    prices (default: all of them)."""
    y = random_walk_prices(train + refreshes + horizon + 5, seed=3)
    store = ArtifactStore(root)
    versions = {}
    for model in models:
        fitted = make_forecaster(model).fit(y.iloc[:train])
        meta = store.write_version(series, fitted, y.iloc[:train], horizon=horizon)
        versions[model] = meta.version
        for k in range(1, refreshes + 1):
            fitted.update(y.iloc[train + k - 1 : train + k])
            origin = y.index[train + k - 1]
            store.write_issue(
                series, model, meta.version, fitted.predict(horizon),
                origin=origin.to_pydatetime(), last_price=float(y.iloc[train + k - 1]), n_new=k,
            )  # fmt: skip
    store.promote(series, "naive", versions["naive"], "test")
    write_processed(data_dir, y.iloc[: observed or len(y)], series)
    return StoreWithIssues(store, series, y, versions, refreshes)


def synthetic_entries(
    series: SeriesId, models: int, horizon: int, origin: pd.Timestamp, *, price: float = 100.0
) -> list[IssueEntry]:
    """``models`` issues (``naive``, ``m1``, ``m2``, ...) of ``horizon`` steps from ``origin``,
    with widening bands around ``price``: ledger rows without an artifact store."""
    step = freq_offset(series.freq)
    ds = pd.date_range(origin + step, periods=horizon, freq=step, tz="UTC")
    out = []
    for m in range(models):
        name = "naive" if m == 0 else f"m{m}"
        spread = price * 0.01 * np.sqrt(np.arange(1, horizon + 1)) * (1 + 0.1 * m)
        frame = pd.DataFrame(
            {
                "ds": ds,
                "mean": price,
                "lower_80": price - spread,
                "upper_80": price + spread,
                "lower_95": price - 1.5 * spread,
                "upper_95": price + 1.5 * spread,
            }
        )
        when = origin.to_pydatetime()
        record = IssueRecord(
            issue_id=f"{origin:%Y%m%dT%H%M%SZ}-synthetic",
            series=series.name, model=name, version="v1", issued_at=when, origin=when,
            last_price=price, n_new=0, horizon=horizon, levels=[80, 95],
            forecast_sha256="0" * 64,
        )  # fmt: skip
        out.append(IssueEntry(IssueInfo(record, Path("synthetic"), frame), m == 0, "1" * 64))
    return out


# -- a ledger of three models' issues scored against chosen prices (the live rule's tests) --

ORIGIN = pd.Timestamp("2026-10-01", tz="UTC")
HORIZON = 48
#: The three models of the ledger: the same median (100), bands 0%, 10% and 20% wider.
NAMES = ("naive", "m1", "m2")


def fill_ledger(
    ledger: Ledger, settings: Settings, after: np.ndarray, names: Sequence[str] = NAMES
) -> None:
    """One issue per model from ORIGIN (``synthetic_entries``' widening bands around 100, the
    models renamed to ``names``), scored against ``after`` (one price per step)."""
    rng = np.random.default_rng(7)
    before = pd.date_range(ORIGIN - pd.Timedelta(days=60), ORIGIN, freq="D")
    y = pd.concat(
        [
            pd.Series(100 + np.cumsum(rng.normal(0, 1, len(before))), index=before),
            pd.Series(after, index=pd.date_range(ORIGIN + pd.Timedelta(days=1), periods=HORIZON)),
        ]
    )
    entries = synthetic_entries(DAILY, len(names), HORIZON, ORIGIN)
    record(ledger, [renamed(e, name) for e, name in zip(entries, names, strict=True)])
    score(ledger, settings, [DAILY], prices={DAILY.name: y})


def renamed(entry: IssueEntry, model: str) -> IssueEntry:
    rec = entry.info.record.model_copy(update={"model": model})
    return dataclasses.replace(entry, info=dataclasses.replace(entry.info, record=rec))


#: Actuals at the median: every band holds them, so the narrowest bands score the lowest WIS.
AT_MEDIAN = np.full(HORIZON, 100.0)
#: Actuals 1.6 sqrt(step) above: outside naive's 95% band (1.5 sqrt(step)), inside m1's and m2's.
ABOVE_NAIVE_BAND = 100.0 + 1.6 * np.sqrt(np.arange(1, HORIZON + 1))
