"""Rebuilding a ledger from history: the forecasts the pipeline would have issued, night by night.

For each night from ``since`` (UTC midnights), with only the prices observed by then:

1. every model issues a forecast from the last observed price (the *origin*): it is refitted on
   the last ``window`` prices every ``refit_every`` nights (and whenever it cannot update), and
   in between moved to the new origin with
   :meth:`~pipeline.forecasters.base.Forecaster.update` (the estimated parameters stay, as
   between two nightly trainings);
2. the issues are recorded (``champion`` marks the ``champion`` model's).

At the end every step whose price is observed is scored and the aggregates refreshed
(:func:`pipeline.ledger.score.score_series`): a step's score depends only on its forecast and
its price, not on the night it was computed, so one pass gives what nightly scoring would.

Replayed issues are ordinary ledger rows: their
version is ``replay-<fit origin>``, their ``path`` is ``replay`` (there is no model folder) and
their ``issued_at`` is the night they stand for, so :func:`pipeline.ledger.read.served_at`
answers for the past too. ``refit_every=1`` refits every night, exactly what a rolling-origin
backtest with daily origins, the same window and ``refit_every=1`` scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pipeline.artifacts.issues import IssueInfo, IssueRecord
from pipeline.cli import parse_timestamp
from pipeline.errors import ForecastError, UsageError
from pipeline.forecasters import Forecaster, horizon_params, make_forecaster
from pipeline.forecasters.base import interval_columns
from pipeline.ledger.aggregate import refresh_aggregates
from pipeline.ledger.db import Ledger
from pipeline.ledger.record import LEDGER_LEVELS, IssueEntry, record_issues
from pipeline.ledger.score import score_series
from pipeline.series import SeriesId

logger = logging.getLogger(__name__)

REPLAY_PATH = "replay"
_ID = "%Y%m%dT%H%M%SZ"


@dataclass
class ReplayResult:
    series: str
    nights: int = 0
    issues: int = 0
    fits: dict[str, int] = field(default_factory=dict)
    updates: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)


@dataclass
class _Live:
    model: Forecaster
    version: str
    fitted_on: int  # night number of the fit


def _entry(
    series: SeriesId, name: str, live: _Live, forecast: pd.DataFrame, night: datetime,
    champion: bool,
) -> IssueEntry:  # fmt: skip
    origin = live.model.last_ds_.to_pydatetime()
    frame = forecast[interval_columns(LEDGER_LEVELS)]
    data = frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ", lineterminator="\n")
    params = json.dumps(live.model.get_params(), sort_keys=True, default=str)
    record = IssueRecord(
        issue_id=f"{origin:{_ID}}-{night:{_ID}}-replay",
        series=series.name,
        model=name,
        version=live.version,
        issued_at=night,
        origin=origin,
        last_price=float(live.model.last_price_),
        n_new=0,
        horizon=len(frame),
        levels=list(LEDGER_LEVELS),
        forecast_sha256=hashlib.sha256(data.encode()).hexdigest(),
    )
    info = IssueInfo(record, Path(REPLAY_PATH), frame)
    model_sha = hashlib.sha256(f"{name}:{live.version}:{params}".encode()).hexdigest()
    return IssueEntry(info, champion, model_sha)


def _advance(
    name: str, live: _Live | None, seen: pd.Series, night_no: int, window: int, refit_every: int,
    horizon: int, result: ReplayResult,
) -> _Live:  # fmt: skip
    """The model for tonight: updated to the new origin, or refitted when due or needed."""
    if live is not None and night_no - live.fitted_on < refit_every and live.model.updatable:
        new = seen.loc[seen.index > live.model.last_ds_]
        try:
            live.model.update(new)
            result.updates[name] = result.updates.get(name, 0) + 1
            return live
        except ForecastError as exc:
            logger.info("replay: refitting %s at %s (%s)", name, seen.index[-1], exc)
    train = seen.iloc[-window:]
    model = make_forecaster(name, **horizon_params(name, horizon)).fit(train)
    result.fits[name] = result.fits.get(name, 0) + 1
    return _Live(model, f"replay-{train.index[-1]:{_ID}}", night_no)


def replay(
    ledger: Ledger,
    series: SeriesId,
    y: pd.Series,
    *,
    since: datetime,
    until: datetime | None = None,
    models: Sequence[str] = ("naive", "drift"),
    champion: str | None = None,
    horizon: int,
    window: int = 1000,
    refit_every: int = 7,
    scale_window: int = 1000,
) -> ReplayResult:
    """Replay the nights from ``since`` to ``until`` (default: the last price) into ``ledger``."""
    if not models:
        raise UsageError("replay needs at least one model")
    champion = champion or models[0]
    if champion not in models:
        raise UsageError(f"--champion {champion!r} is not among the replayed models")
    y = y.dropna()
    y.index = pd.DatetimeIndex(pd.to_datetime(y.index, utc=True))
    end = parse_timestamp(until, "--until") if until is not None else y.index[-1]
    nights = pd.date_range(parse_timestamp(since, "--since").normalize(), end, freq="1D")
    if len(nights) == 0 or y.index[0] > nights[0]:
        raise UsageError(f"{series.name}: no prices before {since:%Y-%m-%d}; pick a later --since")
    result = ReplayResult(series.name)
    live: dict[str, _Live] = {}
    for night_no, night in enumerate(nights):
        seen = y.loc[:night]
        if len(seen) < 3:
            continue
        entries = []
        for name in models:
            try:
                live[name] = _advance(
                    name, live.get(name), seen, night_no, window, refit_every, horizon, result
                )
                forecast = live[name].model.predict(horizon)
            except ForecastError as exc:
                result.failures[name] = result.failures.get(name, 0) + 1
                logger.warning("replay: %s failed at %s: %s", name, night, exc)
                live.pop(name, None)
                continue
            entries.append(
                _entry(series, name, live[name], forecast, night.to_pydatetime(), name == champion)
            )
        with ledger.writer() as conn:
            result.issues += record_issues(conn, entries, night.to_pydatetime())
        result.nights += 1
    now = datetime.now(UTC)
    with ledger.writer() as conn:
        score_series(conn, series.name, y, scale_window, now, refresh=False)
        refresh_aggregates(conn, series.name, now)
    logger.info(
        "replayed %s: %d nights, %d issues, fits %s, updates %s", series.name, result.nights,
        result.issues, result.fits, result.updates, extra={"series": series.name},
    )  # fmt: skip
    return result
