"""Fixtures shared by the refresh, scheduling and storage tests: an hourly price feed ingested
from a CSV export, its settings, naive (the champion) + drift trained on it, and a Dask
scheduler/worker process pair."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.artifacts.store import ArtifactMetadata
from pipeline.config import Settings
from tests.helpers.cluster import dask_pair
from tests.helpers.refresh import HourlyFeed, feed_settings, hourly_feed, train_on_feed


@pytest.fixture
def feed(tmp_path: Path) -> HourlyFeed:
    return hourly_feed(tmp_path)


@pytest.fixture
def hourly(feed: HourlyFeed) -> Settings:
    """Settings of the one hourly series ingested from ``feed``."""
    return feed_settings(feed)


@pytest.fixture
def trained(hourly: Settings) -> dict[str, ArtifactMetadata]:
    """naive (the champion) and drift trained on the feed as it is."""
    return train_on_feed(hourly)


@pytest.fixture
def dask_processes(tmp_path: Path) -> Iterator[str]:
    """``dask scheduler`` and one ``dask worker`` process on 127.0.0.1; the scheduler address."""
    with dask_pair(tmp_path / "dask.log") as address:
        yield address
