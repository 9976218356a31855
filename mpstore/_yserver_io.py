"""The I/O around :mod:`mpstore._yserver`: a WebSocket client on the core loop, per store.

Everything here runs on the core thread's asyncio loop (the ``websockets`` asyncio client), so
frames reach the store's participant without a thread hop. The decisions (when to connect,
retry, give up, keep alive) are :class:`~mpstore._yserver.ServerLink`'s; this room opens and
closes sockets, moves frames, and schedules the link's next deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from . import _yserver as ys
from ._errors import Closed, ConfigurationError, ServerRefused, Timeout, TransportUnavailable
from ._runtime import Runtime

__all__ = ["ServerConnection"]

log = logging.getLogger("mpstore.yserver")

#: Bytes queued for the socket above which the store waits (participant back-pressure).
HIGH_WATER = 1 << 20
LOW_WATER = 256 << 10
#: Largest frame accepted from a server (a first sync of a large store is one frame).
MAX_FRAME = 256 << 20
#: Seconds close() waits for the frames queued for the server to be written, and how long it
#: waits for a socket whose queue does not move (the server is not reading).
DRAIN_TIMEOUT = 5.0
DRAIN_STALL = 0.5
#: Seconds close() waits for the socket's closing handshake (much less if the server stopped
#: reading: end_all's steps must fit in its 10 s together).
CLOSE_WAIT = 3.0
CLOSE_WAIT_STALLED = 0.5


def _websockets() -> Any:
    try:
        from websockets.asyncio import client
    except ImportError:  # pragma: no cover - depends on the installation
        raise TransportUnavailable(
            "connecting to a Yjs server needs the 'websockets' package: pip install 'mpstore[server]'"
        ) from None
    return client


def server_url(url: str, dialect: str, document: str) -> str:
    """The WebSocket URL to open: y-websocket puts the document in the path, Hocuspocus in frames."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ConfigurationError(f"a Yjs server URL looks like ws://host:port or wss://host, not {url!r}")
    if dialect == "hocuspocus":
        return url
    base, _, query = url.partition("?")
    return base.rstrip("/") + "/" + quote(document, safe="") + ("?" + query if query else "")


