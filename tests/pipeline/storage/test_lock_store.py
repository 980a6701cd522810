"""The cycle lock on an object store: schedulers on different hosts (different working copies of
the same s3:// MODELS_DIR, nothing shared on disk) are kept apart by the ledger's PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.scheduling.history import LockBusyError
from pipeline.scheduling.lock import cycle_lock
from tests.helpers.postgres import PostgresServer
from tests.helpers.s3 import S3Server


@pytest.fixture(scope="module")
def ledger_url(postgres_server: PostgresServer) -> str:
    """One database of the session's PostgreSQL server, the ledger (and lock) of both hosts."""
    return postgres_server.url(postgres_server.create_database())


def host(s3: S3Server, bucket: str, cache: Path, ledger: str | None) -> Settings:
    return load_settings(
        models_dir=f"s3://{bucket}/models", data_dir=f"s3://{bucket}/data",
        storage_cache_dir=cache, ledger_url=ledger, **s3.settings(),
    )  # fmt: skip


def test_two_hosts_of_one_store_take_turns_through_postgresql(
    s3_server: S3Server, bucket: str, tmp_path: Path, ledger_url: str
) -> None:
    a = host(s3_server, bucket, tmp_path / "host-a", ledger_url)
    b = host(s3_server, bucket, tmp_path / "host-b", ledger_url)
    assert a.models_dir != b.models_dir  # two working copies: their flocks are two files
    with cycle_lock(a):
        with pytest.raises(LockBusyError, match="another retraining cycle is running"):
            with cycle_lock(b):
                pass
        # another store is another deployment: its lock is free
        other = host(s3_server, s3_server.new_bucket(), tmp_path / "host-c", ledger_url)
        with cycle_lock(other):
            pass
    with cycle_lock(b):  # released: the other host gets it
        pass


def test_without_postgresql_each_host_has_only_its_own_flock(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    a = host(s3_server, bucket, tmp_path / "host-a", None)
    b = host(s3_server, bucket, tmp_path / "host-b", None)
    with cycle_lock(a):
        with pytest.raises(LockBusyError):  # the same host (working copy): refused
            with cycle_lock(a):
                pass
        with cycle_lock(b):  # another host's working copy: as documented, not kept apart
            pass
