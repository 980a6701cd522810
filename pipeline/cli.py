"""Helpers every command line shares: flags -> Settings, dates, lists and numbers.

One place for what five CLIs used to copy: a flag that is given overrides its setting (validated
exactly like the environment), dates are UTC, lists are comma-separated.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NoReturn

import pandas as pd

from pipeline.config import Settings, load_settings
from pipeline.errors import UsageError


class UsageParser(argparse.ArgumentParser):
    """An argument parser whose errors raise :class:`~pipeline.errors.UsageError` (exit 2 with
    the CLI's own error line) instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def settings_from_args(
    args: argparse.Namespace, flags: Mapping[str, str], **extra: object
) -> Settings:
    """Settings with each given flag (``flags``: argparse dest -> Settings field) applied.

    Flags left at ``None`` keep the environment's value; ``extra`` overrides are applied too.
    Bad values raise :class:`~pipeline.errors.UsageError` naming the variable.
    """
    overrides: dict[str, object] = {}
    for dest, field in flags.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides[field] = value
    overrides.update({k: v for k, v in extra.items() if v is not None})
    return load_settings(**overrides)


def split_list(text: str | None) -> list[str] | None:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; ``None`` or blank -> ``None``."""
    if not text:
        return None
    parts = [part.strip() for part in text.split(",") if part.strip()]
    return parts or None


def parse_timestamp(text: str | pd.Timestamp | datetime, what: str) -> pd.Timestamp:
    """A date (``YYYY-MM-DD``) or ISO timestamp as an aware UTC timestamp.

    A naive value is taken as UTC. ``what`` names the flag in the error, e.g. ``"--until"``.
    """
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise UsageError(f"invalid {what} {text!r}: use a date like 2021-06-01") from None
    if ts is pd.NaT:
        raise UsageError(f"invalid {what} {text!r}: use a date like 2021-06-01")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def parse_date(text: str | None, what: str) -> datetime | None:
    """Like :func:`parse_timestamp` but as a ``datetime``; ``None`` or blank stays ``None``."""
    if not text:
        return None
    return parse_timestamp(text, what).to_pydatetime()


def date_arg(text: str) -> datetime:
    """argparse ``type=`` for a strict ``YYYY-MM-DD`` flag, as UTC midnight."""
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse ``type=`` for a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
