"""Atomic file writes and checksums: readers never see a half-written file."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pandas as pd

from pipeline.errors import StorageError

#: The errors of a write that ran out of room: a full disk, a quota, a file-size limit.
NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def no_room_error(exc: OSError, target: str | os.PathLike[str]) -> StorageError | None:
    """A :class:`StorageError` naming ``target`` when ``exc`` says there was no room, else None."""
    if exc.errno not in NO_ROOM_ERRNOS:
        return None
    return StorageError(
        f"cannot write {target}: {exc.strerror or 'no room'} (disk full, quota or file-size "
        "limit); nothing was replaced: free some space (or raise the limit) and run again"
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path``; on success fsync and ``os.replace`` it into place.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and (clear := no_room_error(exc, target)) is not None:
            raise clear from exc
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_csv(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    with atomic_open(path, "w") as fh:
        frame.to_csv(fh, index=False, lineterminator="\n")
