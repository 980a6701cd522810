"""``INSERT ... ON CONFLICT DO NOTHING`` for the dialects the ledger runs on."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(
    conn: Connection, table: Table, key: Sequence[str]
) -> postgresql.Insert | sqlite.Insert:
    """An insert into ``table`` that skips a row whose ``key`` columns are already present."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(key))
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(key))
