"""Sans-IO client of a Yjs WebSocket server: the two dialects and the connection's life.

No sockets, threads or clocks here: the I/O glue (``_yserver_io.py``) opens and closes the
socket when told, passes each frame in, passes the time in (``now``), and performs the
:class:`Effect` list that comes out, in order.

Dialects (what one WebSocket binary frame carries):

* ``y-websocket`` (``@y/websocket-server``, pycrdt-websocket, y-sweet, ...): one document per
  URL path; a frame is one y-protocols message: ``0`` sync, ``1`` awareness (var-bytes), ``2``
  auth (``0`` = permission denied + reason), ``3`` query awareness.
* ``hocuspocus`` (``@hocuspocus/server`` 4.x): every frame starts with the document name
  (var-string), then a message type: ``0`` sync / ``4`` sync reply (a y-protocols sync body),
  ``1`` awareness, ``2`` auth (``0`` token request, ``1`` permission denied + reason,
  ``2`` authenticated + scope), ``3`` query awareness, ``5`` stateless, ``7`` close (+ reason),
  ``8`` sync status (var-uint 1 saved / 0 refused). A client sends its token first; the server
  holds everything else until the token is accepted. A bare ``[9]`` is a ping, answered ``[10]``.

Life of a link (:class:`ServerLink`)::

    IDLE --start--> CONNECTING --opened--> SYNCING --server's step 2--> SYNCED
       ^                |  (connect_timeout)  | (sync_timeout)          |
       |                v                     v                         v
       +---------- WAITING (backoff with jitter) <------------- lost / closed
    any --permission denied / HTTP 401, 403 / close 4401, 4403--> FAILED (never retried)
    any --close()--> CLOSED

The backoff grows per failed attempt (``initial * factor**n``, capped) and is reset only once a
connection reached SYNCED, so a server that accepts and then drops us is not hammered either.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from . import _lib0, _syncproto
from ._errors import ConfigurationError, CorruptUpdate, ProtocolError, ServerRefused

__all__ = [
    "DIALECTS",
    "AwarenessIn",
    "Connect",
    "Disconnect",
    "Failed",
    "Finished",
    "Hocuspocus",
    "LinkConfig",
    "Lost",
    "Opened",
    "QueryAwareness",
    "Resync",
    "Send",
    "ServerLink",
    "State",
    "SyncIn",
    "Synced",
    "YWebsocket",
    "backoff_delay",
    "make_dialect",
]

log = logging.getLogger("mpstore.yserver")

DIALECTS: Final = ("y-websocket", "hocuspocus")

# y-protocols message types (shared by both dialects' bodies).
_SYNC: Final = 0
_AWARENESS: Final = 1
_AUTH: Final = 2
_QUERY_AWARENESS: Final = 3
# Hocuspocus only.
_SYNC_REPLY: Final = 4
_STATELESS: Final = 5
_CLOSE: Final = 7
_SYNC_STATUS: Final = 8
_PING: Final = 9
_PONG: Final = 10
_AUTH_TOKEN: Final = 0
_AUTH_DENIED: Final = 1
_AUTH_OK: Final = 2
#: The provider version we announce after the token (Hocuspocus logs it; 4.x reads it if present).
CLIENT_VERSION: Final = "mpstore"
#: Close codes after which retrying cannot help (Hocuspocus: Unauthorized, Forbidden).
AUTH_CLOSE_CODES: Final = frozenset({4401, 4403})
AUTH_HTTP_STATUSES: Final = frozenset({401, 403})
_MAX_TEXT: Final = 1 << 16


# --- lib0 reading and writing (a frame is small; errors become ProtocolError) -------------------


class _Reader(_lib0.Reader):
    __slots__ = ()
    error = ProtocolError
    prefix = "bad frame from the server: "

    def text(self) -> str:
        return self.read_var_string(_MAX_TEXT)


def _uint(n: int) -> bytes:
    return _lib0.encode_var_uint(n)


def _bytes(data: bytes) -> bytes:
    return _uint(len(data)) + data


def _text(text: str) -> bytes:
    return _bytes(text.encode("utf-8"))


# --- what a frame means -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    """One incoming frame, decoded: ``kind`` names it, the other fields depend on it."""

    kind: str  # sync | awareness | query-awareness | denied | authenticated | token-request
    #           | ping | close | sync-status | ignore
    data: bytes = b""
    text: str = ""


def _parse_sync_body(body: bytes) -> bytes:
    """Check that ``body`` (sync type, payload) is one y-protocols sync message; return it whole."""
    message = bytes((_SYNC,)) + body
    try:
        _syncproto.decode_message(message)
    except CorruptUpdate as exc:
        raise ProtocolError(f"bad sync message from the server: {exc}") from None
    return message


class YWebsocket:
    """The plain y-websocket dialect: one y-protocols message per frame, no document name."""

    name: Final = "y-websocket"
    needs_auth: Final = False

    def hello(self, token: str | None) -> list[bytes]:
        """Frames to send first on a new socket (none: auth, if any, is in the URL or headers)."""
        return []

    def wrap_sync(self, message: bytes) -> bytes:
        """A frame carrying one plain y-protocols sync message."""
        return bytes(message)

    def wrap_awareness(self, update: bytes) -> bytes:
        """A frame carrying one awareness update."""
        return bytes((_AWARENESS,)) + _bytes(update)

    def keepalive(self) -> bytes | None:
        """Nothing: the y-websocket server pings at the WebSocket level."""
        return None

    def parse(self, frame: bytes) -> _Parsed:
        """Decode one frame from the server (ProtocolError if it does not parse)."""
        r = _Reader(bytes(frame))
        kind = r.read_var_uint()
        if kind == _SYNC:
            return _Parsed("sync", _parse_sync_body(r.rest()))
        if kind == _AWARENESS:
            return _Parsed("awareness", r.read_var_bytes())
        if kind == _AUTH:
            if r.read_var_uint() == 0:
                return _Parsed("denied", text=r.text() if r.remaining() else "permission denied")
            return _Parsed("ignore")
        if kind == _QUERY_AWARENESS:
            return _Parsed("query-awareness")
        return _Parsed("ignore", text=f"message type {kind}")


class Hocuspocus:
    """The Hocuspocus dialect: the document name on every frame, the token first."""

    name: Final = "hocuspocus"
    needs_auth: Final = True

    def __init__(self, document: str) -> None:
        if not document:
            raise ConfigurationError("a Hocuspocus document name must not be empty")
        self.document = document
        self._prefix = _text(document)

    def hello(self, token: str | None) -> list[bytes]:
        """The auth frame: token (empty if none) and our version."""
        return [self._prefix + _uint(_AUTH) + _uint(_AUTH_TOKEN) + _text(token or "") + _text(CLIENT_VERSION)]

    def wrap_sync(self, message: bytes) -> bytes:
        """A frame carrying one plain y-protocols sync message (its leading 0 is the type)."""
        return self._prefix + bytes(message)

    def wrap_awareness(self, update: bytes) -> bytes:
        """A frame carrying one awareness update."""
        return self._prefix + bytes((_AWARENESS,)) + _bytes(update)

    def keepalive(self) -> bytes:
        """An empty awareness update: the server drops sockets silent for its timeout (60 s)."""
        return self.wrap_awareness(_uint(0))

    def pong(self) -> bytes:
        """The answer to a bare ping."""
        return bytes((_PONG,))

    def parse(self, frame: bytes) -> _Parsed:
        """Decode one frame from the server (ProtocolError if it does not parse)."""
        data = bytes(frame)
        if data == bytes((_PING,)):
            return _Parsed("ping")
        r = _Reader(data)
        address = r.text()
        # A session-aware server may answer to "name\0session"; we never send a session id.
        if address.split("\0", 1)[0] != self.document:
            return _Parsed("ignore", text=f"a frame for document {address!r}")
        kind = r.read_var_uint()
        if kind in (_SYNC, _SYNC_REPLY):
            return _Parsed("sync", _parse_sync_body(r.rest()))
        if kind == _AWARENESS:
            return _Parsed("awareness", r.read_var_bytes())
        if kind == _AUTH:
            sub = r.read_var_uint()
            if sub == _AUTH_DENIED:
                return _Parsed("denied", text=r.text() if r.remaining() else "permission-denied")
            if sub == _AUTH_OK:
                return _Parsed("authenticated", text=r.text() if r.remaining() else "")
            if sub == _AUTH_TOKEN:
                return _Parsed("token-request")
            return _Parsed("ignore", text=f"auth message {sub}")
        if kind == _QUERY_AWARENESS:
            return _Parsed("query-awareness")
        if kind == _CLOSE:
            return _Parsed("close", text=r.text() if r.remaining() else "")
        if kind == _SYNC_STATUS:
            return _Parsed("sync-status", text="saved" if r.read_var_uint() else "refused")
        return _Parsed("ignore", text=f"message type {kind}")


Dialect = YWebsocket | Hocuspocus


def make_dialect(name: str, document: str) -> Dialect:
    """The dialect called ``name`` (one of :data:`DIALECTS`) for ``document``."""
    if name == "y-websocket":
        return YWebsocket()
    if name == "hocuspocus":
        return Hocuspocus(document)
    raise ConfigurationError(f"unknown server dialect {name!r}: use one of {', '.join(DIALECTS)}")


# --- effects: what the glue must do, in order ----------------------------------------------------


@dataclass(frozen=True)
class Connect:
    """Open the socket (report connection_made or connection_lost)."""


@dataclass(frozen=True)
class Send:
    """Send one binary frame."""

    frame: bytes


@dataclass(frozen=True)
class Disconnect:
    """Close the socket (or abandon the attempt); report nothing more for it."""

    code: int
    reason: str


@dataclass(frozen=True)
class Opened:
    """The socket is up: attach the store (its step 1 goes out through send_sync)."""


@dataclass(frozen=True)
class SyncIn:
    """A plain y-protocols sync message from the server, for the store."""

    message: bytes


@dataclass(frozen=True)
class AwarenessIn:
    """An awareness update from the server, for presence."""

    update: bytes


@dataclass(frozen=True)
class QueryAwareness:
    """The server asks for our whole awareness state."""


@dataclass(frozen=True)
class Synced:
    """The server's step 2 arrived: both sides hold each other's state."""


@dataclass(frozen=True)
class Resync:
    """Time for a fresh state-vector exchange on the open socket: re-attach the store."""


@dataclass(frozen=True)
class Lost:
    """The socket is gone (a retry is scheduled): detach the store and presence."""

    reason: str


@dataclass(frozen=True)
class Failed:
    """The server refused us; no retry until restart(). Detach, and tell the user."""

    error: ServerRefused


@dataclass(frozen=True)
class Finished:
    """close() was called: detach; the link is finished."""


Effect = (
    Connect
    | Send
    | Disconnect
    | Opened
    | SyncIn
    | AwarenessIn
    | QueryAwareness
    | Synced
    | Resync
    | Lost
    | Failed
    | Finished
)


class State(enum.Enum):
    """Where a link is in its life (see the module docstring)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    SYNCING = "syncing"
    SYNCED = "synced"
    WAITING = "waiting"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True)
