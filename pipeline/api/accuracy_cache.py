"""The live-accuracy answers of one API worker, kept for ``ACCURACY_CACHE_SECONDS``.

The ledger's aggregates change only when new prices are scored (after an ingest: the nightly
cycle, a refresh or ``python -m pipeline ledger score``), while a dashboard or a monitor asks for
the same leaderboard again and again. :class:`AnswerCache` keeps the serialised body of each
``GET /api/v1/accuracy`` answer (per series, model, window and per-step flag) and serves it from
the event loop, without a ledger read, a worker thread or serialisation, until it is
``ACCURACY_CACHE_SECONDS`` old or the worker reloads its models (new issues usually come with new
scores). The answer names the scoring time of its figures (``as_of``), so a cached answer says
how old it is. Only 200 answers are kept: a series or model that is not in the ledger yet is
looked up again on the next request, and so is everything after a read failure. The keys are
bounded by what the ledger holds (a 200 needs ledger rows), so hostile queries cannot grow it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable


class AnswerCache:
    """Serialised answers by key, each valid for ``max_age`` seconds (0: nothing is kept, the
    state until :meth:`configure` sets the ``ACCURACY_CACHE_SECONDS`` setting)."""

    def __init__(self, max_age: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.clock = clock
        self._entries: dict[Hashable, tuple[float, bytes]] = {}
        self.hits = 0
        self.misses = 0

    def configure(self, max_age: float) -> None:
        self.max_age = max_age
        self.clear()

    def get(self, key: Hashable) -> bytes | None:
        """The body stored under ``key`` if it is younger than ``max_age``, else ``None``."""
        entry = self._entries.get(key)
        if entry is not None and self.clock() - entry[0] < self.max_age:
            self.hits += 1
            return entry[1]
        if entry is not None:
            del self._entries[key]
        self.misses += 1
        return None

    def put(self, key: Hashable, body: bytes) -> None:
        if self.max_age > 0:
            self._entries[key] = (self.clock(), body)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def registry_changed(self, _old: object, _new: object) -> None:
        """A reload listener: the next request of every key reads the ledger again."""
        self.clear()
