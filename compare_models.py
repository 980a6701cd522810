"""Compare forecasters with rolling-origin backtests, pick a champion, and run the quality gate.

    python compare_models.py --coin bitcoin --vs usd --freq 1d [--models naive,arima] \\
        [--start 2021-01-01 --end 2021-12-01 --step 30D --horizon 30 --train-window 1000]
    python compare_models.py --data ../shared/data/bitstamp_btcusd_1d_2014-2021.csv --freq 1d \\
        --gate --baseline quality_baseline.json

Exit codes: 0 ok (gate held), 1 gate failed, 2 bad usage or unusable data.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from pipeline.config import Settings, get_settings
from pipeline.errors import (
    DataValidationError,
    IngestError,
    PipelineError,
    ProcessingError,
    UsageError,
)
from pipeline.logs import configure_logging
from pipeline.series import FREQUENCIES, SeriesId, freq_offset

logger = logging.getLogger("compare_models")

DEFAULT_GATE_CONFIG = Path("quality_gate.json")
DEFAULT_BASELINE = Path("quality_baseline.json")
PROTOCOL_FLAGS = ("start", "end", "step", "horizon", "train_window", "refit_every", "origins")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="compare_models.py",
        description="Rolling-origin backtests of the forecasters, champion selection, reports "
        "and the model-quality gate.",
    )
    p.add_argument("--coin", default=None, help="CoinGecko coin id (default: first configured)")
    p.add_argument("--vs", default=None, help="quote currency (default: settings VS_CURRENCY)")
    p.add_argument("--freq", default="1d", choices=["1h", "4h", "1d"])
    p.add_argument("--models", default=None, help="comma list (default: all); naive always runs")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--data", type=Path, help="evaluate a CSV export instead of processed data")
    data.add_argument("--source", help="csv:PATH (same as --data PATH)")
    g = p.add_argument_group("protocol (defaults suit each frequency)")
    g.add_argument("--start", help="first origin (UTC date/time)")
    g.add_argument("--end", help="last origin (default: latest with a full horizon of actuals)")
    g.add_argument("--step", help="spacing of origins, e.g. 30D, 7D, 168h")
    g.add_argument("--horizon", type=int, help="steps forecast at each origin")
    g.add_argument("--origins", type=int, help="number of origins when --start is not given")
    g.add_argument("--train-window", type=int, help="sliding window of N points (default: all)")
    g.add_argument("--refit-every", type=int, help="refit every k origins (default 1)")
    r = p.add_argument_group("execution")
    r.add_argument("--n-jobs", type=int, default=-1, help="parallel workers (-1: all cores)")
    r.add_argument("--backend", choices=["loky", "dask"], default=None)
    r.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    o = p.add_argument_group("selection, reports and gate")
    o.add_argument(
        "--coverage-band",
        help="MIN,MAX of the champion's 95%% coverage (default 0.90,0.99; the gate has its own)",
    )
    o.add_argument(
        "--mase-tolerance",
        type=float,
        default=0.0,
        help="how much worse than naive's mean MASE the champion may be (fraction, default 0)",
    )
    o.add_argument("--reports-dir", type=Path, help="default: settings REPORTS_DIR")
    o.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    o.add_argument("--promote", action="store_true", help="make the champion the served model")
    o.add_argument("--gate", action="store_true", help="apply the quality gate; exit 1 if it fails")
    o.add_argument("--gate-config", type=Path, default=DEFAULT_GATE_CONFIG)
    o.add_argument(
        "--baseline", type=Path, help="compare with this baseline (and reuse its protocol)"
    )
    o.add_argument(
        "--write-baseline",
        action="store_true",
        help=f"record this run as the series' baseline (in --baseline, default {DEFAULT_BASELINE})",
    )
    return p


def _coverage_band(text: str | None) -> tuple[float, float]:
    """The champion-selection band (``--coverage-band``); the gate keeps its own band."""
    from pipeline.evaluation.champion import DEFAULT_COVERAGE_BAND

    if not text:
        return DEFAULT_COVERAGE_BAND
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--coverage-band {text!r}: use MIN,MAX like 0.90,0.99") from None
    if not 0 <= lo <= hi <= 1:
        raise UsageError(f"--coverage-band {text!r}: need 0 <= MIN <= MAX <= 1")
    return lo, hi


def load_series(
    args: argparse.Namespace, series: SeriesId, settings: Settings
) -> tuple[pd.Series, str]:
    """The price series to evaluate and a label for where it came from."""
    path = args.data
    if args.source:
        if not args.source.startswith("csv:") or len(args.source) <= 4:
            raise UsageError(
                f"--source {args.source!r}: compare_models evaluates local data; use csv:PATH, "
                "or ingest and process first and omit --source"
            )
        path = Path(args.source[4:])
    if path is None:
        from pipeline.process.stage import load_training_series, processed_path

        y = load_training_series(settings.data_dir, series)
        return y, str(processed_path(settings.data_dir, series))
    return load_csv_series(path, series.freq, settings)


def load_csv_series(path: Path, freq: str, settings: Settings) -> tuple[pd.Series, str]:
    """A CSV export on the regular ``freq`` grid (processing's gap policy), and its label."""
    if not path.is_file():
        raise UsageError(f"--data {path}: no such file")
    from pipeline.ingest import read_csv_export
    from pipeline.process.stage import regularize

    raw = read_csv_export(path)
    frame, report = regularize(raw, freq, settings.max_fill_gap)
    frame = frame[frame["ds"] >= pd.Timestamp(report["train_start"])].dropna(subset=["price"])
    y = pd.Series(
        frame["price"].to_numpy(dtype=float),
        index=pd.DatetimeIndex(frame["ds"], name="ds"),
        name="y",
    )
    if len(y) > 1 and bool((np.diff(y.index.asi8) == freq_offset(freq).value).all()):
        y.index.freq = to_offset(FREQUENCIES[freq])
    return y, f"{path.name} (from {report['train_start'][:10]})"


def _write(text: str) -> None:
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.evaluation.backtest import (
        BacktestProtocol,
        default_protocol,
        ensure_naive,
        run_backtest,
    )
    from pipeline.evaluation.champion import select_champion
    from pipeline.evaluation.gate import (
        baseline_entry,
        check_comparable,
        evaluate_gate,
        load_gate_config,
        read_baseline,
        series_fingerprint,
        write_baseline,
    )
    from pipeline.evaluation.report import metrics_table, report_dir, write_report
    from pipeline.forecasters import parse_models

    series = SeriesId(args.coin or settings.coins[0], args.vs or settings.vs_currency, args.freq)
    if args.scheduler and args.backend == "loky":
        raise UsageError("--scheduler needs --backend dask")
    backend = args.backend or ("dask" if args.scheduler else "loky")
    band = _coverage_band(args.coverage_band)
    if args.mase_tolerance < 0:
        raise UsageError(f"--mase-tolerance must be >= 0, got {args.mase_tolerance}")
    gate_config = load_gate_config(args.gate_config) if args.gate else None

    y, source = load_series(args, series, settings)
    fingerprint = series_fingerprint(y)
    explicit = [f for f in PROTOCOL_FLAGS if getattr(args, f) is not None]

    entry: dict[str, Any] | None = None
    baseline_path = args.baseline or DEFAULT_BASELINE
    if args.baseline is not None and not args.write_baseline:
        entry = baseline_entry(read_baseline(args.baseline), series.name, args.baseline)
    if entry is not None and not explicit:
        protocol = BacktestProtocol.from_dict(entry["protocol"])
    else:
        protocol = default_protocol(
            series.freq,
            y.index,
            horizon=args.horizon,
            step=args.step,
            start=args.start,
            end=args.end,
            n_origins=args.origins,
            train_window=args.train_window,
            refit_every=args.refit_every or 1,
        )
    if entry is not None:
        check_comparable(entry, protocol.to_dict(), fingerprint, args.baseline)
    if args.models:
        models = ensure_naive(parse_models(args.models))
    elif entry is not None:
        models = ensure_naive(list(entry["models"]))
    else:
        models = ensure_naive(parse_models(None))

    result = run_backtest(
        y,
        models,
        protocol,
        series=series.name,
        n_jobs=args.n_jobs,
        backend=backend,
        scheduler=args.scheduler,
    )
    summary = result.summary()
    champion, reason = select_champion(
        summary, coverage_band=band, mase_tolerance=args.mase_tolerance
    )
    outcome = None
    if gate_config is not None:
        outcome = evaluate_gate(series.name, summary, champion, gate_config, baseline_entry=entry)

    out_dir = report_dir(args.reports_dir or settings.reports_dir, series.name)
    write_report(
        result,
        out_dir,
        champion=champion,
        reason=reason,
        data_source=source,
        coverage_band=band,
        mase_tolerance=args.mase_tolerance,
        gate=outcome.to_dict() if outcome else None,
        plots=not args.no_plots,
    )
    _write(
        f"{series.name}: {len(result.origins)} origins, horizon {protocol.horizon}, "
        f"{result.elapsed_seconds:.1f} s\n"
    )
    _write(metrics_table(summary, champion))
    _write(f"\nchampion: {champion} — {reason}")
    _write(f"report: {out_dir}")
    if args.write_baseline:
        write_baseline(
            baseline_path,
            series.name,
            protocol=protocol.to_dict(),
            summary=summary,
            fingerprint=fingerprint,
            data=source,
            champion=champion,
        )
        _write(f"baseline for {series.name} written to {baseline_path}")
    if outcome is not None:
        _write(outcome.render())
        if not outcome.passed:
            failing = "; ".join(f"{c.rule}: {c.message}" for c in outcome.failures())
            logger.error("quality gate failed for %s: %s", series.name, failing)
            if args.promote:
                _write("not promoting: the quality gate failed")
            return 1
    if args.promote:
        promote(settings, series, champion, reason)
    return 0


def promote(settings: Settings, series: SeriesId, champion: str, reason: str) -> None:
    """Point the served champion at the latest trained version of ``champion``."""
    from pipeline.artifacts.store import ArtifactStore

    store = ArtifactStore(settings.models_dir)
    version = store.latest(series, champion)
    if version is None:
        raise UsageError(
            f"no trained {champion} model for {series.name} in {settings.models_dir}: run "
            f"`python -m pipeline.train --coin {series.coin} --vs {series.vs} "
            f"--freq {series.freq} --models {champion}` first, then --promote again"
        )
    store.promote(series, champion, version, reason=f"compare_models: {reason}")
    _write(f"promoted {champion} {version} as the champion of {series.name}")


#: Errors that mean "bad usage or unusable data" (exit 2).
USAGE_ERRORS = (UsageError, DataValidationError, ProcessingError, IngestError)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = get_settings()
        configure_logging(settings.log_level, settings.log_format)
        args = build_parser().parse_args(argv)
        return run(args, settings)
    except USAGE_ERRORS as exc:
        logger.error("%s", exc)
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except PipelineError as exc:
        logger.error("%s", exc)
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