class LinkConfig:
    """Timing of a link, in seconds."""

    connect_timeout: float = 10.0
    sync_timeout: float = 15.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    backoff_factor: float = 2.0
    keepalive: float = 20.0
    #: While synced, exchange state vectors again this often (None: only on connection). For
    #: servers that can miss a message (Hocuspocus instances behind Redis pub/sub).
    resync_interval: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "sync_timeout", "backoff_initial", "backoff_max", "keepalive"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"{name} must be > 0 seconds")
        if self.resync_interval is not None and not self.resync_interval > 0:
            raise ConfigurationError("resync_interval must be > 0 seconds or None")
        if self.backoff_factor < 1:
            raise ConfigurationError("backoff_factor must be >= 1")
        if self.backoff_max < self.backoff_initial:
            raise ConfigurationError("backoff_max must be >= backoff_initial")


def backoff_delay(config: LinkConfig, attempt: int, uniform: Callable[[float, float], float]) -> float:
    """The wait before retry number ``attempt`` (0-based): half fixed, half random ("equal jitter").

    The random half spreads clients that lost the same server apart; the fixed half keeps each
    client from retrying sooner than the schedule allows.
    """
    ceiling = min(config.backoff_max, config.backoff_initial * config.backoff_factor ** min(attempt, 64))
    return ceiling / 2 + uniform(0.0, ceiling / 2)


