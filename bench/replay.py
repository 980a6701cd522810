"""Replay the served system on a long price history (the measure of champion selection).

    .venv/bin/python bench/replay.py --data ../shared/data/bitstamp_btcusd_1d_2014-2021.csv \\
        --coin bitcoin --freq 1d --start 2018-01-01 --end 2021-12-31 --n-jobs 2

Every model is forecast once at each origin of a grid (``--step`` apart, ``--horizon`` steps,
each fit on the last ``--window`` points); then the nightly decision of
:mod:`pipeline.evaluation.champion` is replayed at every ``--decide-every``-th origin from
``--start`` to ``--end`` under each ``--rules`` rule, reading only the ``--selection-origins``
latest origins whose horizon had been observed (:mod:`pipeline.evaluation.replay`). The served
forecast is scored next to naive and every fixed model. Writes ``<series>.json`` (tables,
decisions, the command, the date, wall times) into ``--json-dir`` and rebuilds ``--out`` from
every JSON file there. A ``--cache`` grid that lacks some of the models gets only those
forecast, on its own protocol, and is written back. Defaults are the pipeline's:
BACKTEST_ORIGINS, BACKTEST_WINDOW, the frequency's backtest horizon and spacing, the default
models.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import get_settings  # noqa: E402
from pipeline.errors import UsageError  # noqa: E402
from pipeline.evaluation.backtest import BacktestResult, run_backtest  # noqa: E402
from pipeline.evaluation.champion import SELECTION_RULES  # noqa: E402
from pipeline.evaluation.compare import load_csv_series  # noqa: E402
from pipeline.evaluation.protocol import (  # noqa: E402
    FREQ_DEFAULTS,
    BacktestProtocol,
    default_protocol,
    parse_step,
)
from pipeline.evaluation.replay import ratio_table, replay, summary_lines  # noqa: E402
from pipeline.forecasters import parse_models  # noqa: E402
from pipeline.series import SeriesId, freq_offset  # noqa: E402
from pipeline.train.selection import model_params  # noqa: E402

logger = logging.getLogger("bench.replay")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="CSV export of one series")
    parser.add_argument("--coin", required=True)
    parser.add_argument("--vs", default="usd")
    parser.add_argument("--freq", default="1d")
    parser.add_argument("--start", default="2018-01-01", help="first decision origin")
    parser.add_argument("--end", default="2021-12-31", help="last date with prices used")
    parser.add_argument("--step", help="grid spacing (default: the frequency's backtest step)")
    parser.add_argument("--horizon", type=int, help="steps (default: the backtest horizon)")
    parser.add_argument("--decide-every", type=int, default=1, help="decide every n-th origin")
    parser.add_argument("--selection-origins", type=int, help="default: BACKTEST_ORIGINS")
    parser.add_argument("--window", type=int, help="points per fit (default: BACKTEST_WINDOW)")
    parser.add_argument("--models", help="comma-separated (default: the default models)")
    parser.add_argument("--rules", default=",".join(SELECTION_RULES))
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--cache", type=Path, help="pickle of the grid: reused when present")
    parser.add_argument("--json-dir", type=Path, default=ROOT / "docs/results/replay")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/results/replay.md")
    return parser.parse_args(argv)


def forecast_grid(
    y: pd.Series, series: SeriesId, models: list[str], protocol: BacktestProtocol, n_jobs: int
) -> BacktestResult:
    """Every model of ``models`` forecast at every origin of ``protocol``."""
    served = get_settings().horizon(series.freq)
    return run_backtest(
        y,
        models,
        protocol,
        series=series.name,
        model_params={m: model_params(m, None, served) for m in models},
        n_jobs=n_jobs,
        progress=False,
    )


def extend_grid(
    grid: BacktestResult, y: pd.Series, series: SeriesId, models: list[str], n_jobs: int
) -> BacktestResult:
    """``grid`` with the ``models`` it lacks forecast on its own protocol (same origins, same
    windows) and appended: a cached grid need not be recomputed for one new model."""
    missing = [m for m in models if m not in grid.models]
    if not missing:
        return grid
    logger.info("cached grid lacks %s: forecasting them on its protocol", ", ".join(missing))
    extra = forecast_grid(y, series, missing, grid.protocol, n_jobs)
    if sorted(extra.origins) != sorted(grid.origins):
        raise UsageError("the cached grid's origins do not match its protocol: rebuild it")
    return replace(
        grid,
        models=[*grid.models, *missing],
        complexity={**grid.complexity, **extra.complexity},
        folds=pd.concat([grid.folds, extra.folds], ignore_index=True),
        fold_metrics=pd.concat([grid.fold_metrics, extra.fold_metrics], ignore_index=True),
        failures={**grid.failures, **extra.failures},
        elapsed_seconds=grid.elapsed_seconds + extra.elapsed_seconds,
    )


def build_grid(args: argparse.Namespace, series: SeriesId, y: pd.Series) -> BacktestResult:
    settings = get_settings()
    defaults = FREQ_DEFAULTS[series.freq]
    horizon = args.horizon or defaults.horizon
    step = parse_step(args.step or defaults.step)
    k = args.selection_origins or settings.backtest_origins
    window = args.window or settings.backtest_window
    # Enough grid origins before the first decision for its selection backtest.
    first = pd.Timestamp(args.start, tz="UTC") - (k + 1) * step - horizon * freq_offset(series.freq)
    protocol = default_protocol(
        series.freq,
        y.index,
        horizon=horizon,
        step=step,
        start=max(first, y.index[window]),
        train_window=window,
    )
    return forecast_grid(y, series, parse_models(args.models), protocol, args.n_jobs)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    warnings.simplefilter("ignore")
    args = parse_args(argv)
    settings = get_settings()
    series = SeriesId(args.coin, args.vs, args.freq)
    y, source = load_csv_series(args.data, series.freq, settings)
    y = y[y.index <= pd.Timestamp(args.end, tz="UTC") + pd.Timedelta(days=1)]
    t0 = time.perf_counter()
    if args.cache is not None and args.cache.is_file():
        grid: BacktestResult = pickle.loads(args.cache.read_bytes())  # noqa: S301 - our own file
        models = parse_models(args.models)
        if any(m not in grid.models for m in models):
            grid = extend_grid(grid, y, series, models, args.n_jobs)
            args.cache.write_bytes(pickle.dumps(grid))
        grid = replace(grid, models=[m for m in grid.models if m in models])
        grid_seconds = float(grid.elapsed_seconds)
    else:
        grid = build_grid(args, series, y)
        grid_seconds = time.perf_counter() - t0
        if args.cache is not None:
            args.cache.write_bytes(pickle.dumps(grid))
    k = args.selection_origins or settings.backtest_origins
    record: dict[str, Any] = {
        "series": series.name,
        "data": source,
        "command": "python bench/replay.py " + shlex.join(argv if argv else sys.argv[1:]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "grid": {
            **grid.protocol.to_dict(),
            "origins": len(grid.origins),
            "models": grid.models,
            "seconds": round(grid_seconds, 1),
            "failures": {m: len(v) for m, v in grid.failures.items()},
        },
        "selection_origins": k,
        "decide_every": args.decide_every,
        "rules": {},
    }
    for rule in args.rules.split(","):
        t1 = time.perf_counter()
        result = replay(
            grid,
            series,
            settings,
            selection_origins=k,
            decide_every=args.decide_every,
            start=pd.Timestamp(args.start, tz="UTC"),
            rule=rule,
        )
        table = ratio_table(result)
        for line in summary_lines(result):
            logger.info("%s", line)
        logger.info("\n%s", table.to_string())
        record["rules"][rule] = {
            "decisions": len(result.steps),
            "first": result.steps[0].origin.isoformat(),
            "last": result.steps[-1].origin.isoformat(),
            "changes": result.changes(),
            "served": result.served_counts(),
            "table": table.reset_index().to_dict(orient="records"),
            "seconds": round(time.perf_counter() - t1, 1),
            "steps": [[s.origin.isoformat(), s.served] for s in result.steps],
        }
    args.json_dir.mkdir(parents=True, exist_ok=True)
    (args.json_dir / f"{series.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    args.out.write_text(render(sorted(args.json_dir.glob("*.json"))))
    logger.info("wrote %s and %s", args.json_dir / f"{series.name}.json", args.out)
    return 0


HEADER = """# Replay of the served system

