"""serve(mc): the endpoint of one MultipeerConnectivity, on its core thread's loop."""

from __future__ import annotations

import logging
import secrets
import socket
import urllib.parse
from collections.abc import Callable
from typing import Any

from .._errors import Closed, ConfigurationError, EngineUnavailable
from ._protocol import Limits
from ._server import Attachment, WebServer, is_loopback, static_files

__all__ = ["Endpoint", "new_token", "serve"]

log = logging.getLogger("mpstore.web")

_WHITEBOARD_FILES = ("whiteboard.html", "whiteboard.js", "mpstore-values.js")


def new_token() -> str:
    """A fresh random token (128 bits, URL-safe) for pages on other machines."""
    return secrets.token_urlsafe(16)


class _Attached:
    """One page: its store participant, and its presence participant when there is presence."""

    def __init__(self, participant: Any, presence: Any | None) -> None:
        self.participant = participant
        self.presence = presence

    def receive_sync(self, message: bytes) -> None:
        self.participant.receive(message)

    def receive_awareness(self, update: bytes) -> None:
        if self.presence is not None:
            self.presence.receive(update)

    def query_awareness(self) -> None:
        if self.presence is not None:
            self.presence.query()

    def writable(self) -> None:
        self.participant.writable()

    def detach(self) -> None:
        try:
            if self.presence is not None:
                self.presence.detach()
        finally:
            self.participant.detach()


class _NodeBackend:
    """Pages become participants of the node's stores (Seam A) and of its presence (Seam B)."""

    def __init__(self, mc: Any) -> None:
        self.mc = mc
        self._ids = 0

    def attach(
        self,
        room: str,
        send_sync: Callable[[bytes], None],
        send_awareness: Callable[[bytes], None],
        can_send: Callable[[], bool],
    ) -> Attachment:
        manager = self.mc._node.store
        if manager is None:
            raise EngineUnavailable("the replicated store is not available in this build")
        self._ids += 1
        participant = manager.attach_participant(room, send_sync, can_send=can_send, display_name="browser")
        presence = _presence_of(self.mc)
        handle = None
        if presence is not None:
            try:
                handle = presence.attach_participant(f"~web-{self._ids}", send_awareness)
            except Exception:
                participant.detach()
                raise
        return _Attached(participant, handle)


def _presence_of(mc: Any) -> Any | None:
    """The node's presence core, if this build has one (Seam B)."""
    node_presence = getattr(mc._node, "presence", None)
    if node_presence is not None and hasattr(node_presence, "attach_participant"):
        return node_presence
    return None


def _lan_address() -> str:
    """This machine's address on its default route (a UDP connect sends no packet)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only the route is looked up
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


class Endpoint:
    """A running endpoint: its URLs, and close(). Made by :func:`serve`."""

    def __init__(self, mc: Any, server: WebServer) -> None:
        self._mc = mc
        self._server = server
        self._closed = False

    @property
    def host(self) -> str:
        """The address it listens on."""
        return self._server.host

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._server.port

    @property
    def token(self) -> str | None:
        """The token pages must present (None: loopback only, no token)."""
        return self._server.token

    def _base(self, scheme: str) -> str:
        host = self._server.host
        if host in ("0.0.0.0", "::", ""):
            host = _lan_address()
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self._server.port}"

    @property
    def ws_url(self) -> str:
        """The WebSocket server URL for a WebsocketProvider (room = store name, token in params)."""
        return self._base("ws")

    def url(self, board: str | None = None) -> str:
        """The whiteboard page's URL, with the token when there is one."""
        query: dict[str, str] = {}
        if board is not None:
            query["board"] = board
        if self._server.token is not None:
            query["token"] = self._server.token
        return self._base("http") + "/" + ("?" + urllib.parse.urlencode(query) if query else "")

    @property
    def connections(self) -> int:
        """Pages connected now."""
        return self._server.connections

    def close(self) -> None:
        """Close every page and stop listening; idempotent. ``mc.end_all()`` also closes it."""
        if self._closed:
            return
        self._closed = True
        try:
            self._mc._runtime.call_async(self._stop(), timeout=15)
        except Closed:
            pass

    async def _stop(self) -> None:
        node = self._mc._node
        if self._stop in node.attached_servers:
            node.attached_servers.remove(self._stop)
        await self._server.stop()

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<mpstore.web.Endpoint {self._base('http')} pages={self._server.connections}>"


def serve(
    mc: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    whiteboard: bool = True,
    limits: Limits | None = None,
    allowed_origins: tuple[str, ...] = (),
) -> Endpoint:
    """Let browsers join ``mc``'s stores and presence over y-websocket at ``ws://host:port/<store>``.

    Loopback by default, where no token is needed (only pages served from this endpoint, or
    from ``allowed_origins``, may connect). Any other ``host`` needs ``token``: every request
    must carry it as ``?token=...`` (for a WebsocketProvider, ``params: {token}``). With
    ``whiteboard`` the page is served at ``/`` and the value module at ``/mpstore-values.js``.
    It stops with ``close()`` or, at the latest, with ``mc.end_all()``.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigurationError(f"port must be an int in 0..65535, got {port!r}")
    if token is None and not is_loopback(host):
        raise ConfigurationError(f"serving {host} lets other machines in: pass token=mpstore.web.new_token()")
    files = static_files(*_WHITEBOARD_FILES) if whiteboard else static_files("mpstore-values.js")
    if whiteboard:
        files["/"] = files["/whiteboard.html"]
    server = WebServer(
        _NodeBackend(mc),
        host=host,
        port=port,
        token=token,
        limits=limits,
        files=files,
        allowed_origins=allowed_origins,
    )
    mc._check_open()
    endpoint = Endpoint(mc, server)

    async def start() -> None:
        await server.start()
        mc._node.attached_servers.append(endpoint._stop)

    mc._runtime.call_async(start(), timeout=15)
    return endpoint
