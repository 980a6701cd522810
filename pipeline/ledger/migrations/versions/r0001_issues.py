"""Issues and their steps: what was issued.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("series", sa.String(64), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("issue_id", sa.String(96), nullable=False),
        sa.Column("issued_at", _TS, nullable=False),
        sa.Column("origin", _TS, nullable=False),
        sa.Column("last_price", sa.Float, nullable=False),
        sa.Column("horizon", sa.Integer, nullable=False),
        sa.Column("champion", sa.Boolean, nullable=False),
        sa.Column("forecast_sha256", sa.String(64), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("recorded_at", _TS, nullable=False),
        sa.UniqueConstraint("series", "model", "version", "issue_id", name="uq_issues_key"),
    )
    op.create_index("ix_issues_series_issued", "issues", ["series", "issued_at"])
    op.create_table(
        "steps",
        sa.Column("issue", sa.Integer, primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("ds", _TS, nullable=False),
        sa.Column("mean", sa.Float, nullable=False),
        sa.Column("lower_80", sa.Float, nullable=False),
        sa.Column("upper_80", sa.Float, nullable=False),
        sa.Column("lower_95", sa.Float, nullable=False),
        sa.Column("upper_95", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(
            ["issue"], ["issues.id"], name="fk_steps_issue", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_steps_ds", "steps", ["ds"])


def downgrade() -> None:
    op.drop_table("steps")
    op.drop_table("issues")
