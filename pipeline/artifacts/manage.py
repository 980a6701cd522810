"""Manage model versions: ``python -m pipeline.artifacts list|show|promote|rollback|prune``.

Examples::

    python -m pipeline.artifacts list                          # every series, model and version
    python -m pipeline.artifacts show --series bitcoin-usd-1d  # the champion's metadata
    python -m pipeline.artifacts promote --coin bitcoin --freq 1d --model arima [--version V]
    python -m pipeline.artifacts rollback --series bitcoin-usd-1d
    python -m pipeline.artifacts prune --keep 3                # every series

Exit codes: 0 ok, 1 an artifact problem (missing, corrupt, nothing to roll back), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.artifacts.store import ArtifactError, ArtifactStore
from pipeline.cli import settings_from_args
from pipeline.config import Settings
from pipeline.errors import PipelineError, UsageError
from pipeline.logs import configure_logging
from pipeline.series import SeriesId, freq_choices

# The module name even when run with ``python -m`` (where __name__ is "__main__").
logger = logging.getLogger(__spec__.name if __spec__ else __name__)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _selected_series(
    args: argparse.Namespace, settings: Settings, store: ArtifactStore, *, single: bool
) -> list[SeriesId]:
    """The series named by --series or --coin/--vs/--freq; all stored ones if none and allowed."""
    if args.series:
        return [SeriesId.parse(args.series)]
    if args.coin or args.freq:
        if not (args.coin and args.freq):
            if single:
                raise UsageError("give --series, or both --coin and --freq")
            return [
                s
                for s in store.list_series()
                if (not args.coin or s.coin == args.coin)
                and (not args.freq or s.freq == args.freq)
                and s.vs == (args.vs or s.vs)
            ]
        return [SeriesId(args.coin, args.vs or settings.vs_currency, args.freq)]
    if single:
        raise UsageError("give --series (e.g. bitcoin-usd-1d), or --coin and --freq")
    return store.list_series()


def cmd_list(args: argparse.Namespace, store: ArtifactStore, settings: Settings) -> int:
    rows = [("", "series", "model", "version", "created_at", "mase", "points")]
    for series in _selected_series(args, settings, store, single=False):
        champ = store.champion(series)
        for model in store.list_models(series):
            if args.model and model != args.model:
                continue
            for version in store.list_versions(series, model):
                is_champ = champ is not None and (champ.model, champ.version) == (model, version)
                try:
                    meta = store.read_metadata(series, model, version)
                except ArtifactError as exc:
                    logger.warning("%s", exc)
                    rows.append(("!", series.name, model, version, "unreadable", "", ""))
                    continue
                mase = meta.metrics.get("mase")
                rows.append(
                    (
                        "*" if is_champ else "",
                        series.name,
                        model,
                        version,
                        meta.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
                        "" if mase is None else f"{mase:.4f}",
                        str(meta.training.n_points),
                    )
                )
    if len(rows) == 1:
        _out(f"no model versions under {store.root}")
        return 0
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        _out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    _out("(* = champion)")
    return 0


def cmd_show(args: argparse.Namespace, store: ArtifactStore, settings: Settings) -> int:
    (series,) = _selected_series(args, settings, store, single=True)
    champ = store.champion(series)
    model, version = args.model, args.version
    if model is None:
        if champ is None:
            raise ArtifactError(f"{series.name}: no champion yet; give --model")
        model, version = champ.model, version or champ.version
    version = version or store.latest(series, model)
    if version is None:
        raise ArtifactError(f"{series.name}/{model}: no versions under {store.root}")
    meta = store.read_metadata(series, model, version)
    payload = meta.model_dump(mode="json")
    payload["champion"] = champ is not None and (champ.model, champ.version) == (model, version)
    payload["path"] = str(store.version_dir(series, model, version))
    _out(json.dumps(payload, indent=2, sort_keys=True))
    store.verify(series, model, version)
    logger.info("%s/%s/%s verifies (checksums and library versions)", series.name, model, version)
    return 0


def cmd_promote(args: argparse.Namespace, store: ArtifactStore, settings: Settings) -> int:
    (series,) = _selected_series(args, settings, store, single=True)
    if not args.model:
        raise UsageError("promote needs --model")
    version = args.version or store.latest(series, args.model)
    if version is None:
        raise ArtifactError(f"{series.name}/{args.model}: no versions under {store.root}")
    store.promote(series, args.model, version, reason=args.reason)
    _out(f"{series.name}: champion is now {args.model}/{version}")
    return 0


def cmd_rollback(args: argparse.Namespace, store: ArtifactStore, settings: Settings) -> int:
    (series,) = _selected_series(args, settings, store, single=True)
    pointer = store.rollback(series)
    _out(f"{series.name}: champion is now {pointer.model}/{pointer.version} ({pointer.reason})")
    return 0


def cmd_prune(args: argparse.Namespace, store: ArtifactStore, settings: Settings) -> int:
    keep = settings.keep_versions if args.keep is None else args.keep
    if keep < 1:
        raise UsageError(f"--keep must be >= 1, got {keep}")
    for series in _selected_series(args, settings, store, single=False):
        removed = store.prune(series, keep)
        for path in removed:
            _out(f"removed {path}")
        _out(f"{series.name}: removed {len(removed)} version(s), kept the newest {keep} per model")
    return 0


COMMANDS = {
    "list": cmd_list,
    "show": cmd_show,
    "promote": cmd_promote,
    "rollback": cmd_rollback,
    "prune": cmd_prune,
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--series", help="series name such as bitcoin-usd-1d")
    common.add_argument("--coin", help="coin id (with --freq instead of --series)")
    common.add_argument("--vs", help="quote currency (default: VS_CURRENCY)")
    common.add_argument("--freq", help=freq_choices())
    common.add_argument("--models-dir", type=Path, help="models folder (default: MODELS_DIR)")
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.artifacts", description="List, inspect and manage model versions."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", parents=[common], help="versions with metrics; * marks the champion")
    p.add_argument("--model", help="only this model")
    p = sub.add_parser("show", parents=[common], help="metadata of a version (default champion)")
    p.add_argument("--model")
    p.add_argument("--version")
    p = sub.add_parser("promote", parents=[common], help="make a version the champion")
    p.add_argument("--model")
    p.add_argument("--version", help="default: the model's latest version")
    p.add_argument("--reason", default="manual promotion")
    sub.add_parser("rollback", parents=[common], help="back to the previous champion")
    p = sub.add_parser("prune", parents=[common], help="delete old versions (keeps the champion)")
    p.add_argument("--keep", type=int, help="versions kept per model (default KEEP_VERSIONS)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args, {"models_dir": "models_dir"})
        configure_logging(settings.log_level, settings.log_format)
        return COMMANDS[args.command](args, ArtifactStore(settings.models_dir), settings)
    except PipelineError as exc:
        logger.error("%s", exc)
        return exc.exit_code
