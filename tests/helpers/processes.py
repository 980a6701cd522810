"""Helpers for tests that start real server processes on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    http: httpx.Client, path: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    """Poll ``path`` until it answers 200; fail with the server's log if the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if http.get(path).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"the server did not answer {path} in {timeout:g} s"
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it is still running after 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
