"""The live report of a series: a Markdown leaderboard and a PNG of three pictures.

``<REPORTS_DIR>/ledger/<series>/live.md`` and ``live.png`` (replaced atomically):

* the leaderboard over each window (:data:`~pipeline.ledger.aggregate.WINDOWS`), champion
  marked, every figure with its ratio to naive on the same points, and the WIS ratio by step;
* coverage over time: the share of actuals inside each model's 95% band, by week of ``ds``;
* WIS ratio to naive by forecast step;
* reliability: observed against nominal coverage (80 and 95%) per model, with the Wilson
  interval as error bars; a calibrated model sits on the diagonal.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.evaluation.plots import _pyplot, _save
from pipeline.fileio import atomic_write_text
from pipeline.ledger.aggregate import WINDOWS, read_scores
from pipeline.ledger.db import Ledger
from pipeline.ledger.read import Leaderboard, leaderboard

_COLUMNS = (
    ("n", "n", "{:d}"),
    ("coverage_80", "cov80", "{:.1%}"),
    ("coverage_95", "cov95", "{:.1%}"),
    ("width_95_ratio", "width95/naive", "{:.3f}"),
    ("winkler_95_ratio", "Winkler95/naive", "{:.3f}"),
    ("wis", "WIS", "{:,.2f}"),
    ("wis_ratio", "WIS/naive", "{:.3f}"),
    ("mase", "MASE", "{:.3f}"),
    ("mase_ratio", "MASE/naive", "{:.3f}"),
    ("bias", "bias", "{:,.2f}"),
)


def _cell(value: float | int | None, fmt: str) -> str:
    if value is None:
        return "-"
    return fmt.format(int(value)) if fmt == "{:d}" else fmt.format(float(value))


def _table(board: Leaderboard) -> list[str]:
    head = ["model", *(label for _, label, _ in _COLUMNS), "95% CI"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in board.rows:
        f = row.figures
        ci = (
            f"{f['coverage_95_low']:.1%}-{f['coverage_95_high']:.1%}"
            if f["coverage_95_low"] is not None and f["coverage_95_high"] is not None
            else "-"
        )
        name = f"**{row.model}** (champion)" if row.champion else row.model
        cells = [name, *(_cell(f[key], fmt) for key, _, fmt in _COLUMNS), ci]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_report(
    ledger: Ledger, series: str, reports_dir: Path, now: datetime | None = None
) -> tuple[Path, Path]:
    """Write the live report of ``series``; returns the Markdown and PNG paths."""
    now = now or datetime.now(UTC)
    folder = Path(reports_dir) / "ledger" / series
    folder.mkdir(parents=True, exist_ok=True)
    md, png = folder / "live.md", folder / "live.png"
    boards = {w: leaderboard(ledger, series, window=w) for w in WINDOWS}
    full = leaderboard(ledger, series, window="all", steps=True)
    as_of = full.as_of.strftime("%Y-%m-%d %H:%M UTC") if full.as_of else "no scored point yet"
    lines = [
        f"# Live accuracy of {series}",
        "",
        f"Written {now:%Y-%m-%d %H:%M} UTC from the forecast ledger; newest scored price: "
        f"{as_of}. Champion: {full.champion or 'none recorded'}. Ratios are to naive on the "
        "same points (below 1 is better); coverage intervals are Wilson 95%.",
        "",
    ]
    for window, board in boards.items():
        lines += [f"## Window: {window}", ""]
        lines += _table(board) if board.rows else ["No scored points in this window."]
        lines.append("")
    if full.rows:
        steps = sorted({s for r in full.rows for s in r.steps})
        lines += ["## WIS ratio to naive by step (all points)", ""]
        lines.append("| step | " + " | ".join(r.model for r in full.rows) + " |")
        lines.append("|" + "---|" * (len(full.rows) + 1))
        for step in steps:
            cells = [_cell(r.steps.get(step, {}).get("wis_ratio"), "{:.3f}") for r in full.rows]
            lines.append(f"| {step} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"![live accuracy]({png.name})", ""]
    with ledger.reader() as conn:
        scores = read_scores(conn, series)
    _plot(scores, full, png)
    atomic_write_text(md, "\n".join(lines))
    return md, png


def model_colours(models: Iterable[str]) -> dict[str, str]:
    """One colour per model (matplotlib's 20-colour ``tab20`` map, by name): a model looks the
    same in every plot of the report, whatever order each plot draws the models in, and up to
    20 models (the ledger holds every trained one) never share a colour."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    palette = colormaps["tab20"]
    return {m: to_hex(palette(i % 20)) for i, m in enumerate(sorted(set(models)))}


def _plot(scores: pd.DataFrame, board: Leaderboard, path: Path) -> None:
    plt = _pyplot()
    _save(live_figure(scores, board, plt), path, plt)


def live_figure(scores: pd.DataFrame, board: Leaderboard, plt: Any) -> Any:
    """The report's three plots: weekly 95% coverage, WIS / naive by step, reliability."""
    colour = model_colours([*map(str, scores["model"].unique()), *(r.model for r in board.rows)])
    fig, (cov, ratio, rel) = plt.subplots(1, 3, figsize=(15, 4.2))
    for model, part in scores.groupby("model"):
        weekly = part.set_index("ds")["inside_95"].resample("7D").mean().dropna()
        name = str(model)
        cov.plot(weekly.index, weekly.to_numpy(), label=name, lw=1.2, color=colour[name])
    cov.axhline(0.95, color="grey", ls="--", lw=1)
    cov.set_title("95% coverage by week of the actual")
    cov.set_ylim(0, 1.02)
    for row in board.rows:
        steps = sorted(row.steps)
        values = [row.steps[s].get("wis_ratio") for s in steps]
        ratio.plot(
            steps,
            [float("nan") if v is None else v for v in values],
            label=row.model,
            color=colour[row.model],
        )
    ratio.axhline(1.0, color="grey", ls="--", lw=1)
    ratio.set_title("WIS / naive by step")
    ratio.set_xlabel("step")
    rel.plot([0.75, 1.0], [0.75, 1.0], color="grey", ls="--", lw=1)
    for row in board.rows:
        f = row.figures
        xs: list[float] = []
        ys: list[float] = []
        errs: list[list[float]] = [[], []]
        for level in (80, 95):
            value = f[f"coverage_{level}"]
            low, high = f[f"coverage_{level}_low"], f[f"coverage_{level}_high"]
            if value is None or low is None or high is None:
                continue
            xs.append(level / 100)
            ys.append(float(value))
            errs[0].append(float(value) - float(low))
            errs[1].append(float(high) - float(value))
        rel.errorbar(
            xs, ys, yerr=errs, marker="o", capsize=3, label=row.model, color=colour[row.model]
        )
    rel.set_title("reliability: observed vs nominal coverage")
    rel.set_xlabel("nominal")
    for ax in (cov, ratio, rel):
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
