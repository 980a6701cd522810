"""The S3 server (session-scoped) and per-test buckets for the storage tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.config import get_settings
from pipeline.storage.mirror import detach_all
from tests.helpers.s3 import S3Server, start_server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_server()
    if isinstance(server, str):
        pytest.skip(f"no S3 server for the storage tests: {server}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture(autouse=True)
def _fresh_mirrors() -> Iterator[None]:
    """Each test starts with no known working copies (and the process settings rebuilt)."""
    detach_all()
    get_settings.cache_clear()
    yield
    detach_all()
    get_settings.cache_clear()
