"""Daily HAR-RV bands from hourly realized variance, on the replay of the served system.

    .venv/bin/python bench/replay.py --data ../shared/data/bitstamp_btcusd_1d_2014-2021.csv \\
        --coin bitcoin --freq 1d --n-jobs 2 --cache /tmp/grid_btc_1d.pkl
    .venv/bin/python bench/har_rv_study.py --grid /tmp/grid_btc_1d.pkl --coin bitcoin \\
        --hourly ../shared/data/bitstamp_btcusd_1h_2018-2021.csv

Reads the replay's grid (every default model forecast at every origin), replays the nightly
decision under the default rule exactly as ``bench/replay.py`` does, and scores on the same
decision origins: naive, the band average, what was served, the HAR-RV band
(:mod:`pipeline.forecasters.realized`: fitted on the realized variance of the days before
each origin, the band average where fewer than ``--min-days`` such days exist) and the served
forecast with the HAR-RV band in place of the daily anchor's. Ratios are mean scores over the
decision origins divided by naive's. Writes the Markdown page ``--out``
(``docs/results/har-rv.md``) and prints it.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import shlex
import sys
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import get_settings  # noqa: E402
from pipeline.evaluation.backtest import BacktestResult  # noqa: E402
from pipeline.evaluation.champion import ANCHOR_MODEL, BASELINE_MODEL  # noqa: E402
from pipeline.evaluation.compare import load_csv_series  # noqa: E402
from pipeline.evaluation.metrics import interval_scores  # noqa: E402
from pipeline.evaluation.replay import replay  # noqa: E402
from pipeline.evaluation.scoring import diebold_mariano  # noqa: E402
from pipeline.forecasters.realized import (  # noqa: E402
    HAR_MIN_DAYS,
    daily_realized_variance,
    har_band,
    har_cumulative_variance,
)
from pipeline.series import SeriesId  # noqa: E402

logger = logging.getLogger("bench.har_rv_study")
COLUMNS = ("mean", "lower_80", "upper_80", "lower_95", "upper_95")
Forecast = Mapping[str, np.ndarray]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", type=Path, required=True, help="bench/replay.py --cache file")
    parser.add_argument("--hourly", type=Path, required=True, help="hourly CSV of the same coin")
    parser.add_argument("--coin", required=True)
    parser.add_argument("--vs", default="usd")
    parser.add_argument("--start", default="2018-01-01", help="first decision origin")
    parser.add_argument("--min-days", type=int, default=HAR_MIN_DAYS)
    parser.add_argument("--sensitivity", default="180,250,500", help="other --min-days to try")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/har-rv.md")
    return parser.parse_args(argv)


def grid_forecast(
    grid: BacktestResult, origin: pd.Timestamp, model: str
) -> tuple[Forecast, np.ndarray, float]:
    """(forecast columns, actuals, last price) of ``model`` at ``origin`` in the grid."""
    f = grid.folds
    rows = f[(f["origin"] == origin) & (f["model"] == model)].sort_values("step")
    if rows.empty:
        raise LookupError(f"no forecast of {model} at {origin}")
    cols = {c: rows[c].to_numpy(dtype=float) for c in COLUMNS}
    return cols, rows["actual"].to_numpy(dtype=float), float(rows["last_price"].iloc[0])


def score(per_origin: Sequence[tuple[np.ndarray, Forecast]]) -> dict[str, float]:
    """Mean WIS, Winkler-95 and the pooled 80/95% coverage over (actuals, forecast) pairs."""
    parts = [interval_scores(y, f) for y, f in per_origin]
    return {
        "wis": float(np.mean([p["wis"].mean() for p in parts])),
        "winkler_95": float(np.mean([p["winkler_95"].mean() for p in parts])),
        "coverage_80": float(np.concatenate([p["coverage_80"] for p in parts]).mean()),
        "coverage_95": float(np.concatenate([p["coverage_95"] for p in parts]).mean()),
    }


def study(
    grid: BacktestResult, rv: pd.Series, steps: Sequence[tuple[pd.Timestamp, str]], min_days: int
) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """Scores per variant over the decision ``steps`` (origin, served model), and the per-origin
    WIS differences HAR-RV minus band average where a HAR-RV band exists."""
    horizon = grid.protocol.horizon
    variants: dict[str, list[tuple[np.ndarray, Forecast]]] = {}
    differences: list[float] = []
    for origin, served in steps:
        base, y, last = grid_forecast(grid, origin, ANCHOR_MODEL)
        variance = har_cumulative_variance(rv, origin, horizon, min_days=min_days)
        har = None if variance is None else har_band(last, variance)
        if har is not None:
            differences.append(
                float(
                    interval_scores(y, har)["wis"].mean() - interval_scores(y, base)["wis"].mean()
                )
            )
        try:
            chosen = grid_forecast(grid, origin, served)[0]
        except LookupError:  # the served model failed there: naive is scored, as the replay does
            chosen = grid_forecast(grid, origin, BASELINE_MODEL)[0]
        picks = {
            BASELINE_MODEL: grid_forecast(grid, origin, BASELINE_MODEL)[0],
            ANCHOR_MODEL: base,
            "served": chosen,
            "har_rv (band average before)": har if har is not None else base,
            "served, HAR-RV as the anchor": har
            if har is not None and served == ANCHOR_MODEL
            else chosen,
        }
        for name, forecast in picks.items():
            variants.setdefault(name, []).append((y, forecast))
    return {name: score(pairs) for name, pairs in variants.items()}, np.asarray(differences)


def table(scores: Mapping[str, Mapping[str, float]]) -> list[str]:
    naive = scores[BASELINE_MODEL]
    lines = [
        "| forecast | WIS / naive | Winkler-95 / naive | 80% cov. | 95% cov. |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in scores.items():
        lines.append(
            f"| {name} | {s['wis'] / naive['wis']:.3f} | "
            f"{s['winkler_95'] / naive['winkler_95']:.3f} | {s['coverage_80']:.1%} | "
            f"{s['coverage_95']:.1%} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    warnings.simplefilter("ignore")
    args = parse_args(argv)
    settings = get_settings()
    grid: BacktestResult = pickle.loads(args.grid.read_bytes())  # noqa: S301 - our own file
    if grid.protocol.freq != "1d":
        sys.stderr.write("error: HAR-RV bands are daily: --grid must be a daily replay grid\n")
        return 2
    series = SeriesId(args.coin, args.vs, "1d")
    hourly, source = load_csv_series(args.hourly, "1h", settings)
    rv = daily_realized_variance(hourly)
    result = replay(
        grid,
        series,
        settings,
        selection_origins=settings.backtest_origins,
        start=pd.Timestamp(args.start, tz="UTC"),
    )
    steps = [(s.origin, s.served) for s in result.steps]
    scores, differences = study(grid, rv, steps, args.min_days)
    with_har = len(differences)
    # one origin every 30 days with a 30-day horizon: the origins' errors do not overlap
    dm = diebold_mariano(differences, np.zeros_like(differences))
    command = "python bench/har_rv_study.py " + shlex.join(argv if argv else sys.argv[1:])
    md = [
        "# HAR-RV daily bands from hourly realized variance",
        "",
        "What the daily forecast would have scored with a HAR-RV band: not served yet (a "
        "forecaster is fitted on one price series, and this band needs the hourly series of "
        "its coin beside it). Ratios are mean scores over the decision origins divided by "
        "naive's on the same origins; `served` is what the default rule served.",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d} by `{command}` on the replay grid of "
        f"{series.name} ({len(grid.origins)} origins, horizon {grid.protocol.horizon}, "
        f"{len(grid.models)} models); realized variance of {len(rv):,} complete days from "
        f"{source} ({rv.index[0]:%Y-%m-%d} .. {rv.index[-1]:%Y-%m-%d}). "
        f"{len(steps)} decision origins ({steps[0][0]:%Y-%m-%d} .. {steps[-1][0]:%Y-%m-%d}); "
        f"a HAR-RV band at the {with_har} with at least {args.min_days} days of realized "
        "variance before them. Method: [Forecasters](../forecasters.md#har-rv).",
        "",
        *table(scores),
        "",
        f"Paired on the {with_har} origins with a HAR-RV band: HAR-RV scored a lower WIS than the "
        f"band average at {int((differences < 0).sum())} of them; mean WIS difference "
        f"{dm.mean_difference:+,.1f} (price units), Diebold-Mariano one-sided p = "
        f"{dm.p_better:.3f} (HLN-corrected; the origins do not overlap).",
        "",
        "Sensitivity to the days of realized variance required (`--min-days`):",
        "",
        "| min days | origins with a HAR-RV band | har_rv WIS / naive | served with HAR-RV |",
        "|---:|---:|---:|---:|",
    ]
    for days in sorted({args.min_days, *(int(d) for d in args.sensitivity.split(",") if d)}):
        other, diffs = (
            study(grid, rv, steps, days) if days != args.min_days else (scores, differences)
        )
        n = len(diffs)
        ratio = {k: v["wis"] / other[BASELINE_MODEL]["wis"] for k, v in other.items()}
        md.append(
            f"| {days} | {n} | {ratio['har_rv (band average before)']:.3f} | "
            f"{ratio['served, HAR-RV as the anchor']:.3f} |"
        )
    text = "\n".join(md) + "\n"
    args.out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
