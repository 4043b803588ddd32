"""Limits that hold while a request's body arrives: its size, its time, and how many predictions may be pending.

`BodyLimit` is a pure ASGI middleware around every HTTP request. A request whose Content-Length states more
than the limit gets 413 before any of its body is read. Any other request has its body counted as the route
reads it (`receive`): once the running total passes the limit the read fails with a 413, so neither memory nor
the multipart spool on disk ever holds more than the limit (chunked uploads without Content-Length included).
After a 413 the rest of the body is read and dropped, for at most `DRAIN_SECONDS` and `DRAIN_BYTES`, before the
answer ends and the connection closes (`Connection: close`): a lingering close, so a client still sending sees
the 413 rather than a reset connection, and a client that keeps on sending is cut off. The whole body must
also arrive within `timeout` seconds of the request's headers, or the read fails with a 408 and the connection
closes: a client that sends headers and then nothing, or a byte now and then (slowloris), holds its socket
that long at most.

`ServiceLimits` holds every limit of `mamer serve` with its default and checks each one, naming its option.

`PendingLimit` counts the requests to a route (`POST /predict`) whose body is in and that are being answered
or waiting for the model; a request whose body arrives while `max_pending` are counted gets 503 with
`Retry-After`. Only whole bodies count, so sockets that never finish sending theirs (which `BodyLimit` cuts
off) cannot take the places of requests that did.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields

import anyio
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLOSE = {"Connection": "close"}  # the server closes the connection once the answer is sent
DRAIN_SECONDS = 5.0  # after a 413, how long the rest of the body is read (and dropped) at most
DRAIN_BYTES = 64 << 20  # and how much of it
BODY_TIMEOUT = 60.0  # seconds a request's whole body may take to arrive (mamer serve --body-timeout)
MAX_PENDING = 64  # requests answered or waiting at once (mamer serve --max-pending)
MAX_LIVE = 8  # live streams at once (mamer serve --max-live)
LIVE_IDLE = 30.0  # seconds behind real time after which a live stream is closed (mamer serve --live-idle)


@dataclass(frozen=True)
class ServiceLimits:
    """The limits of `mamer serve` (each field is the option of the same name: `workers` is `--workers`);
    docs/service.md says why each default is what it is. ValueError naming the option for a value out of range."""

    max_upload_mb: float = 20.0  # request bodies over this get 413
    max_seconds: float = 600.0  # audio longer than this gets 422
    workers: int = 2  # uploads decoded, transcribed or read as a timeline at once
    live_workers: int = 1  # live windows predicted at once, apart from the uploads' workers
    max_pending: int = MAX_PENDING  # POST /predict requests with their body in, answered or waiting
    max_live: int = MAX_LIVE  # live streams at once
    body_timeout: float = BODY_TIMEOUT  # seconds a request's body may take to arrive in full
    live_idle: float = LIVE_IDLE  # seconds behind real time after which a live stream is closed

    def __post_init__(self) -> None:
        for field in fields(self):
            value, whole = getattr(self, field.name), field.type == "int"
            option = f"{field.name}={value!r} (mamer serve --{field.name.replace('_', '-')})"
            if whole and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"{option}: must be a whole number")
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{option}: must be a finite number")
            if value < 1 if whole else value <= 0:
                raise ValueError(f"{option}: must be {'at least 1' if whole else 'more than 0'}")


class BodyRefused(HTTPException):
    """Raised by `receive` when the body breaks a limit. FastAPI answers HTTP exceptions raised while it parses
    a form as they are (`status` with `detail`); `BodyLimit` answers it if it gets that far."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail, headers=CLOSE)


class BodyLimit:
    """ASGI middleware: HTTP request bodies over `limit_bytes` get 413 with `detail` (a JSON `{"detail": ...}`),
    bodies not in `timeout` seconds after the headers 408."""

    def __init__(self, app: ASGIApp, limit_bytes: int, detail: str, timeout: float = BODY_TIMEOUT) -> None:
        self.app, self.limit_bytes, self.detail, self.timeout = app, limit_bytes, detail, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # WebSocket and lifespan messages pass untouched
            await self.app(scope, receive, send)
            return
        stated = _content_length(scope)
        if stated is not None and stated > self.limit_bytes:
            await _answer(BodyRefused(413, self.detail), scope, receive, lingering(send, receive))
            return
        received, started, over, complete = 0, False, False, False
        deadline = time.monotonic() + self.timeout

        async def counted_receive() -> Message:
            nonlocal received, over, complete
            if complete:  # the body is in: what comes now is the client leaving
                return await receive()
            with anyio.move_on_after(deadline - time.monotonic()):
                message = await receive()
                complete = message["type"] != "http.request" or not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.limit_bytes:
                    over = True
                    raise BodyRefused(413, self.detail)
                return message
            raise BodyRefused(
                408,
                f"the request's body did not arrive within {self.timeout:g} s "
                f"({received} bytes came; mamer serve --body-timeout)",
            )

        closing = lingering(send, receive)

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await (closing if over else send)(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyRefused as err:
            if started:  # too late for an answer: let the server end the connection
                raise
            await _answer(err, scope, receive, closing if over else send)


class PendingLimit:
    """ASGI middleware: at most `max_pending` HTTP requests to `path` whose body is in at once; a request
    whose body arrives while that many are counted gets 503."""

    def __init__(self, app: ASGIApp, path: str, max_pending: int = MAX_PENDING) -> None:
        self.app, self.path, self.max_pending = app, path, max_pending
        self.pending = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        counted = False

        async def counting_receive() -> Message:
            nonlocal counted
            message = await receive()
            whole = message["type"] == "http.request" and not message.get("more_body", False)
            if whole and not counted:
                if self.pending >= self.max_pending:
                    raise HTTPException(503, self._busy(), headers={"Retry-After": "1"})
                self.pending, counted = self.pending + 1, True
            return message

        try:
            await self.app(scope, counting_receive, send)
        finally:
            if counted:
                self.pending -= 1

    def _busy(self) -> str:
        return (
            f"the service is busy: {self.pending} requests are being answered, the most it queues "
            "(mamer serve --max-pending); try again in a moment"
        )


async def _answer(err: HTTPException, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer `err` as `{"detail": ...}` with its status and headers."""
    await JSONResponse({"detail": err.detail}, err.status_code, err.headers)(scope, receive, send)


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
