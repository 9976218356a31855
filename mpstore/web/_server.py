"""The WebSocket endpoint: thin I/O around PageConnection, on the loop of the store's core thread.

One port serves both the y-websocket rooms (``ws://host:port/<store name>``) and a few static files
(the whiteboard page, its bundle, the value module). Every handler runs on one asyncio loop; for
an mpstore node that is the core thread's loop, so the store and presence are called directly.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import http
import ipaddress
import itertools
import logging
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .._docsync import check_store_name
from .._errors import ConfigurationError
from ._protocol import (
    KEEPALIVE,
    AwarenessQuery,
    AwarenessReceived,
    Limits,
    PageConnection,
    SyncReceived,
    Violation,
    awareness_message,
)

__all__ = ["Attachment", "Backend", "StaticFile", "WebServer", "is_loopback", "static_files"]

log = logging.getLogger("mpstore.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Seconds stop() waits for the pages' queues to drain before closing them.
STOP_DRAIN_TIMEOUT = 5.0
#: ... and how long it waits for a page whose queue does not move (it is not reading).
STOP_STALL_TIMEOUT = 0.5
#: Seconds a closing handshake may take before the socket is dropped (end_all waits for it).
CLOSE_TIMEOUT = 2.0
#: Bytes queued for a page above which the store is told to hold back (its outbox keeps the rest).
HIGH_WATER = 256 * 1024
#: Silence after which a keepalive goes out (the page's provider reconnects after 30 s of none).
KEEPALIVE_AFTER = 10.0
#: Close code asking a page to come back later (y-websocket reconnects on it).
CLOSE_TRY_AGAIN = 1013


class Attachment(Protocol):
    """One page attached to one store and to presence (loop thread only)."""

    def receive_sync(self, message: bytes) -> None: ...
    def receive_awareness(self, update: bytes) -> None: ...
    def query_awareness(self) -> None: ...
    def writable(self) -> None: ...
    def detach(self) -> None: ...


class Backend(Protocol):
    """What the endpoint attaches pages to (loop thread only)."""

    def attach(
        self,
        room: str,
        send_sync: Callable[[bytes], None],
        send_awareness: Callable[[bytes], None],
        can_send: Callable[[], bool],
    ) -> Attachment: ...


@dataclass(frozen=True)
class StaticFile:
    """A file the endpoint serves over plain HTTP GET."""

    body: bytes
    content_type: str
    template: bool = False
    """Replace ``{{query}}`` in the body with the token's query string (for links in a page)."""


def is_loopback(host: str) -> bool:
    """True if ``host`` names only this machine (so no token is needed)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_CSP = "default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'"


def _headers(content_type: str, length: int) -> Headers:
    return Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(length)),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            # The token travels in URLs: never let it leak to another site in a Referer.
            ("Referrer-Policy", "no-referrer"),
            ("Content-Security-Policy", _CSP),
        ]
    )


class _Page:
    """One page's socket: a bounded send queue drained by a writer task."""

    def __init__(self, ws: ServerConnection, limits: Limits, now: float) -> None:
        self.ws = ws
        self.limits = limits
        self.conn = PageConnection(limits, now)
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.blocked = False
        self.wake = asyncio.Event()
        self.attachment: Attachment | None = None
        self.closing = False
        self.closer: asyncio.Future[None] | None = None

    def send(self, message: bytes) -> None:
        if self.closing:
            return
        self.queue.append(message)
        self.queued += len(message)
        self.wake.set()
        if self.queued > self.limits.max_send_buffer:
            # The page reads slower than the room writes; it resyncs by state vector on reconnect.
            log.warning("page %s: over %d bytes waiting, cut off", self.ws.remote_address, self.queued)
            self.close(CLOSE_TRY_AGAIN, "too slow")

    def send_awareness(self, update: bytes) -> None:
        self.send(awareness_message(update))

    def can_send(self) -> bool:
        if self.queued >= HIGH_WATER:
            self.blocked = True
            return False
        return not self.closing

    def close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            self.closer = asyncio.ensure_future(self.ws.close(code, reason))

    async def write(self) -> None:
        while True:
            if not self.queue:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), KEEPALIVE_AFTER)
                except asyncio.TimeoutError:
                    await self.ws.send(KEEPALIVE)
                    continue
            message = self.queue.popleft()
            await self.ws.send(message)
            self.queued -= len(message)
            if self.blocked and self.queued < HIGH_WATER // 2 and self.attachment is not None:
                self.blocked = False
                self.attachment.writable()


