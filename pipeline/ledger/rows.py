"""Moving rows between pandas and the database quickly (no per-row parsing in Python)."""

from __future__ import annotations

import gc
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Column, Connection, String, Table, type_coerce


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a bulk read or write: reading and scoring a
    series allocates hundreds of thousands of short-lived acyclic objects (rows, floats,
    strings), which trigger full collections of the whole heap that cost more than the work.
    Reference counting still frees them; the collector runs again afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def raw_time(column: Column[Any]) -> Any:
    """``column`` read without SQLAlchemy's per-row datetime parsing (as text on SQLite; the
    PostgreSQL driver still returns datetimes): :func:`as_times` parses them all at once."""
    return type_coerce(column, String).label(column.name)


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows for an executemany insert: Python scalars, ``None`` for NaN and infinities."""
    columns = []
    for name in table.columns:
        col = table[name]
        values = col.tolist() if col.dtype != object else list(col)
        if pd.api.types.is_float_dtype(col.dtype):
            values = [v if math.isfinite(v) else None for v in values]
        columns.append(values)
    keys = list(table.columns)
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]


def as_times(values: Any) -> pd.DatetimeIndex:
    """Timestamps read from the ledger as a UTC index (SQLite strings or driver datetimes);
    each distinct value is parsed once (a ledger holds few distinct times per column)."""
    items = list(values)
    if items and isinstance(items[0], str):  # SQLite's naive UTC text: numpy parses it in C
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # an offset in the text: the general path below
            try:
                return pd.DatetimeIndex(np.array(items, dtype="datetime64[us]")).tz_localize("UTC")
            except (ValueError, TypeError, UserWarning):
                pass
    codes, uniques = pd.factorize(np.asarray(items, dtype=object))
    if not len(codes) or (codes < 0).any():  # nothing, or missing values: parse as they are
        return pd.DatetimeIndex(pd.to_datetime(items, utc=True, format="ISO8601"))
    return pd.DatetimeIndex(pd.to_datetime(list(uniques), utc=True, format="ISO8601"))[codes]


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):  # SQLAlchemy's SQLite DATETIME text, in UTC
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def bulk_insert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` with one driver ``executemany`` and no per-row SQLAlchemy processing (10x
    faster for thousands of rows). Datetimes must be aware UTC values; on SQLite they are stored
    as the same text SQLAlchemy writes, so the table reads back through SQLAlchemy unchanged."""
    if not rows:
        return
    names = list(rows[0])
    if conn.dialect.name == "sqlite":
        params = [tuple(_sqlite_value(row[n]) for n in names) for row in rows]
    else:
        params = [tuple(row[n] for n in names) for row in rows]
    _execute_many(conn, table, names, params)


def insert_frame(
    conn: Connection, table: Table, frame: pd.DataFrame, constants: Mapping[str, Any] | None = None
) -> None:
    """Insert the rows of ``frame``, plus the ``constants`` columns (one value for every row),
    as :func:`bulk_insert` does, converting whole columns at once: NaN and infinities become
    NULL, and each distinct timestamp of a (tz-aware) datetime column is converted once."""
    if frame.empty:
        return
    sqlite = conn.dialect.name == "sqlite"
    names = [str(name) for name in frame.columns]
    columns: list[Any] = [_column_values(frame[name], sqlite) for name in frame.columns]
    for name, value in (constants or {}).items():
        names.append(name)
        columns.append(repeat(_sqlite_value(value) if sqlite else value, len(frame)))
    _execute_many(conn, table, names, list(zip(*columns, strict=True)))


def _column_values(col: pd.Series, sqlite: bool) -> list[Any]:
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        codes, uniques = pd.factorize(col)
        known = [t.to_pydatetime() for t in pd.DatetimeIndex(uniques).tz_convert("UTC")]
        converted = [_sqlite_value(t) for t in known] if sqlite else known
        lookup = np.array([*converted, None], dtype=object)
        return list(lookup[codes])  # code -1 (NaT) -> the trailing None
    if pd.api.types.is_float_dtype(col.dtype):
        values = col.to_numpy(dtype=float)
        out: list[Any] = values.tolist()
        for i in np.flatnonzero(~np.isfinite(values)).tolist():
            out[i] = None
        return out
    return col.tolist()


def _execute_many(
    conn: Connection, table: Table, names: Sequence[str], params: Sequence[tuple[Any, ...]]
) -> None:
    marks = ", ".join(["?" if conn.dialect.name == "sqlite" else "%s"] * len(names))
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(n) for n in names)
    sql = f"INSERT INTO {table.name} ({quoted}) VALUES ({marks})"
    conn.exec_driver_sql(sql, list(params))
