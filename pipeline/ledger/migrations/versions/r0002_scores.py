"""Actuals, corrections, per-step scores and the precomputed aggregates.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_SCORES = (
    "error", "abs_error", "scaled_error", "inside_80", "inside_95", "width_80", "width_95",
    "winkler_80", "winkler_95", "wis",
)  # fmt: skip
_SUMMARY = (
    "coverage_80", "coverage_80_low", "coverage_80_high", "coverage_95", "coverage_95_low",
    "coverage_95_high", "width_80", "width_95", "winkler_80", "winkler_95", "wis", "mase", "bias",
)  # fmt: skip
_RATIOS = ("width_80", "width_95", "winkler_80", "winkler_95", "wis", "mase")


def upgrade() -> None:
    op.create_table(
        "actuals",
        sa.Column("series", sa.String(64), primary_key=True),
        sa.Column("ds", _TS, primary_key=True),
        sa.Column("price", sa.Float, nullable=False),
        sa.Column("seen_at", _TS, nullable=False),
    )
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("series", sa.String(64), nullable=False),
        sa.Column("ds", _TS, nullable=False),
        sa.Column("old_price", sa.Float, nullable=False),
        sa.Column("new_price", sa.Float, nullable=False),
        sa.Column("seen_at", _TS, nullable=False),
    )
    op.create_table(
        "scores",
        sa.Column("issue", sa.Integer, primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("series", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("origin", _TS, nullable=False),
        sa.Column("ds", _TS, nullable=False),
        sa.Column("actual", sa.Float, nullable=False),
        sa.Column("scale", sa.Float, nullable=True),
        *(sa.Column(name, sa.Float, nullable=True) for name in _SCORES),
        sa.Column("scored_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["issue", "step"],
            ["steps.issue", "steps.step"],
            name="fk_scores_step",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_scores_series_ds", "scores", ["series", "ds"])
    op.create_table(
        "aggregates",
        sa.Column("series", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("window", sa.String(8), primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
        *(sa.Column(name, sa.Float) for name in _SUMMARY),
        sa.Column("n_paired", sa.Integer, nullable=False),
        *(sa.Column(f"{key}_ratio", sa.Float) for key in _RATIOS),
        sa.Column("as_of", _TS, nullable=False),
        sa.Column("refreshed_at", _TS, nullable=False),
    )


def downgrade() -> None:
    for table in ("aggregates", "scores", "corrections", "actuals"):
        op.drop_table(table)