class WebServer:
    """A y-websocket endpoint on one port; start() and stop() run on its loop."""

    def __init__(
        self,
        backend: Backend,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        limits: Limits | None = None,
        files: dict[str, StaticFile] | None = None,
        allowed_origins: tuple[str, ...] = (),
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ConfigurationError("host must be a non-empty string (use 0.0.0.0 for every interface)")
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise ConfigurationError("the token must be a string of at least 16 characters")
        if token is None and not is_loopback(host):
            raise ConfigurationError(
                f"serving {host} lets other machines in: pass a token (mpstore.web.new_token())"
            )
        self.backend = backend
        self.host = host
        self.port = port
        self.token = token
        self.limits = limits or Limits()
        self.files = dict(files or {})
        self.allowed_origins = allowed_origins
        self._server: Server | None = None
        self._pages: set[_Page] = set()
        self._ids = itertools.count(1)

    # -- life cycle (on the loop) ----------------------------------------------------------------
    async def start(self) -> None:
        """Listen; the port is known after this returns."""
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=self.limits.max_message_size,
            max_queue=8,  # frames buffered per page: memory is at most max_queue x max_message_size
            compression=None,
            write_limit=HIGH_WATER,
            close_timeout=CLOSE_TIMEOUT,
        )
        sockets = list(self._server.sockets)
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every page (1001 going away: they reconnect later) and stop listening."""
        server, self._server = self._server, None
        if server is None:
            return
        # What the store handed a page before the stop reaches it (bounded: a page that does not
        # read is cut off after STOP_DRAIN_TIMEOUT and resyncs by diff when it comes back).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_DRAIN_TIMEOUT
        stalled_since, last = loop.time(), -1
        while True:
            queued = sum(page.queued for page in self._pages if page.queue and not page.closing)
            if not queued:
                break
            if queued != last:
                stalled_since, last = loop.time(), queued
            if loop.time() > deadline or loop.time() - stalled_since > STOP_STALL_TIMEOUT:
                log.warning("stopping with %d bytes still queued for pages that do not read", queued)
                break
            await asyncio.sleep(0.01)
        server.close(close_connections=True)
        await server.wait_closed()

    @property
    def connections(self) -> int:
        """Pages connected now."""
        return len(self._pages)

    # -- HTTP: token, origin, static files ---------------------------------------------------------
    def _authorised(self, request: Request) -> bool:
        query = urllib.parse.urlsplit(request.path).query
        offered = urllib.parse.parse_qs(query).get("token", [""])[-1]
        if self.token is not None:
            return hmac.compare_digest(offered.encode(), self.token.encode())
        # No token: loopback only. Refuse other sites' pages (cross-site WebSocket hijacking) and
        # names that are not ours (DNS rebinding).
        host = (request.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if not is_loopback(host):
            return False
        origin = request.headers.get("Origin")
        if origin is None or origin in self.allowed_origins:
            return True
        parsed = urllib.parse.urlsplit(origin)
        return parsed.scheme in ("http", "https") and is_loopback(parsed.hostname or "") and (
            parsed.port == self.port
        )

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self._authorised(request):
            log.info("refused %s %s: no valid token", connection.remote_address, request.path.split("?")[0])
            return connection.respond(http.HTTPStatus.FORBIDDEN, "A valid token is required.\n")
        path = urllib.parse.unquote(urllib.parse.urlsplit(request.path).path)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            file = self.files.get(path)
            if file is None:
                return connection.respond(http.HTTPStatus.NOT_FOUND, "Not found.\n")
            body = file.body
            if file.template:
                query = "" if self.token is None else "?" + urllib.parse.urlencode({"token": self.token})
                body = body.replace(b"{{query}}", html.escape(query).encode())
            return Response(200, "OK", _headers(file.content_type, len(body)), body)
        try:
            check_store_name(path[1:])
        except (TypeError, ValueError) as exc:
            return connection.respond(http.HTTPStatus.BAD_REQUEST, f"Bad room name: {exc}\n")
        if len(self._pages) >= self.limits.max_connections:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many pages.\n")
        return None

    # -- one page ------------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        room = urllib.parse.unquote(urllib.parse.urlsplit(ws.request.path).path)[1:]
        loop = asyncio.get_running_loop()
        page = _Page(ws, self.limits, loop.time())
        if len(self._pages) >= self.limits.max_connections:
            await ws.close(CLOSE_TRY_AGAIN, "too many pages")
            return
        self._pages.add(page)
        writer = asyncio.ensure_future(page.write())
        try:
            page.attachment = self.backend.attach(room, page.send, page.send_awareness, page.can_send)
            async for data in ws:
                event = page.conn.receive(data, loop.time())
                if isinstance(event, Violation):
                    log.warning("page %s: %s; closing", ws.remote_address, event.reason)
                    page.close(event.code, event.reason)
                    break
                try:
                    if isinstance(event, SyncReceived):
                        page.attachment.receive_sync(event.message)
                    elif isinstance(event, AwarenessReceived):
                        page.attachment.receive_awareness(event.update)
                    elif isinstance(event, AwarenessQuery):
                        page.attachment.query_awareness()
                except Exception:
                    log.exception("page %s: a message could not be handled", ws.remote_address)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("page %s: internal error; closing it", ws.remote_address)
        finally:
            page.closing = True
            self._pages.discard(page)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if page.attachment is not None:
                try:
                    page.attachment.detach()
                except Exception:
                    log.exception("page %s: detach failed", ws.remote_address)
            await ws.close()

    def __repr__(self) -> str:
        return f"<WebServer {self.host}:{self.port} pages={len(self._pages)}>"


def static_files(*names: str) -> dict[str, StaticFile]:
    """Files of ``mpstore/web/static`` by URL path (``/name``)."""
    types = {".js": "text/javascript; charset=utf-8", ".html": "text/html; charset=utf-8",
             ".css": "text/css; charset=utf-8", ".png": "image/png"}
    out: dict[str, StaticFile] = {}
    for name in names:
        path = STATIC_DIR / name
        kind = types.get(path.suffix, "application/octet-stream")
        out["/" + name] = StaticFile(path.read_bytes(), kind, template=path.suffix == ".html")
    return out