class ServerConnection:
    """One store's connection to a document on a Yjs server (made by ``connect_server``).

    It connects, syncs by state-vector diff, relays between the server and the local peers, and
    reconnects with backoff after any loss, until :meth:`close`. A server that refuses the token
    is not retried: :attr:`error` is set, ``on_error`` is called, :meth:`wait_synced` raises.
    """

    def __init__(
        self,
        runtime: Runtime,
        manager: Any,
        store: str,
        url: str,
        *,
        dialect: str,
        document: str,
        token: str | None,
        headers: dict[str, str] | None,
        config: ys.LinkConfig,
        on_error: Callable[[ServerConnection, ServerRefused], Any] | None,
        presence: Any = None,
        ssl: Any = None,
    ) -> None:
        self.store = store
        self.document = document
        self.dialect = dialect
        self.url = server_url(url, dialect, document)
        self._client = _websockets()
        self._runtime = runtime
        self._loop = runtime.loop
        self._manager = manager
        self._presence = presence
        self._headers = dict(headers or {})
        self._ssl = ssl
        self._on_error = on_error
        self._link = ys.ServerLink(ys.make_dialect(dialect, document), token=token, config=config)
        self._changed = threading.Condition()
        # Core-thread state.
        self._ws: Any = None
        self._gen = 0  # bumped whenever the current socket is abandoned
        self._tasks: set[asyncio.Task[Any]] = set()
        self._socket_task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._participant: Any = None
        self._presence_link: Any = None
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._blocked = False
        self._wake: asyncio.Event | None = None
        self._closing = False
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_in = 0
        self.bytes_out = 0

    # -- public (any thread) --------------------------------------------------------------------

    @property
    def state(self) -> str:
        """'connecting', 'syncing', 'synced', 'waiting' (to retry), 'failed' or 'closed'."""
        return self._link.state.value

    @property
    def synced(self) -> bool:
        """True while connected and synced with the server."""
        return self._link.state is ys.State.SYNCED

    @property
    def error(self) -> ServerRefused | None:
        """Why the server refused us (the link then stays down until reconnect()), else None."""
        return self._link.error

    @property
    def read_only(self) -> bool:
        """True if the server admitted us read-only (our edits do not reach it)."""
        return self._link.read_only

    @property
    def connects(self) -> int:
        """How many times a socket was opened."""
        return self._link.connects

    def wait_synced(self, timeout: float | None = None) -> None:
        """Block until synced with the server; ServerRefused, Closed or Timeout otherwise."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not self.synced:
                if self._link.state is ys.State.FAILED and self._link.error is not None:
                    raise self._link.error
                if self._link.state is ys.State.CLOSED:
                    raise Closed("this server connection was closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise Timeout(
                        f"not synced with {self.url} after {timeout} s (state {self.state}"
                        + (f", last problem: {self._link.last_reason})" if self._link.last_reason else ")")
                    )
                self._changed.wait(0.5 if remaining is None else min(remaining, 0.5))

    def reconnect(self, token: str | None = None) -> None:
        """Try again now (after a refusal, with a new ``token`` if given, or to skip a backoff wait)."""

        def core() -> None:
            if token is not None:
                self._link.token = token
            self._link.start(self._loop.time())
            self._pump()

        self._runtime.call(core, timeout=10)

    def close(self) -> None:
        """Disconnect for good; idempotent. The store and the local peers carry on."""
        if self._runtime.closed:
            return
        with contextlib.suppress(Closed, Timeout):
            self._runtime.call_async(self.aclose(), timeout=10)

    def __repr__(self) -> str:
        return f"<ServerConnection store={self.store!r} {self.dialect} {self.url} {self.state}>"

    # -- core thread ---------------------------------------------------------------------------

    def start(self) -> None:
        """Core thread: begin connecting."""
        self._link.start(self._loop.time())
        self._pump()

    async def aclose(self) -> None:
        """Core thread: let what is queued for the server go out (bounded), then close and wait
        (briefly) for the socket's closing handshake. Idempotent."""
        if self._closing:
            return
        self._closing = True
        drained = await self._drain()
        self._link.close(self._loop.time())
        self._pump()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_WAIT if drained else CLOSE_WAIT_STALLED)
        for task in pending:
            task.cancel()

    async def _drain(self) -> bool:
        # What the store handed the socket (end_all first lets the store hand out every write
        # that returned) is written before the close; closing drops the queue.
        deadline = self._loop.time() + DRAIN_TIMEOUT
        stalled_since, last = self._loop.time(), -1
        while self._ws is not None and self._queued > 0:
            now = self._loop.time()
            if self._queued != last:
                stalled_since, last = now, self._queued
            if now > deadline or now - stalled_since > DRAIN_STALL:
                log.warning("closing %s with %d bytes not yet sent", self.url, self._queued)
                return False
            await asyncio.sleep(0.01)
        return True

    def _pump(self) -> None:
        for effect in self._link.effects():
            try:
                self._do(effect)
            except Exception:
                log.exception("server connection %s: handling %s failed", self.url, type(effect).__name__)
        self._schedule()

    def _do(self, effect: ys.Effect) -> None:
        if isinstance(effect, ys.Send):
            self._enqueue(effect.frame)
        elif isinstance(effect, ys.SyncIn):
            if self._participant is not None:
                self._participant.receive(effect.message)
        elif isinstance(effect, ys.AwarenessIn):
            if self._presence_link is not None:
                self._presence_link.receive(effect.update)
        elif isinstance(effect, ys.QueryAwareness):
            query = getattr(self._presence_link, "query", None)
            if callable(query):
                query()
        elif isinstance(effect, ys.Connect):
            self._gen += 1
            self._socket_task = self._spawn(self._open(self._gen))
        elif isinstance(effect, ys.Disconnect):
            self._drop_socket(effect.code, effect.reason)
        elif isinstance(effect, ys.Opened):
            self._attach()
        elif isinstance(effect, ys.Resync):
            participant, self._participant = self._participant, None
            if participant is not None:
                participant.detach()  # a fresh participant exchanges state vectors again
            self._attach(presence=False)
        elif isinstance(effect, ys.Synced):
            log.info("synced store %r with %s", self.store, self.url)
            self._notify()
        elif isinstance(effect, (ys.Lost, ys.Finished)):
            self._detach()
            self._notify()
        elif isinstance(effect, ys.Failed):
            self._detach()
            self._notify()
            if self._on_error is not None:
                self._runtime.dispatch(self._on_error, self, effect.error)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._link.next_deadline()
        if deadline is not None and not self._runtime.closed:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._link.handle_timer(self._loop.time())
        self._pump()

    # -- the store and presence ------------------------------------------------------------------

    def _attach(self, presence: bool = True) -> None:
        self._participant = self._manager.attach_participant(
            self.store,
            self._send_sync,
            can_send=self._can_send,
            display_name=f"server {self.document}",
        )
        if presence and self._presence is not None:
            attach = getattr(self._presence, "attach_participant", None)
            if callable(attach):
                try:
                    self._presence_link = attach(f"{self._participant.id}", self._send_awareness)
                except Exception:
                    log.exception("presence could not attach the server %s; the store goes on", self.url)

    def _detach(self) -> None:
        participant, self._participant = self._participant, None
        if participant is not None:
            participant.detach()
        link, self._presence_link = self._presence_link, None
        if link is not None:
            link.detach()

    def _send_sync(self, message: bytes) -> None:
        if self._link.send_sync(message, self._loop.time()):
            self._pump()

    def _send_awareness(self, update: bytes) -> None:
        if self._link.send_awareness(update, self._loop.time()):
            self._pump()

    def _can_send(self) -> bool:
        return self._queued < HIGH_WATER

    # -- the socket ----------------------------------------------------------------------------

    async def _open(self, gen: int) -> None:
        client = self._client
        try:
            ws = await client.connect(
                self.url,
                additional_headers=self._headers or None,
                open_timeout=None,  # the link's connect_timeout decides
                max_size=MAX_FRAME,
                compression=None,
                proxy=None,
                ssl=self._ssl,
                user_agent_header="mpstore",
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if gen == self._gen:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                self._link.connection_lost(self._loop.time(), _describe(exc), http_status=status)
                self._pump()
            return
        if gen != self._gen or self._link.state is not ys.State.CONNECTING:
            await ws.close()
            return
        self._ws = ws
        self._queue.clear()
        self._queued = 0
        self._blocked = False
        self._wake = asyncio.Event()
        self._spawn(self._write(gen, ws))
        self._link.connection_made(self._loop.time())
        self._pump()
        code: int | None = None
        reason = "the server closed the connection"
        try:
            async for frame in ws:
                if gen != self._gen:
                    return
                if isinstance(frame, str):
                    log.debug("text frame from %s ignored", self.url)
                    continue
                self.frames_in += 1
                self.bytes_in += len(frame)
                self._link.frame_received(frame, self._loop.time())
                self._pump()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = _describe(exc)
        code = ws.close_code
        if ws.close_reason:
            reason = f"{reason}: {ws.close_reason}"
        if gen == self._gen:
            self._gen += 1  # ends this socket's writer
            if self._wake is not None:
                self._wake.set()
            self._ws = None
            self._queue.clear()
            self._queued = 0
            self._link.connection_lost(self._loop.time(), reason, code=code)
            self._pump()

    async def _write(self, gen: int, ws: Any) -> None:
        wake = self._wake
        assert wake is not None
        while gen == self._gen:
            if not self._queue:
                wake.clear()
                await wake.wait()
                continue
            frame = self._queue.popleft()
            try:
                await ws.send(frame)
            except Exception:
                return  # the reader reports the loss
            self.frames_out += 1
            self.bytes_out += len(frame)
            self._queued -= len(frame)
            if self._blocked and self._queued <= LOW_WATER:
                self._blocked = False
                if self._participant is not None:
                    self._participant.writable()

    def _enqueue(self, frame: bytes) -> None:
        if self._ws is None or self._wake is None:
            return
        self._queue.append(frame)
        self._queued += len(frame)
        if self._queued >= HIGH_WATER:
            self._blocked = True
        self._wake.set()

    def _drop_socket(self, code: int, reason: str) -> None:
        self._gen += 1
        ws, self._ws = self._ws, None
        self._queue.clear()
        self._queued = 0
        if self._wake is not None:
            self._wake.set()
        task, self._socket_task = self._socket_task, None
        if ws is None and task is not None and not task.done():
            task.cancel()  # a connect attempt in progress
        if ws is not None:
            self._spawn(_close_ws(ws, code, reason))


async def _close_ws(ws: Any, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code, reason.encode("utf-8")[:120].decode("utf-8", "ignore")), 5)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."
