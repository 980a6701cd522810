"""Objects of one store folder: list, put, get and delete, each one S3 request.

Every write is one ``PutObject`` of the whole file (no multipart upload), so a reader sees an
object either whole or not at all, and its ETag is the MD5 of its bytes (what
:meth:`ObjectStore.list` reports, and what a pull compares with a local file).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import StorageError
from pipeline.storage.url import StoreUrl

logger = logging.getLogger(__name__)

#: Keys deleted per ``DeleteObjects`` request (the S3 limit).
DELETE_BATCH = 1000


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: Path) -> str | None:
    """MD5 of a local file (to compare with an ETag), or None when it does not exist."""
    try:
        return md5_hex(path.read_bytes())
    except FileNotFoundError:
        return None


@dataclass
class ObjectStore:
    """The objects under ``url``'s prefix, named by their path relative to it."""

    url: StoreUrl
    fs: Any
    #: S3 requests made, by operation (``list``, ``put``, ``get``, ``delete``).
    requests: Counter[str] = field(default_factory=Counter)

    def _fail(self, action: str, what: str, exc: Exception) -> StorageError:
        return StorageError(
            f"cannot {action} {self.url}/{what}: {type(exc).__name__}: {exc}; check "
            "S3_ENDPOINT_URL, the credentials and that the bucket exists, then run again"
        )

    def listing(self, prefix: str = "") -> dict[str, ObjectInfo]:
        """Every object under ``prefix`` (relative), with its size and ETag."""
        base = self.url.key(prefix) if prefix else self.url.key("")
        found: dict[str, ObjectInfo] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.url.bucket, "Prefix": base}
            if token:
                kwargs["ContinuationToken"] = token
            self.requests["list"] += 1
            try:
                page = self.fs.call_s3("list_objects_v2", **kwargs)
            except Exception as exc:  # noqa: BLE001 - any client or network failure
                raise self._fail("list", prefix, exc) from exc
            for item in page.get("Contents", []):
                found[self.url.relative(item["Key"])] = ObjectInfo(
                    int(item["Size"]), str(item["ETag"]).strip('"')
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return found

    def put_bytes(self, relative: str, data: bytes) -> str:
        """One PUT of ``data``; returns its ETag."""
        self.requests["put"] += 1
        try:
            out = self.fs.call_s3(
                "put_object", Bucket=self.url.bucket, Key=self.url.key(relative), Body=data
            )
        except Exception as exc:  # noqa: BLE001
            raise self._fail("write", relative, exc) from exc
        logger.debug("put %s/%s (%d bytes)", self.url, relative, len(data))
        return str(out.get("ETag", "")).strip('"')

    def put_file(self, relative: str, path: Path) -> str:
        return self.put_bytes(relative, Path(path).read_bytes())

    def get_bytes(self, relative: str) -> bytes:
        self.requests["get"] += 1
        try:
            data: bytes = self.fs.cat_file(f"{self.url.bucket}/{self.url.key(relative)}")
        except Exception as exc:  # noqa: BLE001
            raise self._fail("read", relative, exc) from exc
        return data

    def delete(self, relatives: list[str]) -> None:
        for start in range(0, len(relatives), DELETE_BATCH):
            batch = relatives[start : start + DELETE_BATCH]
            self.requests["delete"] += 1
            try:
                self.fs.call_s3(
                    "delete_objects",
                    Bucket=self.url.bucket,
                    Delete={"Objects": [{"Key": self.url.key(r)} for r in batch], "Quiet": True},
                )
            except Exception as exc:  # noqa: BLE001
                raise self._fail("delete under", batch[0], exc) from exc
