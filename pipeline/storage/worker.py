"""A cluster task's store-backed folders, on whatever host the task runs.

The driver hands its tasks absolute folder paths, and a store-backed folder's path is the
driver's working copy, which exists only on the driver's host. :func:`task_settings` maps each
such folder onto its working copy under this process's own ``STORAGE_CACHE_DIR`` (the driver's
very folder when the worker shares its host and cache), attaches it (the marker: the writers
then publish what the task writes) and pulls what the task reads, incrementally and under a
file lock, so the worker processes of one host share one working copy. A folder that cannot be
attached fails the task with a :class:`~pipeline.errors.StorageError`: a task never writes into
a plain local folder in place of the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError, StorageError
from pipeline.storage.mirror import FOLDERS, MARKER, Mirror, attach, mirror_for
from pipeline.storage.pull import pull_files, pull_models
from pipeline.storage.url import StoreUrl

if TYPE_CHECKING:
    from pipeline.config import Settings

logger = logging.getLogger(__name__)

#: The lock file of a working copy's pulls (hidden: never published, never pulled).
PULL_LOCK = ".pull.lock"


@contextlib.contextmanager
def pull_lock(root: Path) -> Iterator[None]:
    """Hold the working copy's pull lock (blocking): one puller per working copy per host."""
    with open(Path(root) / PULL_LOCK, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def task_settings(
    settings: Settings, *, models: Sequence[str] = (), data: Sequence[str] = ()
) -> Settings:
    """``settings`` (the driver's) with every store-backed folder on this process's working
    copy, attached, after pulling the ``models`` prefixes (``"<series>/"``) of the models folder
    and the ``data`` prefixes of the data folder; unchanged without a store-backed folder."""
    urls = {name: settings.store_url(name) for name in FOLDERS}
    if not any(urls.values()):
        return settings
    from pipeline.config import get_settings

    try:
        own = get_settings()  # this worker's STORAGE_CACHE_DIR and S3_* credentials
    except Exception as exc:  # noqa: BLE001 - an invalid environment on the worker
        raise StorageError(f"this worker's settings are invalid: {exc}") from exc
    cache = Path(own.storage_cache_dir).resolve()
    update: dict[str, object] = {"storage_cache_dir": cache}
    for name, url in urls.items():
        if url is None:
            continue
        root = StoreUrl.parse(url).local_copy(cache).resolve()
        try:
            mirror = _attached(url, root, own)
            with pull_lock(root):
                if name == "models_dir":
                    for prefix in models:
                        pull_models(mirror, prefix)
                elif name == "data_dir":
                    for prefix in data:
                        pull_files(mirror, prefix)
        except (OSError, PipelineError) as exc:
            raise StorageError(
                f"{name.upper()}={url}: the working copy {root} cannot be attached or pulled "
                f"on this worker (STORAGE_CACHE_DIR={cache}): {exc}"
            ) from exc
        if root != Path(getattr(settings, name)).resolve():
            logger.debug("%s: this worker's working copy of %s is %s", name, url, root)
        update[name] = root
    return settings.model_copy(update=update)


def _attached(url: str, root: Path, own: Settings) -> Mirror:
    """The mirror of ``root`` this process knows (its refusals logged once), else a new one."""
    known = mirror_for(root) if (root / MARKER).is_file() else None
    if known is not None and str(known.url) == str(StoreUrl.parse(url)):
        return known
    return attach(url, root, own)
