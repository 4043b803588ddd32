"""Who may talk to the service: the host names it answers to, and the pages that may send it work.

A browser lets any page send a form to any address, the user's own machine included: a page of another site can
POST an upload to `http://127.0.0.1:8000/predict` (its answer stays unreadable to that page, but the work is
done), and through DNS rebinding (its own name resolving to 127.0.0.1) it can even pass as the service's own
page. Two checks close that, in `AccessCheck`, an ASGI middleware in front of everything:

- **Host.** The `Host` a request names must be an IP address, a loopback name (`localhost`), the host the
  service is bound to, or one `mamer serve --allow-host` adds. A rebinding page names its own domain, so it is
  refused (403, or a WebSocket closed before its handshake). An IP address cannot be rebound, so any is let in
  (`--host 0.0.0.0` is reached at the machine's address without further options).
- **Origin.** A request that changes something (any method but GET, HEAD and OPTIONS: `POST /predict`) and
  comes from a page (an `Origin` header) must come from the service's own page (the origin's `host:port` is
  the `Host`) or one `mamer serve --allow-origin` names; clients that send no `Origin` (curl, scripts) are let
  in. `WS /live` applies the same rule after accepting, so its refusal is in words (`live.py`).

The service sends no CORS headers, so no other page can read an answer either.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")  # answered to by default, besides IP addresses
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")  # read only; anything else is checked against the Origin
WILDCARD_BINDS = ("", "0.0.0.0", "::")  # bound to every address: no one host name to add
POLICY = 1008  # WebSocket close code: refused by policy


class AccessError(ValueError):
    """A request the service refuses: its message says why and which option lets it in."""


class AccessCheck:
    """ASGI middleware: the Host allow-list for HTTP and WebSocket requests, the Origin check for HTTP
    requests that are not read-only. `hosts`: names besides IP addresses and loopback names; `origins`: pages
    besides the service's own (see `origin_of`)."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str] = (), origins: Iterable[str] = ()) -> None:
        self.app = app
        self.hosts = {h.strip().lower().strip("[]") for h in [*LOOPBACK_NAMES, *hosts] if h.strip()}
        self.origins = {origin_of(o) for o in origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            check_host(headers.get("host"), self.hosts)
            if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
                check_origin(headers.get("origin"), headers.get("host"), self.origins, scope["path"])
        except AccessError as err:
            if scope["type"] == "websocket":  # refused before the handshake: nothing reaches the page
                await send({"type": "websocket.close", "code": POLICY, "reason": str(err)[:120]})
            else:
                await JSONResponse({"detail": str(err)}, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> list[str]:
    """Host names a service bound to `bound` answers to besides IP addresses and loopback names: the bound
    name itself (unless it is every address) and `extra` (`--allow-host`)."""
    own = [] if bound.strip("[]") in WILDCARD_BINDS else [bound]
    return [*own, *extra]


def check_host(host: str | None, allowed: set[str]) -> None:
    """AccessError unless the `Host` header names an IP address or one of `allowed` (lowercase, no port);
    a request without `Host` (HTTP/1.0, not a browser) passes."""
    if host is None:
        return
    try:
        name = (urlsplit(f"//{host}").hostname or "").lower()
    except ValueError:  # a port that is not a number, unbalanced brackets
        name = None
    if name and (name in allowed or _is_ip(name)):
        return
    shown = host if len(host) <= 60 else host[:60] + "..."
    raise AccessError(
        f"this service answers to {', '.join(sorted(allowed))} and IP addresses; this request names the "
        f"host {shown!r} (a page of another site reached through DNS rebinding looks like this): "
        "mamer serve --allow-host NAME lets a name in"
    )


def check_origin(origin: str | None, host: str | None, allowed: set[str], what: str = "live mode") -> None:
    """AccessError unless the page sending the request is the service's own (its origin's host:port is the
    `Host` the request came to), one of `allowed` (`origin_of` each), or absent (a client that is no browser)."""
    if origin is None:
        return
    if urlsplit(origin).netloc.lower() == (host or "").lower() or origin_of(origin) in allowed:
        return
    shown = origin if len(origin) <= 80 else origin[:80] + "..."
    raise AccessError(
        f"{what} takes requests from this service's own page; the page at {shown} is another site "
        "(mamer serve --allow-origin ORIGIN lets it in)"
    )


def origin_of(url: str) -> str:
    """An origin for comparing: scheme://host[:port] without a trailing slash."""
    return url.rstrip("/")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
