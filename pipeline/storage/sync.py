"""When the stages and the API meet the store: before reading, after writing.

* :func:`before_read` (the start of a cycle): pull the models and data folders.
* :func:`pull_store` (the API's start and every model poll): pull a models folder.
* :func:`after_run` (the end of a cycle): push the reports folder.
* :func:`describe` names the store a folder reads, without credentials.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import StorageError
from pipeline.storage.mirror import Mirror, attach_all, mirror_for
from pipeline.storage.pull import PullReport, pull_files, pull_models, push_files

if TYPE_CHECKING:
    from pipeline.config import Settings

logger = logging.getLogger(__name__)


def before_read(settings: Settings) -> dict[str, PullReport]:
    """Pull every configured store folder the stages read (models, data); a no-op without."""
    reports = {}
    for name, mirror in attach_all(settings).items():
        if name == "models_dir":
            reports[name] = pull_models(mirror)
        elif name == "data_dir":
            reports[name] = pull_files(mirror)
    return reports


def after_run(settings: Settings) -> list[str]:
    """Publish the reports written locally (the reports folder has no other writer hook)."""
    mirror = attach_all(settings).get("reports_dir")
    if mirror is None:
        return []
    try:
        return push_files(mirror)
    except StorageError as exc:  # reports are kept locally; the next run pushes them
        logger.error("reports not published: %s", exc)
        return []


def pull_store(root: Path) -> PullReport | None:
    """Pull the models folder ``root`` when it is a working copy; None for a local folder."""
    mirror = mirror_for(root)
    return pull_models(mirror) if mirror is not None else None


def describe(root: Path) -> str:
    """What a folder reads: its store URL (no credentials) or its absolute local path."""
    mirror: Mirror | None = mirror_for(root)
    return str(mirror.url) if mirror is not None else str(Path(root).resolve())
