"""The HTTP protocol the API workers run: uvicorn's httptools protocol with ``TCP_NODELAY``.

With several workers uvicorn hands each worker the listening socket it bound; asyncio's
transports then skip ``TCP_NODELAY`` on accepted connections, and Nagle's algorithm with delayed
ACKs adds ~40 ms to every small answer. Setting it per connection here removes that delay for
either event loop (uvloop sets it itself; setting it again is harmless).
"""

from __future__ import annotations

import asyncio
import logging
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that turns Nagle's algorithm off on each connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:  # a socket closed by the peer meanwhile
                logger.debug("TCP_NODELAY not set: %s", exc)
        super().connection_made(transport)
