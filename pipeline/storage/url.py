"""Object-store URLs (``s3://bucket/prefix``), their local working copies, and the filesystem.

``DATA_DIR``, ``MODELS_DIR`` and ``REPORTS_DIR`` accept such a URL. The stages keep working on
local files: the URL is mapped to a folder under ``STORAGE_CACHE_DIR`` (its *working copy*),
which :mod:`pipeline.storage.publish` pushes to the store and :mod:`pipeline.storage.pull`
refreshes from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipeline.errors import UsageError

if TYPE_CHECKING:
    from pipeline.config import Settings

logger = logging.getLogger(__name__)

#: The URL schemes accepted for the data, models and reports folders.
SCHEMES = ("s3",)


def is_store_url(value: object) -> bool:
    """Whether ``value`` names an object store (``scheme://...``) rather than a local path."""
    return isinstance(value, str) and "://" in value


@dataclass(frozen=True)
class StoreUrl:
    """A parsed ``s3://bucket/prefix``: the prefix has no leading or trailing slash."""

    scheme: str
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, value: str) -> StoreUrl:
        parts = urlsplit(value)
        if parts.scheme not in SCHEMES:
            raise UsageError(
                f"{value!r}: unsupported object store {parts.scheme!r}; use s3://bucket/prefix "
                "or a local path"
            )
        bucket = parts.hostname or ""
        if not bucket or parts.query or parts.fragment:
            raise UsageError(f"{value!r}: expected s3://bucket/prefix")
        prefix = parts.path.strip("/")
        if any(part in {".", ".."} for part in prefix.split("/")):
            raise UsageError(f"{value!r}: '.' and '..' are not allowed in the prefix")
        return cls(parts.scheme, bucket, prefix)

    def __str__(self) -> str:
        """The URL without credentials (safe to log and to show in /health/detailed)."""
        return f"{self.scheme}://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, relative: str) -> str:
        """The object key of ``relative`` (a POSIX path inside the folder)."""
        return f"{self.prefix}/{relative}" if self.prefix else relative  # "" -> "prefix/"

    def relative(self, key: str) -> str:
        """The path inside the folder of an object key under the prefix."""
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def local_copy(self, cache_dir: Path) -> Path:
        """The working copy of this folder under ``cache_dir``."""
        return Path(cache_dir) / self.scheme / self.bucket / (self.prefix or "_root")

    @staticmethod
    def of_copy(folder: Path, cache_dir: Path) -> str | None:
        """The URL whose working copy ``folder`` is (the inverse of :meth:`local_copy`)."""
        try:
            parts = Path(folder).resolve().relative_to(Path(cache_dir).resolve()).parts
        except ValueError:
            return None
        if len(parts) < 3 or parts[0] not in SCHEMES:
            return None
        prefix = "" if parts[2:] == ("_root",) else "/".join(parts[2:])
        return str(StoreUrl(parts[0], parts[1], prefix))


def working_copies(data: Any, default_cache: Path) -> Any:
    """Raw settings with each ``s3://`` folder replaced by its working copy (the settings'
    validator); a bad URL is a ValueError naming the variable."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    cache = Path(data.get("storage_cache_dir") or default_cache)
    for name in ("data_dir", "models_dir", "reports_dir"):
        value = data.get(name)
        if is_store_url(value):
            try:
                data[name] = StoreUrl.parse(str(value)).local_copy(cache)
            except UsageError as exc:
                raise ValueError(f"{name.upper()}: {exc}") from None
    return data


def display_url(value: str) -> str:
    """``value`` without credentials: a store URL's user and password are dropped."""
    try:
        return str(StoreUrl.parse(value))
    except UsageError:
        return "<invalid store URL>"


def fs_for(settings: Settings) -> Any:
    """An ``s3fs.S3FileSystem`` from the ``S3_*`` settings.

    Unset settings fall back to what botocore reads itself: ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``,
    ``AWS_ENDPOINT_URL`` and the shared credentials file. Listings are never cached, so every
    poll sees the store as it is.
    """
    import s3fs  # imported only when an object store is configured

    key = settings.s3_access_key_id
    secret = settings.s3_secret_access_key
    client_kwargs: dict[str, Any] = {}
    if settings.s3_region:
        client_kwargs["region_name"] = settings.s3_region
    return s3fs.S3FileSystem(
        key=key.get_secret_value() if key else None,
        secret=secret.get_secret_value() if secret else None,
        endpoint_url=settings.s3_endpoint_url,
        client_kwargs=client_kwargs,
        config_kwargs={
            "connect_timeout": settings.s3_timeout_seconds,
            "read_timeout": settings.s3_timeout_seconds,
            "retries": {"max_attempts": 3, "mode": "standard"},
        },
        use_listings_cache=False,
        skip_instance_cache=True,
    )
