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
every JSON file there. Defaults are the pipeline's: BACKTEST_ORIGINS, BACKTEST_WINDOW, the
frequency's backtest horizon and spacing, the default models.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import get_settings  # noqa: E402
from pipeline.evaluation.backtest import BacktestResult, run_backtest  # noqa: E402
from pipeline.evaluation.champion import SELECTION_RULES  # noqa: E402
from pipeline.evaluation.compare import load_csv_series  # noqa: E402
from pipeline.evaluation.protocol import FREQ_DEFAULTS, default_protocol, parse_step  # noqa: E402
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
    models = parse_models(args.models)
    served = settings.horizon(series.freq)
    return run_backtest(
        y,
        models,
        protocol,
        series=series.name,
        model_params={m: model_params(m, None, served) for m in models},
        n_jobs=args.n_jobs,
        progress=False,
    )


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
`means` is the default rule (the lowest mean Winkler-95 of the selection backtest), `evidence`
the rule with significance tests and hysteresis (`SELECTION_RULE` in
`pipeline/evaluation/champion.py`).
"""


def render(paths: Sequence[Path]) -> str:
    parts = [HEADER]
    for path in paths:
        rec = json.loads(path.read_text())
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
