"""One cycle at a time across hosts: the PostgreSQL advisory lock (real server, real processes)
and the local flock, which is all there is without PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import retrain_scheduler
from pipeline.config import Settings, load_settings
from pipeline.scheduling import jobs
from pipeline.scheduling.history import EXIT_LOCKED, LOCK_FILE, LockBusyError, history_path
from pipeline.scheduling.job_runner import run_job
from pipeline.scheduling.lock import cycle_lock, describe_lock, lock_key, postgres_conninfo
from tests.helpers.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[3]
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/ledger"
#: A process that takes the lock, says so on stdout, and holds it until killed.
HOLDER = """
import sys, time
from pipeline.config import load_settings
from pipeline.scheduling.lock import cycle_lock
with cycle_lock(load_settings(), job=sys.argv[1]):
    print("held", flush=True)
    while True:
        time.sleep(60)
"""


@pytest.fixture
def ledger_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh PostgreSQL database, as the ledger of every scheduler of the test."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


def _host(tmp_path: Path, name: str, ledger_url: str | None) -> Settings:
    """The settings of a scheduler 'on another host': folders of its own, shared nothing."""
    return load_settings(
        coins=["bitcoin"],
        frequencies=["1d"],
        data_dir=tmp_path / name / "data",
        models_dir=tmp_path / name / "models",
        ledger_url=ledger_url,
    )


def _env(settings: Settings, ledger_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LOG_FORMAT": "text",
        "SOURCE": "sample",
        "COINS": "bitcoin",
        "FREQUENCIES": "1d",
        "DATA_DIR": str(settings.data_dir),
        "MODELS_DIR": str(settings.models_dir),
        "LEDGER_URL": ledger_url,
        "SCHEDULER_METRICS_PORT": "0",
    }


def _start_holder(settings: Settings, ledger_url: str, job: str = "cycle") -> subprocess.Popen[str]:
    """A real process holding the lock (bounded wait for its "held" line)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, job],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(settings, ledger_url),
        cwd=settings.models_dir.parent,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "held":
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"the holder did not take the lock: {line!r} {err[-2000:]}")
    return proc


def _take_within(settings: Settings, seconds: float) -> bool:
    """Poll (bounded) until this process gets the lock; True when it did."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with cycle_lock(settings):
                return True
        except LockBusyError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def test_a_second_scheduler_elsewhere_exits_3_naming_the_holder_until_it_is_killed(
    tmp_path: Path, ledger_url: str
) -> None:
    host_a, host_b = _host(tmp_path, "a", ledger_url), _host(tmp_path, "b", ledger_url)
    for settings in (host_a, host_b):
        settings.models_dir.mkdir(parents=True)
    holder = _start_holder(host_a, ledger_url)
    try:
        second = subprocess.run(
            [sys.executable, str(ROOT / "retrain_scheduler.py"), "--once"],
            capture_output=True,
            text=True,
            timeout=300,
            env=_env(host_b, ledger_url),
            cwd=host_b.models_dir.parent,
        )
        assert second.returncode == EXIT_LOCKED, second.stderr[-3000:]
        assert "another retraining cycle is running" in second.stderr
        assert f"held by pid {holder.pid} on host {socket.gethostname()}" in second.stderr
        assert "nothing was done" in second.stderr
        assert not history_path(host_b).exists()  # nothing was done
        assert not _take_within(host_b, 0)  # host b's own flock was free: PostgreSQL refused
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    # The killed holder's session ends, and its lock with it: the next scheduler gets it.
    assert _take_within(host_b, 60), "the lock of a killed holder was not released"


def test_a_refresh_elsewhere_is_named_and_the_lock_is_taken_again_after_it(
    tmp_path: Path, ledger_url: str
) -> None:
    host_a, host_b = _host(tmp_path, "a", ledger_url), _host(tmp_path, "b", ledger_url)
    with cycle_lock(host_a, job="refresh"):
        with pytest.raises(LockBusyError) as busy:
            with cycle_lock(host_b):
                pass
    message = str(busy.value)
    assert message.startswith("another refresh is running (lock PostgreSQL advisory lock ")
    assert f"held by pid {os.getpid()} on host {socket.gethostname()} since " in message
    assert message.endswith("(refresh)); nothing was done")
    assert "in postgresql://127.0.0.1:" in message and ledger_url.rsplit("/", 1)[1] not in message
    with cycle_lock(host_b):  # released at the end of the block
        pass


def test_a_job_elsewhere_that_may_not_wait_is_refused(tmp_path: Path, ledger_url: str) -> None:
    host_a, host_b = _host(tmp_path, "a", ledger_url), _host(tmp_path, "b", ledger_url)
    request = jobs.JobRequest.model_validate({"kind": "refresh", "wait": False})
    record = jobs.new_job(host_b, request)
    with cycle_lock(host_a):
        assert run_job(host_b, record.id, threading.Event()) == EXIT_LOCKED
    done = jobs.read_record(host_b, record.id)
    assert (done.state, done.exit_code) == ("refused", EXIT_LOCKED)
    assert f"held by pid {os.getpid()} on host " in done.reason


def test_the_key_ignores_the_local_models_path_and_the_lock_is_described(
    tmp_path: Path, ledger_url: str
) -> None:
    host_a, host_b = _host(tmp_path, "a", ledger_url), _host(tmp_path, "b", ledger_url)
    assert lock_key(host_a) == lock_key(host_b)
    assert -(2**63) <= lock_key(host_a) < 2**63
    remote = load_settings(models_dir="s3://bucket/models", ledger_url=ledger_url)
    assert lock_key(remote) != lock_key(host_a)  # an object store location is part of it
    described = describe_lock(host_a)
    assert f"PostgreSQL advisory lock {lock_key(host_a)} in postgresql://127.0.0.1:" in described
    assert described.startswith(f"flock {host_a.models_dir / LOCK_FILE} and ")


def test_the_dry_run_names_the_lock(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEDGER_URL", ledger_url)
    assert retrain_scheduler.main(["--dry-run"]) == 0
    lock = json.loads(capsys.readouterr().out)["lock"]
    assert lock.startswith("flock ") and " and PostgreSQL advisory lock " in lock
    assert "postgres@" not in lock  # no credentials


def test_without_postgresql_the_lock_is_the_flock(tmp_path: Path) -> None:
    settings = _host(tmp_path, "a", None)
    assert postgres_conninfo(settings) is None
    assert describe_lock(settings) == f"flock {settings.models_dir / LOCK_FILE}"
    with cycle_lock(settings, job="backtest"):
        holder = (settings.models_dir / LOCK_FILE).read_text("utf-8")
        assert holder.startswith(f"pid {os.getpid()} since ") and holder.endswith("(backtest)")
        with pytest.raises(LockBusyError, match=rf"held by pid {os.getpid()} since .*nothing"):
            with cycle_lock(settings):
                pass
    other = _host(tmp_path, "b", None)
    with cycle_lock(settings), cycle_lock(other):  # another folder, another lock
        pass


def test_an_unreachable_database_leaves_the_flock_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _host(tmp_path, "a", UNREACHABLE)
    with caplog.at_level(logging.WARNING, logger="pipeline.scheduling.lock"):
        with cycle_lock(settings):
            with pytest.raises(LockBusyError, match="another retraining cycle"):
                with cycle_lock(settings):
                    pass
    assert "could not be taken" in caplog.text
    assert "not kept apart until the database answers" in caplog.text
    assert "nobody" not in caplog.text  # the URL is named without its user
