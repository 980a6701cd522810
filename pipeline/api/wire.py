"""Pre-serialised JSON made from the pydantic response models, for answers built per request.

The response models of :mod:`pipeline.api.schemas` are the one definition of the wire format.
A hot answer is mostly the same for every request of a loaded version (the forecast path, the
model's metadata); only a few fields change per request (the answer's timestamp, how many steps
are returned). :class:`JsonTemplate` serialises a model once with those fields left open, so a
request only joins bytes; :func:`items_json` serialises the items of a list field one by one, so
a request can take the first ``steps`` of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, get_args

import pandas as pd
from pydantic import BaseModel, TypeAdapter

#: Marks an open field while a template is serialised; never part of a real value.
_MARK = "\x00slot:{}\x00"


class JsonTemplate:
    """The JSON of ``model(**fixed)`` with the fields named in ``slots`` filled per request.

    ``fill(*values)`` takes one JSON value (bytes) per slot, in the order of ``slots``, and
    returns the whole document. Fields keep the model's order, as ``model_dump_json`` writes it.
    """

    __slots__ = ("_identity", "_order", "_parts", "slots")

    def __init__(self, model: type[BaseModel], slots: Sequence[str], /, **fixed: Any) -> None:
        unknown = [name for name in (*slots, *fixed) if name not in model.model_fields]
        if unknown:
            raise TypeError(f"{model.__name__} has no field(s) {unknown}")
        # The fixed values are validated by the model; the open ones hold markers while the
        # document is written (model_construct skips validation, warnings=False the type check).
        model.model_validate({**{name: _placeholder(model, name) for name in slots}, **fixed})
        marked: dict[str, Any] = {name: _MARK.format(name) for name in slots}
        doc = model.model_construct(None, **fixed, **marked)
        text = model.__pydantic_serializer__.to_json(doc, warnings=False)
        found = []
        for index, name in enumerate(slots):
            mark = TypeAdapter(str).dump_json(_MARK.format(name))
            if text.count(mark) != 1:
                raise ValueError(f"{model.__name__}.{name}: the template marker is ambiguous")
            found.append((text.index(mark), index, mark))
        parts, order, start = [], [], 0
        for position, index, mark in sorted(found):
            parts.append(text[start:position])
            order.append(index)
            start = position + len(mark)
        parts.append(text[start:])
        self.slots = tuple(slots)
        self._parts = tuple(parts)
        self._order = tuple(order)
        self._identity = tuple(range(len(order)))

    def fill(self, *values: bytes) -> bytes:
        """The document with ``values`` (JSON, one per slot in ``slots`` order) in place."""
        parts = self._parts
        if self._order != self._identity:
            values = tuple(values[index] for index in self._order)
        # The hot answers' cases, spelled out: this runs on every request.
        if len(values) == 4:
            return b"".join(
                (
                    parts[0],
                    values[0],
                    parts[1],
                    values[1],
                    parts[2],
                    values[2],
                    parts[3],
                    values[3],
                    parts[4],
                )
            )
        if len(values) == 3:
            return b"".join(
                (parts[0], values[0], parts[1], values[1], parts[2], values[2], parts[3])
            )
        if len(values) == 2:
            return b"".join((parts[0], values[0], parts[1], values[1], parts[2]))
        out = [parts[0]]
        for value, part in zip(values, parts[1:], strict=True):
            out.append(value)
            out.append(part)
        return b"".join(out)


def _placeholder(model: type[BaseModel], name: str) -> Any:
    """A valid value for an open field, so that the fixed ones can be validated alone."""
    annotation = model.model_fields[name].annotation
    if annotation is datetime:
        return datetime(2000, 1, 1, tzinfo=UTC)
    if getattr(annotation, "__origin__", None) is list:
        return []
    if annotation is int:
        return 0
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.model_construct()
    return model.model_fields[name].default


def items_json(model: type[BaseModel], field: str, items: Iterable[Any]) -> list[bytes]:
    """Each item of the list field ``model.field`` as JSON, serialised with the field's type."""
    annotation = model.model_fields[field].annotation
    (item_type,) = get_args(annotation)
    adapter: TypeAdapter[Any] = TypeAdapter(item_type)
    return [adapter.dump_json(adapter.validate_python(item)) for item in items]


def json_list(items: Sequence[bytes]) -> bytes:
    """``[a,b,...]`` from the JSON of the items."""
    return b"[" + b",".join(items) + b"]"


def utc_second(ts: datetime | pd.Timestamp) -> datetime:
    """``ts`` in UTC to the second (naive values are taken as UTC): how times go on the wire."""
    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor("s").to_pydatetime()


def iso(ts: datetime | pd.Timestamp) -> str:
    """``2026-11-21T00:00:00Z`` (UTC, second precision)."""
    return utc_second(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


#: The second last formatted and its JSON prefix (``"2026-11-21T12:00:00``).
_second: list[Any] = [-1, b""]


def now_json(at: float | None = None) -> bytes:
    """``at`` (Unix seconds; default: now) as a JSON string in UTC with milliseconds, e.g.
    ``"2026-11-21T12:00:00.123Z"``: the per-request answer timestamp (hot path: the date part
    is formatted once per second)."""
    now = time.time() if at is None else at
    second = int(now)
    if second != _second[0]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second[:] = [second, b'"' + stamp.encode()]
    # To the microsecond first, so that float error never drops a millisecond (x.001 -> .000).
    millis = min(999, round((now - second) * 1_000_000) // 1000)
    return b'%s.%03dZ"' % (_second[1], millis)


def now_iso(at: float | None = None) -> str:
    """:func:`now_json` as text: ``2026-11-21T12:00:00.123Z``."""
    return now_json(at)[1:-1].decode()
