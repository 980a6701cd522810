"""The cycle lock on an object store: schedulers on different hosts (different working copies of
the same s3:// MODELS_DIR, nothing shared on disk) are kept apart by the ledger's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import Settings, load_settings
from pipeline.scheduling.history import LockBusyError
from pipeline.scheduling.lock import cycle_lock
from tests.helpers.postgres import PostgresServer, find_bin, start_server
from tests.helpers.s3 import S3Server


@pytest.fixture(scope="module")
def ledger_url() -> Iterator[str]:
    if find_bin("initdb") is None or find_bin("pg_ctl") is None:
        pytest.skip("PostgreSQL lock tests skipped: no PostgreSQL server binaries (initdb, pg_ctl)")
    server: PostgresServer | str = start_server()
    if isinstance(server, str):  # the binaries are there: a failed start is a failure
        pytest.fail(f"PostgreSQL did not start for the lock tests: {server}")
    yield server.url(server.create_database())
    server.stop()


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
