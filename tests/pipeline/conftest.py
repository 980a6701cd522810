"""Fixtures shared by the refresh and scheduling tests: an hourly price feed ingested from a CSV
export, its settings, and naive (the champion) + drift trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.artifacts.store import ArtifactMetadata
from pipeline.config import Settings
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
