"""Fixtures of the scheduler tests: small settings and a recording HTTP server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.config import Settings, load_settings
from tests.helpers.scheduling import Recorder, recording_server


@pytest.fixture
def settings() -> Settings:
    """One series (bitcoin-usd-1d), stages limited to 5 s, in the test's own folders."""
    return load_settings(coins=["bitcoin"], frequencies=["1d"], stage_timeout_seconds=5)


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[Recorder]]]:
    """An HTTP server on 127.0.0.1 recording every POST: (base URL, handler class)."""
    with recording_server() as server:
        yield server
