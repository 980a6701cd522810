"""``python -m pipeline``: ingest -> process -> train for the configured coins and frequencies.

The raw files behind the configured series are ingested once each (a 4h series is processed
from the hourly file), every configured series is processed, then every series x model is
trained in parallel and each series' champion promoted. The run stops at the first failing
stage with a message naming the stage and the series, and exits non-zero (1 failed, 2 bad
usage or input). A short summary table is printed at the end.

``python -m pipeline ledger ...`` runs the forecast ledger commands (:mod:`pipeline.ledger.cli`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.artifacts.store import ArtifactStore
from pipeline.cli import settings_from_args
from pipeline.config import SOURCES, Settings
from pipeline.errors import PipelineError
from pipeline.forecasters import parse_models
from pipeline.ingest import ratelimit
from pipeline.logs import configure_logging
from pipeline.scheduling.ledger_update import update_ledger
from pipeline.series import SeriesId, freq_choices
from pipeline.train.stage import TrainResult, train_many

# The module name even when run with ``python -m`` (where __name__ is "__main__").
logger = logging.getLogger(__spec__.name if __spec__ else __name__)


class StageError(Exception):
    """A stage failed; carries the exit code of the underlying error."""

    def __init__(self, stage: str, series: SeriesId | None, exc: BaseException) -> None:
        where = f" for {series.name}" if series is not None else ""
        super().__init__(f"{stage} failed{where}: {exc}")
        self.exit_code = exc.exit_code if isinstance(exc, PipelineError) else 1


def run_ingest(settings: Settings, days: int | None) -> None:
    """Ingest the raw series behind the configured ones (4h comes from hourly data)."""
    from pipeline.ingest import ingest_series, raw_series

    for raw in raw_series(settings):
        start = time.perf_counter()
        try:
            result = ingest_series(raw, settings, source=settings.source, days=days)
        except Exception as exc:
            raise StageError("ingest", raw, exc) from exc
        logger.info(
            "ingested %s from %s: %d new rows, %d total (%.1fs)",
            raw.name, result.source_used, result.rows_added, result.rows_total,
            time.perf_counter() - start,
            extra={"series": raw.name, "stage": "ingest"},
        )  # fmt: skip


def run_process(series: Sequence[SeriesId], settings: Settings) -> None:
    from pipeline.process.stage import process_series

    for s in series:
        start = time.perf_counter()
        try:
            process_series(s, settings)
        except Exception as exc:
            raise StageError("process", s, exc) from exc
        logger.info(
            "processed %s (%.1fs)", s.name, time.perf_counter() - start,
            extra={"series": s.name, "stage": "process"},
        )  # fmt: skip


def summary_table(results: Sequence[TrainResult], store: ArtifactStore) -> str:
    """Per series: a title line (points, champion, path), then one row per model.

    The backtest columns are the selection backtest the champion was chosen on (ratios to
    naive: below 1 is better); ``holdout MASE`` is the single final holdout.
    """
    blocks = []
    for r in results:
        champ = r.versions.get(r.champion) if r.champion else None
        path = store.version_dir(r.series, champ.model, champ.version) if champ else "-"
        origins = r.backtest_protocol.get("origins")
        title = (
            f"{r.series.name}  {r.n_points} points  champion: {r.champion or 'none'}  {path}"
            + (f"  (backtest: {origins} origins)" if origins else "  (no backtest: holdout only)")
        )
        header = [
            "model", "MASE", "/naive", "WIS", "/naive", "cov80", "cov95", "Winkler95", "/naive",
            "holdout MASE",
        ]  # fmt: skip
        rows = [header]
        naive = r.backtest.get("naive", {})
        for m in sorted({*r.metrics, *r.failures}):
            name = m
            if m == "arima" and m in r.versions:
                name = f"arima {_fmt_order(r.versions[m].params.get('order'))}"
            mark = "* " if m == r.champion else "  "
            if m in r.failures:
                rows.append([mark + name, f"failed: {r.failures[m]}"])
                continue
            bt = r.backtest.get(m, {})
            rows.append(
                [
                    mark + name,
                    _num(bt.get("mase")),
                    _ratio(bt.get("mase"), naive.get("mase")),
                    _num(bt.get("wis"), 0),
                    _ratio(bt.get("wis"), naive.get("wis")),
                    _pct(bt.get("coverage_80")),
                    _pct(bt.get("coverage_95")),
                    _num(bt.get("winkler_95"), 0),
                    _ratio(bt.get("winkler_95"), naive.get("winkler_95")),
                    _num(r.metrics[m].get("mase")),
                ]
            )
        widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(header))]
        lines = [title]
        for row in rows:
            lines.append(
                "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _num(value: object, digits: int = 3) -> str:
    if not isinstance(value, int | float) or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(value: object, base: object) -> str:
    if not isinstance(value, int | float) or not isinstance(base, int | float) or not base:
        return "-"
    return f"{value / base:.3f}"


def _pct(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) and value == value else "-"


def _fmt_order(order: object) -> str:
    if isinstance(order, list | tuple):
        return "(" + ",".join(str(v) for v in order) + ")"
    return "-" if order is None else str(order)


#: argparse dest -> Settings field, for the flags that override a setting.
SETTING_FLAGS = {
    "source": "source",
    "coin": "coins",
    "vs": "vs_currency",
    "freq": "frequencies",
    "days": "history_days",
    "data_dir": "data_dir",
    "models_dir": "models_dir",
    "n_jobs": "n_jobs",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Run ingest -> process -> train for the configured coins and frequencies.",
    )
    parser.add_argument("--source", help=f"{' | '.join(SOURCES)} (default SOURCE)")
    parser.add_argument("--coin", help="coin id(s), comma-separated (default COINS)")
    parser.add_argument("--vs", help="quote currency (default VS_CURRENCY)")
    parser.add_argument("--freq", help=f"{freq_choices()}, comma-separated (default FREQUENCIES)")
    parser.add_argument(
        "--models", help="model names, comma-separated, e.g. naive,drift,arima (default: all)"
    )
    parser.add_argument("--days", type=int, help="days of history on a first ingest")
    parser.add_argument("--data-dir", type=Path, help="data folder (default DATA_DIR)")
    parser.add_argument("--models-dir", type=Path, help="models folder (default MODELS_DIR)")
    parser.add_argument("--n-jobs", type=int, help="parallel fits, -1 = all cores (default N_JOBS)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="one task per series on this Dask cluster (default DASK_SCHEDULER_ADDRESS)",
    )
    where.add_argument(
        "--workers", type=int, metavar="N", help="one task per series on a local Dask cluster"
    )
    return parser


def run_on_cluster(
    series: Sequence[SeriesId],
    settings: Settings,
    models: Sequence[str],
    days: int | None,
    scheduler: str | None,
    workers: int | None,
) -> list[TrainResult] | None:
    """Ingest, process and train every series as a task on a Dask cluster (``None`` when none
    is asked for); raises :class:`StageError` for the first series that failed."""
    from pipeline.scheduling.cluster import Cluster

    try:
        cluster = Cluster.from_options(settings, scheduler, workers)
        if cluster is None:
            return None
        with cluster:
            outcomes = cluster.run_pipeline_series(series, settings, models, days)
    except PipelineError as exc:  # bad flags, or the scheduler cannot be reached
        raise StageError("cluster", None, exc) from exc
    for out in outcomes:
        if out.result is None:
            error = PipelineError(out.error or "failed")
            error.exit_code = out.exit_code
            raise StageError(out.stage or "cluster", out.series, error)
    return [out.result for out in outcomes if out.result is not None]


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["ledger"]:  # python -m pipeline ledger sync|score|report|replay
        from pipeline.ledger.cli import main as ledger_main

        return ledger_main(words[1:])
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        settings = settings_from_args(args, SETTING_FLAGS)
        configure_logging(settings.log_level, settings.log_format)
        models = parse_models(args.models)
    except PipelineError as exc:
        configure_logging()
        logger.error("%s", exc)
        return exc.exit_code
    series = settings.series()
    logger.info(
        "pipeline: %s, source %s, models %s",
        ", ".join(s.name for s in series), settings.source, ",".join(models),
    )  # fmt: skip
    try:
        clustered = run_on_cluster(
            series, settings, models, args.days, args.scheduler, args.workers
        )
        if clustered is not None:
            results = clustered
        else:
            with ratelimit.use(ratelimit.budget_for(settings)):  # CoinGecko's calls a minute
                run_ingest(settings, args.days)
            run_process(series, settings)
            try:
                results = train_many(series, settings, models=models, n_jobs=settings.n_jobs)
            except Exception as exc:
                raise StageError("train", None, exc) from exc
    except StageError as exc:
        logger.error("pipeline stopped: %s", exc)
        return exc.exit_code
    sys.stdout.write(summary_table(results, ArtifactStore(settings.models_dir)) + "\n")
    update_ledger(settings, [r.series for r in results if r.ok])
    failed = [r.series.name for r in results if not r.ok or r.champion is None]
    if failed:
        logger.error("pipeline stopped: train produced no champion for %s", ", ".join(failed))
        return 1
    logger.info("pipeline done in %.1fs", time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