class ServerLink:
    """One store's connection to one Yjs server document, without I/O."""

    def __init__(
        self,
        dialect: Dialect,
        *,
        token: str | None = None,
        config: LinkConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.dialect = dialect
        self.token = token
        self.config = config or LinkConfig()
        self._rng = rng or random.Random()
        self.state = State.IDLE
        self.attempts = 0  # failed attempts since the last SYNCED
        self.connects = 0  # sockets opened, over the link's life
        self.error: ServerRefused | None = None
        self.last_reason = ""
        self.read_only = False
        self._deadline: float | None = None
        self._last_sent = 0.0
        self._synced_at = 0.0
        self._effects: list[Effect] = []

    # -- outputs

    def effects(self) -> list[Effect]:
        """Return and clear what to do, in order."""
        out, self._effects = self._effects, []
        return out

    def next_deadline(self) -> float | None:
        """When handle_timer must next be called (None: no timer)."""
        deadlines = [] if self._deadline is None else [self._deadline]
        if self.state in (State.SYNCING, State.SYNCED) and self.dialect.keepalive() is not None:
            deadlines.append(self._last_sent + self.config.keepalive)
        if self.state is State.SYNCED and self.config.resync_interval is not None:
            deadlines.append(self._synced_at + self.config.resync_interval)
        return min(deadlines) if deadlines else None

    @property
    def connected(self) -> bool:
        """True while a socket is open (SYNCING or SYNCED)."""
        return self.state in (State.SYNCING, State.SYNCED)

    # -- inputs from the user

    def start(self, now: float) -> None:
        """Begin connecting (from IDLE), or retry now (from WAITING or FAILED, e.g. a new token)."""
        if self.state in (State.IDLE, State.WAITING, State.FAILED):
            if self.state is State.FAILED:
                self.attempts = 0
            self.error = None
            self._connect(now)

    def close(self, now: float) -> None:
        """End the link for good."""
        if self.state is State.CLOSED:
            return
        if self.state in (State.CONNECTING, State.SYNCING, State.SYNCED):
            self._effects.append(Disconnect(1000, "closed by the client"))
        self.state = State.CLOSED
        self._deadline = None
        self._effects.append(Finished())

    def send_sync(self, message: bytes, now: float) -> bool:
        """Queue one plain y-protocols sync message for the server; False if no socket is open."""
        if not self.connected:
            return False
        self._send(self.dialect.wrap_sync(message), now)
        return True

    def send_awareness(self, update: bytes, now: float) -> bool:
        """Queue one awareness update for the server; False if no socket is open."""
        if not self.connected:
            return False
        self._send(self.dialect.wrap_awareness(update), now)
        return True

    # -- inputs from the I/O glue

    def connection_made(self, now: float) -> None:
        """The socket opened."""
        if self.state is not State.CONNECTING:
            return
        self.state = State.SYNCING
        self.connects += 1
        self.read_only = False
        self._deadline = now + self.config.sync_timeout
        for frame in self.dialect.hello(self.token):
            self._send(frame, now)
        self._effects.append(Opened())

    def connection_lost(
        self, now: float, reason: str, *, code: int | None = None, http_status: int | None = None
    ) -> None:
        """The socket closed or could not open (``code``: WebSocket close code; ``http_status``:
        the status of a refused upgrade)."""
        if self.state not in (State.CONNECTING, State.SYNCING, State.SYNCED):
            return
        if http_status in AUTH_HTTP_STATUSES or code in AUTH_CLOSE_CODES:
            detail = f"HTTP {http_status}" if http_status in AUTH_HTTP_STATUSES else f"close code {code}"
            self._fail(f"{reason} ({detail})")
            return
        self._lose(now, reason, disconnect=False)

    def frame_received(self, frame: bytes, now: float) -> None:
        """One binary frame from the server."""
        if not self.connected:
            return
        try:
            parsed = self.dialect.parse(frame)
        except ProtocolError as exc:
            log.warning("%s: %s; reconnecting", self.dialect.name, exc)
            self._lose(now, str(exc), disconnect=True, code=1002)
            return
        kind = parsed.kind
        if kind == "sync":
            step = parsed.data[1]
            self._effects.append(SyncIn(parsed.data))
            if step == _syncproto.SYNC_STEP2:
                self._synced_at = now
                if self.state is State.SYNCING:
                    self.state = State.SYNCED
                    self.attempts = 0
                    self._deadline = None
                    self._effects.append(Synced())
        elif kind == "awareness":
            self._effects.append(AwarenessIn(parsed.data))
        elif kind == "query-awareness":
            self._effects.append(QueryAwareness())
        elif kind == "denied":
            self._fail(parsed.text or "permission denied")
        elif kind == "authenticated":
            self.read_only = parsed.text == "readonly"
            if self.read_only:
                log.warning("the server admitted this client read-only: local edits will not reach it")
        elif kind == "token-request":
            for frame_out in self.dialect.hello(self.token):
                self._send(frame_out, now)
        elif kind == "ping" and isinstance(self.dialect, Hocuspocus):
            self._send(self.dialect.pong(), now)
        elif kind == "close":
            self._lose(now, f"the server closed the document: {parsed.text}", disconnect=True)
        elif kind == "sync-status" and parsed.text == "refused":
            log.warning("the server refused an update (read-only access?)")
        elif kind == "ignore" and parsed.text:
            log.debug("%s: ignored %s", self.dialect.name, parsed.text)

    def handle_timer(self, now: float) -> None:
        """Act on deadlines that passed (call at or after next_deadline())."""
        deadline = self._deadline
        if deadline is not None and now >= deadline:
            if self.state is State.WAITING:
                self._connect(now)
                return
            if self.state is State.CONNECTING:
                self._lose(now, f"no connection within {self.config.connect_timeout} s", disconnect=True)
                return
            if self.state is State.SYNCING:
                self._lose(
                    now, f"the server did not sync within {self.config.sync_timeout} s", disconnect=True
                )
                return
        interval = self.config.resync_interval
        if self.state is State.SYNCED and interval is not None and now >= self._synced_at + interval:
            self._synced_at = now  # the next one counts from here even if this one gets no answer
            self._effects.append(Resync())
        if self.connected:
            frame = self.dialect.keepalive()
            if frame is not None and now >= self._last_sent + self.config.keepalive:
                self._send(frame, now)

    # -- internals

    def _send(self, frame: bytes, now: float) -> None:
        self._last_sent = now
        self._effects.append(Send(frame))

    def _connect(self, now: float) -> None:
        self.state = State.CONNECTING
        self._deadline = now + self.config.connect_timeout
        self._effects.append(Connect())

    def _lose(self, now: float, reason: str, *, disconnect: bool, code: int = 1000) -> None:
        was_open = self.connected
        if disconnect:
            self._effects.append(Disconnect(code, reason[:120]))
        self.last_reason = reason
        delay = backoff_delay(self.config, self.attempts, self._rng.uniform)
        self.attempts += 1
        self.state = State.WAITING
        self._deadline = now + delay
        log.info("%s link lost (%s); retrying in %.1f s", self.dialect.name, reason, delay)
        if was_open:
            self._effects.append(Lost(reason))

    def _fail(self, reason: str) -> None:
        was_open = self.connected
        if was_open or self.state is State.CONNECTING:
            self._effects.append(Disconnect(1000, "permission denied"))
        self.state = State.FAILED
        self._deadline = None
        self.last_reason = reason
        self.error = ServerRefused(
            f"the server refused this client: {reason}; not retrying (fix the token "
            "or the server's permissions, then call reconnect())"
        )
        log.warning("%s: %s", self.dialect.name, self.error)
        self._effects.append(Failed(self.error))
