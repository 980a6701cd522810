"""Refresh fixtures: the settings and store of the hourly feed (tests/pipeline/conftest.py)."""

from __future__ import annotations

import pytest

from pipeline.artifacts.store import ArtifactStore
from pipeline.config import Settings


@pytest.fixture
def settings(hourly: Settings) -> Settings:
    """The hourly feed's settings (``feed``, ``hourly``, ``trained``: tests/pipeline/conftest)."""
    return hourly


@pytest.fixture
def store(settings: Settings) -> ArtifactStore:
    return ArtifactStore(settings.models_dir)
