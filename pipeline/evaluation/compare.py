"""One model comparison (``compare_models.py``): backtest, champion, report, gate, promotion.

:func:`run` loads the series (processed data, or a CSV export on the processing grid), backtests
the models under the frequency's protocol (or a baseline's), lets
:func:`pipeline.evaluation.champion.decide_comparison` choose the champion and apply the gate,
writes the report folder, optionally records a baseline and promotes the champion, and returns
the exit code: 0 ok, 1 the gate failed. Bad usage or unusable data raise
:class:`~pipeline.errors.UsageError` (and the other input errors), which the script maps to 2.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.evaluation.champion import (
    SELECTION_COVERAGE_BAND,
    SELECTION_MASE_TOLERANCE,
    decide_comparison,
    ensure_naive,
)
from pipeline.evaluation.evidence import Evidence
from pipeline.series import FREQUENCIES, SeriesId, freq_offset

logger = logging.getLogger(__name__)

DEFAULT_GATE_CONFIG = Path("quality_gate.json")
DEFAULT_BASELINE = Path("quality_baseline.json")
#: Options that override a part of the backtest protocol (without any, a baseline's is reused).
PROTOCOL_FLAGS = ("start", "end", "step", "horizon", "train_window", "refit_every", "origins")


@dataclass
class CompareOptions:
    """What to compare and how: the flags of ``compare_models.py`` (same names, same defaults)."""

    coin: str | None = None
    vs: str | None = None
    freq: str = "1d"
    models: str | None = None
    data: Path | None = None
    source: str | None = None
    start: str | None = None
    end: str | None = None
    step: str | None = None
    horizon: int | None = None
    origins: int | None = None
    train_window: int | None = None
    refit_every: int | None = None
    n_jobs: int = -1
    backend: str | None = None
    scheduler: str | None = None
    coverage_band: str | None = None
    mase_tolerance: float = SELECTION_MASE_TOLERANCE
    reports_dir: Path | None = None
    no_plots: bool = False
    promote: bool = False
    gate: bool = False
    gate_config: Path = DEFAULT_GATE_CONFIG
    baseline: Path | None = None
    write_baseline: bool = False


def parse_coverage_band(text: str | None) -> tuple[float, float]:
    """The champion-selection band (``--coverage-band MIN,MAX``); the gate keeps its own band."""
    if not text:
        return SELECTION_COVERAGE_BAND
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--coverage-band {text!r}: use MIN,MAX like 0.90,0.99") from None
    if not 0 <= lo <= hi <= 1:
        raise UsageError(f"--coverage-band {text!r}: need 0 <= MIN <= MAX <= 1")
    return lo, hi


def load_series(
    options: CompareOptions, series: SeriesId, settings: Settings
) -> tuple[pd.Series, str]:
    """The price series to evaluate and a label for where it came from."""
    path = options.data
    if options.source:
        if not options.source.startswith("csv:") or len(options.source) <= 4:
            raise UsageError(
                f"--source {options.source!r}: compare_models evaluates local data; use "
                "csv:PATH, or ingest and process first and omit --source"
            )
        path = Path(options.source[4:])
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


def run(options: CompareOptions, settings: Settings, out: TextIO | None = None) -> int:
    """Compare the models on one series; print the results to ``out`` (stdout); 0 or 1."""
    from pipeline.evaluation.backtest import run_backtest
    from pipeline.evaluation.baseline import (
        baseline_entry,
        check_comparable,
        read_baseline,
        series_fingerprint,
        write_baseline,
    )
    from pipeline.evaluation.gate import load_gate_config
    from pipeline.evaluation.protocol import BacktestProtocol, default_protocol
    from pipeline.evaluation.report import report_dir, write_report
    from pipeline.evaluation.tables import metrics_table
    from pipeline.forecasters import horizon_params, parse_models

    stream = out or sys.stdout

    def say(text: str) -> None:
        stream.write(text + ("" if text.endswith("\n") else "\n"))

    opts = options
    series = SeriesId(opts.coin or settings.coins[0], opts.vs or settings.vs_currency, opts.freq)
    if opts.scheduler and opts.backend == "loky":
        raise UsageError("--scheduler needs --backend dask")
    backend = opts.backend or ("dask" if opts.scheduler else "loky")
    band = parse_coverage_band(opts.coverage_band)
    if opts.mase_tolerance < 0:
        raise UsageError(f"--mase-tolerance must be >= 0, got {opts.mase_tolerance}")
    gate_config = load_gate_config(opts.gate_config) if opts.gate else None

    y, source = load_series(opts, series, settings)
    fingerprint = series_fingerprint(y)
    explicit = [f for f in PROTOCOL_FLAGS if getattr(opts, f) is not None]

    entry: dict[str, Any] | None = None
    baseline_path = opts.baseline or DEFAULT_BASELINE
    if opts.baseline is not None and not opts.write_baseline:
        entry = baseline_entry(read_baseline(opts.baseline), series.name, opts.baseline)
    if entry is not None and not explicit:
        protocol = BacktestProtocol.from_dict(entry["protocol"])
    else:
        protocol = default_protocol(
            series.freq,
            y.index,
            horizon=opts.horizon,
            step=opts.step,
            start=opts.start,
            end=opts.end,
            n_origins=opts.origins,
            train_window=opts.train_window,
            refit_every=opts.refit_every or 1,
        )
    if entry is not None:
        check_comparable(entry, protocol.to_dict(), fingerprint, opts.baseline or baseline_path)
    if opts.models:
        models = ensure_naive(parse_models(opts.models))
    elif entry is not None:
        models = ensure_naive(list(entry["models"]))
    else:
        models = ensure_naive(parse_models(None))

    served = settings.horizon(series.freq)  # what the calibrated models calibrate
    result = run_backtest(
        y,
        models,
        protocol,
        series=series.name,
        model_params={m: horizon_params(m, served) for m in models},
        n_jobs=opts.n_jobs,
        backend=backend,
        scheduler=opts.scheduler,
    )
    summary = result.summary()
    decision = decide_comparison(
        series.name,
        summary,
        coverage_band=band,
        mase_tolerance=opts.mase_tolerance,
        gate_config=gate_config,
        baseline_entry=entry,
        evidence=Evidence.from_backtest(result),
        freq=series.freq,
    )
    champion, reason, outcome = decision.champion, decision.reason, decision.gate

    out_dir = report_dir(opts.reports_dir or settings.reports_dir, series.name)
    write_report(
        result,
        out_dir,
        champion=champion,
        reason=reason,
        data_source=source,
        coverage_band=band,
        mase_tolerance=opts.mase_tolerance,
        gate=outcome.to_dict() if outcome else None,
        plots=not opts.no_plots,
    )
    say(
        f"{series.name}: {len(result.origins)} origins, horizon {protocol.horizon}, "
        f"{result.elapsed_seconds:.1f} s\n"
    )
    say(metrics_table(summary, champion))
    say(f"\nchampion: {champion} — {reason}")
    say(f"report: {out_dir}")
    if opts.write_baseline:
        write_baseline(
            baseline_path,
            series.name,
            protocol=protocol.to_dict(),
            summary=summary,
            fingerprint=fingerprint,
            data=source,
            champion=champion,
        )
        say(f"baseline for {series.name} written to {baseline_path}")
    if outcome is not None:
        say(outcome.render())
    if outcome is not None and not decision.promotable:
        failing = "; ".join(f"{c.rule}: {c.message}" for c in outcome.failures())
        logger.error("quality gate failed for %s: %s", series.name, failing)
        if opts.promote:
            say("not promoting: the quality gate failed")
        return 1
    if opts.promote:
        say(promote(settings, series, champion, reason))
    return 0


def promote(settings: Settings, series: SeriesId, champion: str, reason: str) -> str:
    """Point the served champion at the latest trained version of ``champion``; say so."""
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
    return f"promoted {champion} {version} as the champion of {series.name}"
