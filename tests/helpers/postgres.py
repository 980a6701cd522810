"""A throw-away PostgreSQL server on 127.0.0.1 (initdb in a temporary folder), for the ledger."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.processes import free_port

#: The role the server runs as when the tests run as root (PostgreSQL refuses root).
SERVER_USER = "postgres"


def find_bin(name: str) -> str | None:
    """A PostgreSQL server binary on PATH or under /usr/lib/postgresql/<v>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", SERVER_USER, "--", *cmd]


@dataclass
class PostgresServer:
    """A running cluster: ``url(db)`` gives a ``postgresql://`` URL for database ``db``."""

    folder: Path
    port: int
    pg_ctl: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        import psycopg

        name = f"ledger_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        subprocess.run(
            _as_server_user(
                [self.pg_ctl, "-D", str(self.folder / "data"), "-m", "immediate", "stop"]
            ),
            check=False,
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def start_server() -> PostgresServer | str:
    """Start a cluster; a string says why it cannot (no binaries, or the start failed)."""
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl) on this machine"
    folder = Path(tempfile.mkdtemp(prefix="ledger-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, SERVER_USER)
    port = free_port()
    data, log = folder / "data", folder / "server.log"
    init = subprocess.run(
        _as_server_user([initdb, "-D", str(data), "-A", "trust", "-U", SERVER_USER, "--no-sync"]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if init.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        return f"initdb failed: {init.stderr.strip()[-500:]}"
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = subprocess.run(
        _as_server_user([pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if started.returncode != 0:
        detail = log.read_text() if log.is_file() else started.stderr
        shutil.rmtree(folder, ignore_errors=True)
        return f"PostgreSQL did not start: {detail.strip()[-500:]}"
    return PostgresServer(folder, port, pg_ctl)
