"""MkDocs hook: the settings tables of ``docs/configuration.md``, generated from ``Settings``.

A page that contains the marker ``<!-- settings-table -->`` gets it replaced, at build time, by
one table per group of settings (the ``# Group`` comments in ``pipeline/config.py``): the
environment variable, its default, what it accepts (type and bounds) and the field's
``description``. The table cannot drift from the code because it is the code.
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `mkdocs` run from .venv/bin does not put the project first
    sys.path.insert(0, str(ROOT))

from annotated_types import Ge, Gt, Le, Lt  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from pydantic.fields import FieldInfo  # noqa: E402

from pipeline.config import Settings  # noqa: E402

MARKER = "<!-- settings-table -->"
_FIELD = re.compile(r"^    ([a-z][a-z0-9_]*)\s*:")
_GROUP = re.compile(r"^    # (.+)$")
_BOUNDS = ((Ge, "≥", "ge"), (Gt, ">", "gt"), (Le, "≤", "le"), (Lt, "<", "lt"))


def field_groups() -> dict[str, list[str]]:
    """Group title -> field names, in the order ``Settings`` declares them."""
    groups: dict[str, list[str]] = {}
    title = "General"
    for line in inspect.getsource(Settings).splitlines():
        if group := _GROUP.match(line):
            title = group.group(1).strip()
        elif (field := _FIELD.match(line)) and field.group(1) in Settings.model_fields:
            groups.setdefault(title, []).append(field.group(1))
    listed = {name for names in groups.values() for name in names}
    rest = [name for name in Settings.model_fields if name not in listed]
    if rest:
        groups.setdefault("Other", []).extend(rest)
    return groups


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _accepts(info: FieldInfo) -> str:
    annotation = info.annotation
    args = typing.get_args(annotation)
    optional = type(None) in args
    inner = [a for a in args if a is not type(None)] if optional else []
    base: Any = inner[0] if len(inner) == 1 else annotation
    if typing.get_origin(base) is typing.Literal:
        text = "one of " + ", ".join(f"`{v}`" for v in typing.get_args(base))
    elif typing.get_origin(base) is list:
        text = "comma-separated list"
    else:
        names = {Path: "path", str: "text", SecretStr: "secret", int: "integer", float: "number"}
        text = "`true` or `false`" if base is bool else names.get(base, str(base))
    bounds = []
    for item in info.metadata:
        for kind, sign, attr in _BOUNDS:
            if isinstance(item, kind):
                bounds.append(f"{sign} {_number(getattr(item, attr))}")
        if pattern := getattr(item, "pattern", None):
            bounds.append(f"matching `{pattern}`")
    if bounds:
        text += ", " + ", ".join(bounds)
    return text + (", optional" if optional else "")


def _default(info: FieldInfo) -> str:
    value = info.default
    if value is None or value == []:
        return "–"
    if isinstance(value, Path) and value.is_absolute():
        try:
            return f"`{value.relative_to(ROOT)}` (in the project)"
        except ValueError:
            return f"`{value}`"
    if isinstance(value, list):
        return "`" + ",".join(str(v) for v in value) + "`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{_number(value)}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    """A table cell: pipes escaped outside code spans (inside them Markdown keeps them)."""
    parts = text.replace("\n", " ").split("`")
    return "`".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))


def settings_tables() -> str:
    """Markdown: one table per settings group, each under its bold title."""
    parts = []
    for title, names in field_groups().items():
        rows = ["| variable | default | accepts | description |", "|---|---|---|---|"]
        for name in names:
            info = Settings.model_fields[name]
            cells = (f"`{name.upper()}`", _default(info), _accepts(info), info.description or "")
            rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        parts.append(f"**{title}**\n\n" + "\n".join(rows))
    return "\n\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: replace the marker with the generated tables."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, settings_tables())


__all__ = ["MARKER", "field_groups", "on_page_markdown", "settings_tables"]
