"""Working copies: which local folder mirrors which store folder.

A working copy holds a small marker file, :data:`MARKER`, naming its store URL (without
credentials). Any process that writes into the folder (a Dask worker, a job's process, the CLI)
finds it there and publishes what it writes; the credentials come from that process's own
settings (``S3_*`` or the standard ``AWS_*`` variables).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pipeline.errors import PipelineError
from pipeline.fileio import atomic_write_json
from pipeline.storage.objects import ObjectStore
from pipeline.storage.url import StoreUrl, fs_for

if TYPE_CHECKING:
    from pipeline.config import Settings

logger = logging.getLogger(__name__)

#: The marker file of a working copy (hidden: the stages skip dot-files).
MARKER = ".object-store.json"
#: The settings fields that accept a store URL.
FOLDERS: tuple[Literal["data_dir", "models_dir", "reports_dir"], ...] = (
    "data_dir",
    "models_dir",
    "reports_dir",
)


@dataclass
class Mirror:
    """A local working copy (``root``) of a store folder (``objects``)."""

    root: Path
    objects: ObjectStore
    #: what a pull refused already (logged once): (relative path, ETag)
    refused: set[tuple[str, str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> StoreUrl:
        return self.objects.url


_MIRRORS: dict[Path, Mirror | None] = {}
_LOCK = threading.Lock()


def attach(url: str, root: Path, settings: Settings) -> Mirror:
    """Make ``root`` the working copy of ``url`` (writes the marker; idempotent)."""
    parsed = StoreUrl.parse(url)
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    marker = {"url": str(parsed)}
    try:
        current = json.loads((root / MARKER).read_text("utf-8"))
    except (OSError, ValueError):
        current = None
    if current != marker:
        atomic_write_json(root / MARKER, marker)
    mirror = Mirror(root, ObjectStore(parsed, fs_for(settings)))
    with _LOCK:
        _MIRRORS[root] = mirror
    return mirror


def attach_all(settings: Settings) -> dict[str, Mirror]:
    """Attach every folder of ``settings`` that names a store URL, by field name."""
    found: dict[str, Mirror] = {}
    for name in FOLDERS:
        url = settings.store_url(name)
        if url:
            found[name] = attach(url, getattr(settings, name), settings)
    return found


def mirror_for(root: Path) -> Mirror | None:
    """The mirror whose working copy is ``root``, or None (a plain local folder)."""
    root = Path(root).resolve()
    with _LOCK:
        if root in _MIRRORS:
            return _MIRRORS[root]
    mirror = None
    try:
        marker = json.loads((root / MARKER).read_text("utf-8"))
    except FileNotFoundError:
        marker = None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring the unreadable store marker %s: %s", root / MARKER, exc)
        marker = None
    from pipeline.config import get_settings

    try:
        if marker is not None:
            mirror = attach(str(marker["url"]), root, get_settings())
        else:  # a fresh working copy: this process's settings may name its store
            mirror = _from_settings(root, get_settings())
    except (PipelineError, KeyError) as exc:
        logger.warning("%s: not treated as an object-store working copy: %s", root, exc)
    with _LOCK:
        return _MIRRORS.setdefault(root, mirror)


def _from_settings(root: Path, settings: Settings) -> Mirror | None:
    for name in FOLDERS:
        url = settings.store_url(name)
        if url and Path(getattr(settings, name)).resolve() == root:
            return attach(url, root, settings)
    return None


def mirror_above(path: Path) -> Mirror | None:
    """The mirror of the nearest folder above ``path`` that is a working copy."""
    for parent in Path(path).resolve().parents:
        mirror = mirror_for(parent)
        if mirror is not None:
            return mirror
    return None


def detach_all() -> None:
    """Forget every known working copy (tests; markers stay on disk)."""
    with _LOCK:
        _MIRRORS.clear()
