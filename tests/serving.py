"""A real uvicorn server for service tests: sockets, timeouts and WebSocket frames as a client meets them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI
from websockets.sync.client import ClientConnection, connect


@contextmanager
def running(app: FastAPI, **config) -> Iterator[int]:
    """`app` under uvicorn on a free 127.0.0.1 port, in a thread of this process: yields the port."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def live(port: int, query: str = "", **options) -> ClientConnection:
    """A WebSocket client of `/live?query` (no compression, no proxy, 10 s to open)."""
    return connect(f"ws://127.0.0.1:{port}/live?{query}", compression=None, proxy=None, **options)


def raw_request(port: int, head: str, body: bytes = b"", timeout: float = 20) -> bytes:
    """Send `head` (request line and headers, without the blank line) and `body` over a fresh socket; what
    the server answered before it closed or `timeout` passed."""
    answer = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(head.encode() + b"\r\nConnection: close\r\n\r\n" + body)
        try:
            while data := conn.recv(65536):
                answer.extend(data)
        except TimeoutError:
            pass
    return bytes(answer)
