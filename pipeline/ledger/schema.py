"""The ledger's tables (SQLAlchemy Core), as the newest migration leaves them.

``issues``      one row per recorded forecast issue: series, model, version, issue id and time,
                origin (the last observed ``ds``), the price there, whether the version was the
                champion when it was recorded, the forecast's sha256, the version's metadata sha256
                and the issue folder.
``steps``       one row per issue and step: ``ds``, the median (``mean``) and the 80/95% bounds.
``actuals``     the price last used to score each ``(series, ds)``; a changed price is a correction.
``corrections`` every correction seen: old and new price and when it was seen.
``scores``      one row per scored step: the actual, its MASE scale and every per-point score.
``aggregates``  per (series, model, window, step) summaries of ``scores`` (step 0 = all steps),
                refreshed whenever a series' scores change; readers only read this table.

The schema is created and upgraded by the Alembic migrations in ``migrations/`` (applied when a
ledger is opened); this module mirrors their result for the queries.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

#: The per-point scores stored for every scored step (columns of ``scores``).
SCORE_COLUMNS: tuple[str, ...] = (
    "error",
    "abs_error",
    "scaled_error",
    "inside_80",
    "inside_95",
    "width_80",
    "width_95",
    "winkler_80",
    "winkler_95",
    "wis",
)

#: The summary columns of ``aggregates`` that have a ratio to naive on the same points.
RATIO_KEYS: tuple[str, ...] = ("width_80", "width_95", "winkler_80", "winkler_95", "wis", "mase")

issues = Table(
    "issues",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series", String(64), nullable=False),
    Column("model", String(64), nullable=False),
    Column("version", String(64), nullable=False),
    Column("issue_id", String(96), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("origin", DateTime(timezone=True), nullable=False),
    Column("last_price", Float, nullable=False),
    Column("horizon", Integer, nullable=False),
    Column("champion", Boolean, nullable=False),
    Column("forecast_sha256", String(64), nullable=False),
    Column("model_sha256", String(64), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("series", "model", "version", "issue_id", name="uq_issues_key"),
    Index("ix_issues_series_issued", "series", "issued_at"),
)

steps = Table(
    "steps",
    metadata,
    Column("issue", Integer, primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("ds", DateTime(timezone=True), nullable=False),
    Column("mean", Float, nullable=False),
    Column("lower_80", Float, nullable=False),
    Column("upper_80", Float, nullable=False),
    Column("lower_95", Float, nullable=False),
    Column("upper_95", Float, nullable=False),
    ForeignKeyConstraint(["issue"], ["issues.id"], name="fk_steps_issue", ondelete="CASCADE"),
    Index("ix_steps_ds", "ds"),
)

actuals = Table(
    "actuals",
    metadata,
    Column("series", String(64), primary_key=True),
    Column("ds", DateTime(timezone=True), primary_key=True),
    Column("price", Float, nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

corrections = Table(
    "corrections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series", String(64), nullable=False),
    Column("ds", DateTime(timezone=True), nullable=False),
    Column("old_price", Float, nullable=False),
    Column("new_price", Float, nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

scores = Table(
    "scores",
    metadata,
    Column("issue", Integer, primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("series", String(64), nullable=False),
    Column("model", String(64), nullable=False),
    Column("origin", DateTime(timezone=True), nullable=False),
    Column("ds", DateTime(timezone=True), nullable=False),
    Column("actual", Float, nullable=False),
    Column("scale", Float, nullable=True),
    *(Column(name, Float, nullable=True) for name in SCORE_COLUMNS),
    Column("scored_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(
        ["issue", "step"], ["steps.issue", "steps.step"], name="fk_scores_step", ondelete="CASCADE"
    ),
    Index("ix_scores_series_ds", "series", "ds"),
)

aggregates = Table(
    "aggregates",
    metadata,
    Column("series", String(64), primary_key=True),
    Column("model", String(64), primary_key=True),
    Column("window", String(8), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("n", Integer, nullable=False),
    Column("coverage_80", Float),
    Column("coverage_80_low", Float),
    Column("coverage_80_high", Float),
    Column("coverage_95", Float),
    Column("coverage_95_low", Float),
    Column("coverage_95_high", Float),
    Column("width_80", Float),
    Column("width_95", Float),
    Column("winkler_80", Float),
    Column("winkler_95", Float),
    Column("wis", Float),
    Column("mase", Float),
    Column("bias", Float),
    Column("n_paired", Integer, nullable=False),
    *(Column(f"{key}_ratio", Float) for key in RATIO_KEYS),
    Column("as_of", DateTime(timezone=True), nullable=False),
    Column("refreshed_at", DateTime(timezone=True), nullable=False),
)
