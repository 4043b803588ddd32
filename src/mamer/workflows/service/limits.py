"""Limits that hold before a request's body is read: its size, and how many predictions may be pending.

`PendingLimit` is a pure ASGI middleware that counts the requests to a route (`POST /predict`) being answered
now; one more than `max_pending` gets 503 with `Retry-After` before any of its body is read, so a burst of
uploads cannot pile up in memory while they wait for the model.

A request-body limit that holds while the body streams in, chunked uploads without Content-Length included.

`BodyLimit` is a pure ASGI middleware. A request whose Content-Length states more than the limit gets 413 before
any of its body is read. Any other request has its body counted as the route reads it (`receive`): once the
running total passes the limit the read fails with a 413, so neither memory nor the multipart spool on disk
ever holds more than the limit. After a 413 the rest of the body is read and dropped, for at most
`DRAIN_SECONDS` and `DRAIN_BYTES`, before the answer ends and the connection closes (`Connection: close`): a
lingering close, so a client still sending sees the 413 rather than a reset connection, and a client that keeps
on sending is cut off.
"""

from __future__ import annotations

import anyio
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLOSE = {"Connection": "close"}  # the server closes the connection once the 413 is sent
DRAIN_SECONDS = 5.0  # after a 413, how long the rest of the body is read (and dropped) at most
DRAIN_BYTES = 64 << 20  # and how much of it


class BodyTooLarge(HTTPException):
    """Raised by `receive` once the body passes the limit. FastAPI answers HTTP exceptions raised while it
    parses a form as they are (a 413 with `detail`); `BodyLimit` answers it if it gets that far."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail, headers=CLOSE)


class BodyLimit:
    """ASGI middleware: HTTP request bodies over `limit_bytes` get 413 with `detail` (a JSON `{"detail": ...}`)."""

    def __init__(self, app: ASGIApp, limit_bytes: int, detail: str) -> None:
        self.app, self.limit_bytes, self.detail = app, limit_bytes, detail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # WebSocket and lifespan messages pass untouched
            await self.app(scope, receive, send)
            return
        stated = _content_length(scope)
        if stated is not None and stated > self.limit_bytes:
            await self._refuse(scope, receive, lingering(send, receive))
            return
        received, started, over = 0, False, False

        async def counted_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit_bytes:
                    over = True
                    raise BodyTooLarge(self.detail)
            return message

        closing = lingering(send, receive)

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await (closing if over else send)(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if started:  # too late for a 413: let the server end the connection
                raise
            await self._refuse(scope, receive, closing)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 413 with the limit's message, asking the client to close the connection."""
        await JSONResponse({"detail": self.detail}, status_code=413, headers=CLOSE)(scope, receive, send)


class PendingLimit:
    """ASGI middleware: at most `max_pending` HTTP requests to `path` at once; the next one gets 503."""

    def __init__(self, app: ASGIApp, path: str, max_pending: int) -> None:
        self.app, self.path, self.max_pending = app, path, max_pending
        self.pending = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        if self.pending >= self.max_pending:
            detail = (
                f"the service is busy: {self.pending} requests are being answered, the most it queues "
                "(mamer serve --max-pending); try again in a moment"
            )
            headers = {**CLOSE, "Retry-After": "1"}
            await JSONResponse({"detail": detail}, 503, headers)(scope, receive, lingering(send, receive))
            return
        self.pending += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.pending -= 1


def lingering(send: Send, receive: Receive) -> Send:
    """`send` that, once the answer's body is written, drops what is left of the request body (see `drain`)
    before it ends the answer, so the client reads the answer before the connection closes."""

    async def send_then_drain(message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            await send({**message, "more_body": True})
            await drain(receive)
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    return send_then_drain


async def drain(receive: Receive) -> None:
    """Read and drop the rest of a request body: until it ends, the client hangs up, `DRAIN_SECONDS` pass or
    `DRAIN_BYTES` have come."""
    dropped = 0
    with anyio.move_on_after(DRAIN_SECONDS):
        while dropped <= DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            dropped += len(message.get("body", b""))


def _content_length(scope: Scope) -> int | None:
    """The Content-Length the request states, or None (absent, as in chunked uploads, or not a number)."""
    value = Headers(scope=scope).get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None
