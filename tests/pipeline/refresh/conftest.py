"""Refresh fixtures: an hourly feed ingested from a CSV export, and naive + drift trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.artifacts.store import ArtifactMetadata, ArtifactStore
from pipeline.config import Settings
from tests.helpers.refresh import HourlyFeed, feed_settings, hourly_feed, train_on_feed


@pytest.fixture
def feed(tmp_path: Path) -> HourlyFeed:
    return hourly_feed(tmp_path)


@pytest.fixture
def settings(feed: HourlyFeed) -> Settings:
    return feed_settings(feed)


@pytest.fixture
def trained(settings: Settings) -> dict[str, ArtifactMetadata]:
    """naive (the champion) and drift trained on the feed as it is."""
    return train_on_feed(settings)


@pytest.fixture
def store(settings: Settings) -> ArtifactStore:
    return ArtifactStore(settings.models_dir)
