"""Serving helpers: the multiprocess metrics folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.api.server import prepare_multiprocess_dir


def test_one_worker_needs_no_multiprocess_folder() -> None:
    assert prepare_multiprocess_dir(1, None) is None


def test_several_workers_get_a_fresh_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first, so that monkeypatch removes the variable prepare_multiprocess_dir sets
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    folder = prepare_multiprocess_dir(2, None)
    assert folder is not None and folder.is_dir() and not any(folder.iterdir())
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder)
    folder.rmdir()


def test_a_configured_folder_is_emptied_of_stale_files(tmp_path: Path) -> None:
    configured = tmp_path / "prom"
    configured.mkdir()
    (configured / "counter_1.db").write_bytes(b"old")
    (configured / "keep.txt").write_text("x", "utf-8")
    assert prepare_multiprocess_dir(2, configured) is None
    assert sorted(p.name for p in configured.iterdir()) == ["keep.txt"]


def test_open_files_limit_is_raised_to_the_hard_limit_at_most() -> None:
    import resource

    from pipeline.api.server import raise_open_files

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        assert raise_open_files(300) == min(300, hard)
        assert raise_open_files(0) == hard
        assert raise_open_files(10**9) == hard  # never above the hard limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_kernel_backlog_cap(tmp_path: Path) -> None:
    from pipeline.api.server import kernel_backlog_cap

    (tmp_path / "somaxconn").write_text("4096\n")
    assert kernel_backlog_cap(tmp_path / "somaxconn") == 4096
    assert kernel_backlog_cap(tmp_path / "missing") is None


def test_every_connection_gets_tcp_nodelay() -> None:
    import asyncio
    import socket

    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from pipeline.api.protocol import NoDelayHttpToolsProtocol

    class Transport(asyncio.Transport):
        def __init__(self, sock: socket.socket) -> None:
            super().__init__()
            self.sock = sock

        def get_extra_info(self, name: str, default: object = None) -> object:
            return {"socket": self.sock, "peername": ("127.0.0.1", 1)}.get(name, default)

        def close(self) -> None:
            pass

    async def app(scope: object, receive: object, send: object) -> None:
        return None

    async def connect() -> int:
        config = Config(app=app, http=NoDelayHttpToolsProtocol)
        config.load()
        protocol = NoDelayHttpToolsProtocol(config, ServerState(), app_state={})
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            protocol.connection_made(Transport(sock))
            protocol.connection_lost(None)
            return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

    assert asyncio.run(connect()) != 0
