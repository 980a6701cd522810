"""Publishing to an object store, with the trust rules of a store that cannot rename.

* A model version's files are PUT under its own fresh prefix
  (``<series>/<model>/<version>/``), its ``metadata.json`` (every file's sha256) last: a
  version without metadata is incomplete, and readers ignore it.
* An issue's ``forecast.csv`` goes before its ``issue.json``.
* The champion pointer is one small object, PUT after the version it names (a single PUT is
  atomic: readers see the old pointer or the new one).
* A data file is PUT whole after its local atomic write, then its ``.meta.json``.

Every function here is a no-op for a plain local folder, so the writers call them always.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, TypeVar

from pipeline.storage.mirror import Mirror, mirror_above, mirror_for

logger = logging.getLogger(__name__)

#: Files PUT after every other file of their folder, in this order (metadata.json last).
LAST = ("issue.json", "metadata.json")


def _order(path: Path) -> tuple[int, str]:
    return (LAST.index(path.name) + 1 if path.name in LAST else 0, str(path))


def _relative(mirror: Mirror, path: Path) -> str:
    return Path(path).resolve().relative_to(mirror.root).as_posix()


def publish_path(mirror: Mirror, path: Path) -> int:
    """PUT a file, or every file of a folder with :data:`LAST` at the end; returns the count."""
    path = Path(path)
    if path.is_dir():
        files = sorted(
            (p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")), key=_order
        )
    else:
        files = [path]
    for file in files:
        mirror.objects.put_file(_relative(mirror, file), file)
    logger.debug("published %s (%d file(s)) to %s", path, len(files), mirror.url)
    return len(files)


def published(root: Path, path: Path) -> None:
    """Publish ``path`` (a version, an issue folder, a pointer) written under models ``root``."""
    mirror = mirror_for(root)
    if mirror is not None:
        publish_path(mirror, path)


class _Written(Protocol):
    @property
    def path(self) -> Path: ...


Written = TypeVar("Written", bound=_Written)


def published_issue(root: Path, info: Written) -> Written:
    """Publish the issue folder ``info.path`` written under models ``root``; returns ``info``."""
    published(root, info.path)
    return info


def published_files(paths: Iterable[Path]) -> None:
    """Publish data files just written (in order) when their folder is a working copy."""
    paths = list(paths)
    mirror = mirror_above(paths[0]) if paths else None
    if mirror is not None:
        for path in paths:
            publish_path(mirror, path)


def withdraw_path(mirror: Mirror, path: Path) -> None:
    """Delete the objects of a removed folder: its ``metadata.json`` / ``issue.json`` first, so
    that a reader never finds a complete-looking version with files missing."""
    relative = _relative(mirror, path)
    prefixed = list(mirror.objects.listing(relative + "/"))
    head = [k for k in prefixed if Path(k).name in LAST]
    if head:
        mirror.objects.delete(head)
    rest = [k for k in prefixed if Path(k).name not in LAST]
    if rest:
        mirror.objects.delete(rest)


def withdrawn(root: Path, paths: list[Path]) -> list[Path]:
    """Delete from the store the folders just removed under models ``root``; returns ``paths``."""
    mirror = mirror_for(root)
    if mirror is not None:
        for path in paths:
            withdraw_path(mirror, path)
    return paths