What the pipeline would have served, decision by decision, and how it scored against naive and
against every model served alone on the same origins. Written by `bench/replay.py` (see
[Evaluation](../evaluation.md#decision)); each section names its
command and date. Ratios are mean scores over the decision origins divided by naive's mean on
the same origins (below 1: better than naive); coverages are pooled over every step.
`evidence` is the default rule (`SELECTION_RULE` in `pipeline/evaluation/champion.py`: the
anchor, `band_average` on daily series and `calibrated_band_average` on intraday ones, unless a
challenger is better with confidence, significance tests and hysteresis, see
[the evidence rule](../evaluation.md#the-evidence-rule-the-default)); `means` the lowest mean
Winkler-95 of the selection backtest, nothing else.
"""


NOTES = """
Against the targets (the evidence rule, the run of 2026-12-02 above):

* **MASE ≤ 1.000× naive on every series: met** (1.000: the anchor and every model the rule
  let win forecast the last price).
* **WIS ≤ 0.98× naive (stretch 0.97×): missed** by 0.6 points on BTC daily (0.986), 0.6 on BTC
  hourly (0.986) and 0.2 on ETH daily (0.982). All of the gain comes from the bands (no point
  forecast beats the random walk), and no single model reaches 0.98 but GARCH, GJR-GARCH and
  the calibrated band average on ETH daily (0.979); on BTC hourly the best fixed model is the
  anchor itself (0.985). On BTC daily a HAR-RV band from hourly realized variance would have
  scored 0.977 on the same decisions ([HAR-RV daily bands](har-rv.md): not significant,
  p = 0.15, and not served yet: it needs the coin's hourly prices beside the daily series).
* **Never worse than the best fixed model by more than 0.5% WIS: met** (+0.0%, +0.1%, +0.3%).
  The means rule trailed by 0.7–2.0% and lost to naive on BTC daily (1.006).
* **Pooled 95% coverage 94–96%: met** (94.3%, 95.6%, 95.6%). **80% coverage 78–82%: met on the
  daily series** (78.3%, 80.9%), **missed by 0.6 points on BTC hourly** (82.6%). The naive,
  GARCH and averaged bands there cover 83–88% at 80% while covering about 95% at 95% (hourly
  returns have fatter tails than the bands' shape assumes, so one scale cannot fit both
  levels). The intraday anchor, `calibrated_band_average`, takes its 80% band from the training
  window's own volatility-normalised errors: served alone it covers 82.3% and lowers WIS from
  0.992 to 0.985 (the plain band average, the anchor before, served 0.993 with 85.7%).
* **A few champion changes a year: met** (0, 1 in 3.4 years, 0: on BTC hourly the first five
  decisions kept the naive baseline, then the anchor took over for good).
"""


def summary_table(records: Sequence[dict[str, Any]]) -> str:
    """One row per series and rule: the served scores next to the best fixed model's WIS."""
    lines = [
        "\n| series | rule | served MASE / naive | served WIS / naive | best fixed model (WIS) "
        "| served − best | 80% / 95% cov. | changes |\n|---|---|---:|---:|---|---:|---:|---:|\n"
    ]
    for rec in records:
        for rule, res in rec["rules"].items():
            rows = {row["model"]: row for row in res["table"]}
            served = rows.pop("served")
            best = min(rows.values(), key=lambda row: row["wis_ratio"])
            gap = served["wis_ratio"] / best["wis_ratio"] - 1
            lines.append(
                f"| {rec['series']} | {rule} | {served['mase_ratio']:.3f} | "
                f"{served['wis_ratio']:.3f} | {best['model']} {best['wis_ratio']:.3f} | "
                f"{gap:+.1%} | {served['coverage_80']:.1%} / {served['coverage_95']:.1%} | "
                f"{res['changes']} |\n"
            )
    return "".join(lines)


def render(paths: Sequence[Path]) -> str:
    records = [json.loads(path.read_text()) for path in paths]
    parts = [HEADER, summary_table(records), NOTES]
    for rec in records:
        grid = rec["grid"]
        parts.append(f"\n## {rec['series']}\n")
        parts.append(
            f"Data {rec['data']}; {rec['date']}: `{rec['command']}`\n\n"
            f"Grid: {grid['origins']} origins every {grid['step']}, horizon {grid['horizon']}, "
            f"sliding window {grid['train_window']}, {len(grid['models'])} models, "
            f"{grid['seconds']:.0f} s. Each decision reads the {rec['selection_origins']} latest "
            f"matured origins; decisions every {rec['decide_every']} grid origin(s).\n"
        )
        for rule, res in rec["rules"].items():
            served = ", ".join(f"{m} {n}" for m, n in res["served"].items())
            parts.append(
                f"\n**{rule} rule**: {res['decisions']} decisions "
                f"({res['first'][:10]} .. {res['last'][:10]}), {res['changes']} champion "
                f"changes; served {served}.\n\n"
                "| model | MASE / naive | WIS / naive | Winkler-95 / naive | 80% cov. | "
                "95% cov. |\n|---|---:|---:|---:|---:|---:|\n"
            )
            for row in res["table"]:
                name = f"**{row['model']}**" if row["model"] == "served" else row["model"]
                parts.append(
                    f"| {name} | {row['mase_ratio']:.3f} | {row['wis_ratio']:.3f} | "
                    f"{row['winkler_95_ratio']:.3f} | {row['coverage_80']:.1%} | "
                    f"{row['coverage_95']:.1%} |\n"
                )
    return "".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
