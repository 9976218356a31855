"""MultipeerConnectivity: the original Pythonista wrapper's API, on mpstore's core."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from ._auth import derive_key
from ._core import Node, NodeOptions
from ._errors import (
    Closed,
    ConfigurationError,
    InvalidArgument,
    MessageTooLarge,
    NotConnected,
    SendTimeout,
    Timeout,
    TransferDeclined,
)
from ._filenode import FileLimits, FileManager, FileTransfer, hash_file
from ._files import FileRef
from ._peer import (
    PeerID,
    new_peer_id,
    validate_discovery_info,
    validate_display_name,
    validate_service_type,
)
from ._presence_node import Presence
from ._runtime import Runtime
from ._session import MIN_MESSAGE_RATE, SessionConfig
from ._values import exact_json
from ._wire import Kind
from .transports._factory import make_transport
from .transports.base import LocalNode, Transport

__all__ = ["MultipeerCommunications", "MultipeerConnectivity"]

log = logging.getLogger("mpstore")

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: Kind.APP as a plain int (an IntEnum member is slow to look up on the per-message path).
_APP = int(Kind.APP)
#: Reliable message bytes user threads may have posted to the core thread and not yet sent.
_MAX_POSTED = 4 * 1024 * 1024


class MultipeerConnectivity:
    """Find peers nearby and exchange JSON messages with them; subclass to handle events.

    A new object starts advertising and browsing at once and admits every peer that
    :meth:`accept_peer` accepts (on both sides). Callbacks run one at a time on one
    dispatcher thread; for each peer ``peer_added`` comes before any ``receive`` from it and
    ``peer_removed`` after the last.

    ``data_dir``: save every shared_dict of this object in that directory (SQLite; see
    docs/PERSISTENCE.md): a store shows its saved content at once and then exchanges only the
    difference with peers. Writes reach the disk within 50 ms; ``durable=True`` makes each write
    return only once it is on disk. One process at a time may open a data_dir.
    """

    def __init__(
        self,
        display_name: str = "Peer",
        service_type: str = "dev-srv",
        *,
        discovery_info: dict[str, str] | None = None,
        transport: Any = "auto",
        peer_timeout: float = 5.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_peers: int = 8,
        send_timeout: float = 10.0,
        engine: str | None = None,
        secret: str | bytes | None = None,
        handshake_timeout: float = 5.0,
        max_message_rate: float | None = 5000.0,
        data_dir: str | os.PathLike[str] | None = None,
        durable: bool = False,
        file_dir: str | os.PathLike[str] | None = None,
        file_limits: FileLimits | None = None,
    ) -> None:
        self._closed = True  # until fully started, so a failed __init__ leaves nothing behind
        validate_display_name(display_name)
        validate_service_type(service_type)
        info = validate_discovery_info(discovery_info)
        for name, seconds in (
            ("peer_timeout", peer_timeout),
            ("send_timeout", send_timeout),
            ("handshake_timeout", handshake_timeout),
        ):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
                raise ConfigurationError(f"{name} must be > 0 seconds, got {seconds!r}")
        for name, folder in (("data_dir", data_dir), ("file_dir", file_dir)):
            if folder is not None and not isinstance(folder, (str, os.PathLike)):
                raise ConfigurationError(
                    f"{name} must be a path (str or os.PathLike), not {type(folder).__name__}"
                )
        if not isinstance(max_message_size, int) or max_message_size < 1:
            raise ConfigurationError("max_message_size must be a positive number of bytes")
        if not isinstance(max_peers, int) or max_peers < 2:
            raise ConfigurationError("max_peers must be at least 2 (ourselves and one peer)")
        if max_message_rate is not None and not max_message_rate >= MIN_MESSAGE_RATE:
            raise ConfigurationError(
                f"max_message_rate must be at least {MIN_MESSAGE_RATE:g} messages per second (or None): "
                f"peers never pace themselves below that"
            )
        key = None if secret is None else derive_key(_secret_bytes(secret), service_type)
        self._service_type = service_type
        self._max_message_size = max_message_size
        self._send_timeout = send_timeout
        self._pacers: dict[str, _Pacer] = {}
        # Observers of our stores, held here (not by the node's threads) so that an object
        # whose observer is its own method can still be garbage-collected (and then ended).
        self._anchors: dict[int, object] = {}
        self._pacer_lock = threading.Lock()
        self._engine_name = engine
        self._servers: list[Any] = []
        self._transport: Transport = make_transport(transport)
        limit = self._transport.max_peers
        if limit is not None and max_peers > limit:
            raise ConfigurationError(
                f"max_peers={max_peers}, but the {self._transport.name} transport connects at "
                f"most {limit} devices (this one included)"
            )
        self._max_peers = max_peers
        local = LocalNode(new_peer_id(), display_name, service_type, info)
        config = SessionConfig(
            peer_timeout=float(peer_timeout),
            max_frame_size=self._transport.max_frame_size,
            max_receive_size=max(max_message_size, 64 * 1024 * 1024) + 1024,
            handshake_timeout=float(handshake_timeout),
            max_message_rate=max_message_rate,
        )
        options = NodeOptions(config, max_message_size, max_peers, key, stall_timeout=2 * send_timeout)
        self._runtime = Runtime(f"{display_name[:16]}-{local.peer_id[:6]}")
        self._node = Node(self._runtime, self._transport, local, options, weakref.ref(self))
        try:
            self._runtime.call(self._node.start, engine, data_dir, durable, timeout=30)
        except BaseException:
            _shutdown(self._runtime, self._node)
            raise
        self._closed = False
        self._finalizer = weakref.finalize(self, _shutdown, self._runtime, self._node)
        self._file_dir = None if file_dir is None else os.path.abspath(os.fspath(file_dir))
        files = FileManager(self._node, file_limits or FileLimits(), self._file_dir)
        self._runtime.call(setattr, self._node, "files", files)

    # -- callbacks to override --------------------------------------------------------------------
    def peer_added(self, peer: PeerID) -> None:
        """Called when a peer connects; override in a subclass."""
        print("Added peer", peer.display_name)

    def peer_removed(self, peer: PeerID) -> None:
        """Called when a peer disconnects or is lost; override in a subclass."""
        print("Removed peer", peer.display_name)

    def receive(self, message: Any, from_peer: PeerID) -> None:
        """Called with each message from a peer; override in a subclass."""
        print("Message from", from_peer.display_name, "-", message)

    def accept_peer(self, peer: PeerID) -> bool:
        """Return False to keep ``peer`` out (both sides ask; a refused peer is never added)."""
        return True

    def store_changed(self, store: Any, change: Any) -> None:
        """Called after any shared_dict of this object changed; override in a subclass."""

    def accept_file(self, transfer: FileTransfer, from_peer: PeerID) -> bool | str | os.PathLike[str]:
        """A peer offers a file: return a folder to save it in, True for ``file_dir``, or False.

        The default accepts into ``file_dir`` when one was given, and declines otherwise. Keep
        ``transfer`` to watch its progress. The name is sanitised before the file is created.
        """
        return self._file_dir is not None

    def file_received(self, transfer: FileTransfer, from_peer: PeerID) -> None:
        """Called when an accepted file arrived whole and its SHA-256 matched (``transfer.path``)."""
        print("File from", from_peer.display_name, "-", transfer.path)

    # -- files --------------------------------------------------------------------------------------
    def send_file(
        self, path: str | os.PathLike[str], to_peer: Any = None, *, name: str | None = None
    ) -> FileTransfer:
        """Offer a file to all peers (None), one PeerID or a list; return its transfer handle.

        The file is hashed first (in this thread), then each peer's ``accept_file`` decides and
        pulls it in chunks. ``handle.wait()`` returns when every peer has it verified, and raises
        mpstore.TransferFailed (TransferDeclined, TransferCancelled) for a peer that did not.
        """
        self._check_open()
        if not os.path.isfile(path):  # the caller's mistake first, whoever is connected
            raise FileNotFoundError(f"no such file: {os.fspath(path)!r}")
        targets = self._targets(to_peer, self._node.peers_snapshot)
        if not targets:
            raise TransferDeclined("no peer to send the file to")
        files = self._files()
        ref, hashes = _hash_checked(path, name, files.limits.max_file_size)
        result: FileTransfer = self._runtime.call(files.offer, os.fspath(path), ref, hashes, targets)
        return result

    def share_file(self, path: str | os.PathLike[str], *, name: str | None = None) -> dict[str, Any]:
        """Serve a file to peers that ask for it; return its token (a dict to put into a store).

        The token holds the file's SHA-256, size, name, media type and chunk-hash root, not its
        bytes: any peer that fetched it serves it too, so a late joiner can get it from whoever
        is connected. The file must not change while it is shared.
        """
        self._check_open()
        files = self._files()
        ref, hashes = _hash_checked(path, name, files.limits.max_file_size)
        self._runtime.call(files.register, os.fspath(path), ref, hashes)
        return ref.to_value()

    def unshare_file(self, token: Any) -> bool:
        """Stop serving a file shared, sent or received (its token); False if it was not served."""
        self._check_open()
        try:
            ref = FileRef.from_value(token)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        result: bool = self._runtime.call(self._files().unregister, ref.sha256)
        return result

    def fetch_file(self, token: Any, folder: str | os.PathLike[str] | None = None) -> FileTransfer:
        """Get the bytes of a shared file (its token) from any connected peer that has them.

        Returns at once with a transfer handle; ``handle.wait()`` gives the saved path. A file
        this object already holds is not fetched again (its path is returned).
        """
        self._check_open()
        files = self._files()
        try:
            ref = FileRef.from_value(token)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        if ref.size > files.limits.max_file_size:
            raise TransferDeclined(f"{ref.size} bytes is over max_file_size ({files.limits.max_file_size})")
        where = folder if folder is not None else self._file_dir
        if where is None:
            raise ConfigurationError("fetch_file needs a folder (or file_dir= on the constructor)")
        target = os.path.abspath(os.fspath(where))
        node = self._node

        def start() -> FileTransfer:
            sources = [p.id for p in node.connected_peers()]
            transfer = files.fetch(ref, target, sources)
            node.wake_files()
            return transfer

        result: FileTransfer = self._runtime.call(start)
        return result

    def _files(self) -> FileManager:
        files = self._node.files
        assert isinstance(files, FileManager)
        return files

    def presence_changed(self, peer: PeerID, state: Any) -> None:
        """Called when a peer's presence state changed (None: it went away); override it."""

    # -- presence ---------------------------------------------------------------------------------
    @property
    def presence(self) -> Presence:
        """Who is here and what they are doing: set our JSON state, read everyone else's."""
        self._check_open()
        presence = self._node.presence
        assert presence is not None
        return presence.facade

    # -- the replicated store ---------------------------------------------------------------------
    def shared_dict(
        self, name: str, *, persist: bool | str | os.PathLike[str] | None = None, durable: bool | None = None
    ) -> Any:
        """The replicated dictionary called ``name`` (the same object for the same name).

        ``persist``: None follows the object's ``data_dir``; False keeps this store in memory
        only; a path saves it in that directory. ``durable``: True makes each write to it
        return only once it is on disk. A later call may change them (see docs/PERSISTENCE.md);
        mpstore.ConfigurationError when that would mix or move saved data.
        """
        self._check_open()
        store = self._node.store
        if store is None:
            from ._errors import EngineUnavailable

            raise EngineUnavailable("the replicated store is not available in this build")
        return store.shared_dict(name, persist, durable)  # type: ignore[attr-defined]

    def connect_server(
        self,
        url: str,
        store: str,
        *,
        dialect: str = "y-websocket",
        document: str | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        on_error: Callable[[Any, Any], Any] | None = None,
        sync_timeout: float = 15.0,
        connect_timeout: float = 10.0,
        max_backoff: float = 30.0,
        resync_interval: float | None = None,
        ssl: Any = None,
    ) -> Any:
        """Connect store ``store`` to a document on a Yjs WebSocket server; return the connection.

        ``dialect`` is ``"y-websocket"`` (the document is the URL path: ``url/document``) or
        ``"hocuspocus"`` (``token`` is sent first). ``document`` defaults to the store's name.
        The server is one more participant of the store: this node relays between it and the
        local peers, and reconnects with backoff until ``close()``. A refused token calls
        ``on_error(connection, error)`` (dispatcher thread) and is not retried. The server's
        operator can read the store's content; the group secret is never sent to it.
        """
        self._check_open()
        from ._docsync import check_store_name
        from ._yserver import DIALECTS, LinkConfig
        from ._yserver_io import ServerConnection

        check_store_name(store)
        if dialect not in DIALECTS:
            raise ConfigurationError(f"dialect must be one of {', '.join(DIALECTS)}, not {dialect!r}")
        if token is not None and dialect != "hocuspocus":
            raise ConfigurationError(
                "token is sent by the hocuspocus dialect; a y-websocket server takes credentials in "
                "the URL query or headers"
            )
        if document is not None and type(document) is not str:
            raise InvalidArgument(f"document must be a str, not {type(document).__name__}")
        if document == "":
            raise ConfigurationError("document must not be empty (None: named like the store)")
        if token is not None and type(token) is not str:
            raise InvalidArgument(f"token must be a str, not {type(token).__name__}")
        if headers is not None and not (
            isinstance(headers, dict) and all(type(k) is str and type(v) is str for k, v in headers.items())
        ):
            raise InvalidArgument("headers must be a dict of str to str")
        if not max_backoff > 0:
            raise ConfigurationError(f"max_backoff must be > 0 seconds, got {max_backoff!r}")
        manager = self._node.store
        if manager is None:
            from ._errors import EngineUnavailable

            raise EngineUnavailable("the replicated store is not available in this build")
        try:
            config = LinkConfig(
                connect_timeout=connect_timeout,
                sync_timeout=sync_timeout,
                backoff_max=max(max_backoff, 0.5),
                resync_interval=resync_interval,
            )
        except TypeError as exc:  # a timeout that is not a number
            raise InvalidArgument(str(exc)) from None
        connection = ServerConnection(
            self._runtime,
            manager,
            store,
            url,
            dialect=dialect,
            document=document if document is not None else store,
            token=token,
            headers=headers,
            config=config,
            on_error=on_error,
            presence=getattr(self._node, "presence", None),
            ssl=ssl,
        )
        manager.shared_dict(store)  # type: ignore[attr-defined]
        self._servers.append(connection)
        # end_all stops it after the store handed out every write that returned (node.shutdown).
        self._node.attached_servers.append(connection.aclose)
        self._runtime.call(connection.start, timeout=10)
        return connection

    # -- properties -----------------------------------------------------------------------------
    @property
    def my_peer(self) -> PeerID:
        """This node's own PeerID."""
        return self._node.my_peer

    @property
    def service_type(self) -> str:
        """The service type peers must share."""
        return self._service_type

    @property
    def transport(self) -> Transport:
        """The transport in use (a MemoryTransport, LanTransport, ...)."""
        return self._transport

    # -- peers ---------------------------------------------------------------------------------------
    def get_peers(self) -> list[PeerID]:
        """The peers connected now, in the order they joined."""
        self._check_open()
        return list(self._node.peers_snapshot)

    def wait_for_peers(self, count: int = 1, timeout: float | None = None) -> list[PeerID]:
        """Block until at least ``count`` peers are connected; return them.

        Raises mpstore.Timeout (a TimeoutError) if ``timeout`` seconds pass first, ValueError
        if ``count`` is more than ``max_peers`` allows, and the transport's own failure (such as
        mpstore.ServiceTypeNotDeclared) if it has one.
        """
        self._check_open()
        if count > self._max_peers - 1:
            raise ConfigurationError(
                f"wait_for_peers(count={count}) can never succeed: at most {self._max_peers - 1} "
                f"peers can connect (max_peers={self._max_peers}, this device included)"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        node = self._node
        with node.changed:
            while len(node.peers_snapshot) < count:
                if self._closed:
                    raise Closed("this object was ended with end_all()")
                if self._transport.failure is not None:
                    raise self._transport.failure
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise Timeout(
                        f"{len(node.peers_snapshot)} of {count} peer(s) connected after {timeout} s"
                    )
                node.changed.wait(0.5 if remaining is None else min(remaining, 0.5))
            return list(node.peers_snapshot)

    def start_looking_for_peers(self) -> None:
        """Advertise and browse again, admitting new peers."""
        self._check_open()
        self._runtime.call(self._node.start_looking)

    def stop_looking_for_peers(self) -> None:
        """Stop advertising and browsing: connected peers stay, no new peer can join."""
        self._check_open()
        self._runtime.call(self._node.stop_looking)

    # -- messages ---------------------------------------------------------------------------------
    def send(self, message: Any, to_peer: Any = None, reliable: bool = True) -> None:
        """Send a JSON-serialisable message to all peers (None), one PeerID, or a list of them."""
        self._check_open()
        text = exact_json(message, "message")
        payload = text.encode("utf-8", "surrogatepass")
        if len(payload) > self._max_message_size:
            raise MessageTooLarge(
                f"message is {len(payload)} bytes as JSON; max_message_size is {self._max_message_size}"
            )
        connected = self._node.peers_snapshot
        targets = self._targets(to_peer, connected)
        if not targets:
            return
        if self._node.peer_rates:
            targets = self._pace(targets, reliable)
        if reliable:
            self._hand_over(targets, payload, explicit=to_peer is not None, seen=connected)
            return
        ids = [peer.id for peer in targets]
        if self._node.blocked:
            ids = [peer.id for peer in targets if peer.id not in self._node.blocked]
        self._runtime.post(self._node.send, Kind.APP, ids, payload, reliable)

    def _pace(self, targets: list[PeerID], reliable: bool) -> list[PeerID]:
        """Keep under each peer's advertised message rate: reliable sends wait (then
        SendTimeout), unreliable ones are dropped for the peers that are over it."""
        rates = self._node.peer_rates
        deadline = time.monotonic() + self._send_timeout
        kept = []
        for peer in targets:
            rate = rates.get(peer.id)
            if rate is None:
                kept.append(peer)
                continue
            with self._pacer_lock:
                pacer = self._pacers.get(peer.id)
                if pacer is None or pacer.rate != rate:
                    pacer = self._pacers[peer.id] = _Pacer(rate)
            while True:
                wait = pacer.take(time.monotonic())
                if wait <= 0:
                    kept.append(peer)
                    break
                if not reliable:
                    break
                if time.monotonic() + wait > deadline:
                    raise SendTimeout(
                        f"{peer!r} accepts {rate:g} messages per second and this send would have "
                        f"to wait {wait:.3g} s more for it, past send_timeout "
                        f"({self._send_timeout} s); nothing was sent"
                    )
                time.sleep(wait)
        return kept

    def _targets(self, to_peer: Any, connected: tuple[PeerID, ...]) -> list[PeerID]:
        if to_peer is None:
            return list(connected)
        if isinstance(to_peer, PeerID):
            wanted = [to_peer]
        elif isinstance(to_peer, Iterable) and not isinstance(to_peer, (str, bytes, dict)):
            wanted = list(to_peer)
            for item in wanted:
                if not isinstance(item, PeerID):
                    raise InvalidArgument(f"to_peer must hold PeerID objects, not {type(item).__name__}")
        else:
            raise InvalidArgument(
                f"to_peer must be None, a PeerID or a list of PeerIDs, not {type(to_peer).__name__}"
            )
        missing = [peer for peer in wanted if peer not in connected]
        if missing:
            names = ", ".join(repr(peer) for peer in missing)
            raise NotConnected(f"not connected to {names}; nothing was sent", missing[0])
        return list(dict.fromkeys(wanted))

    def _hand_over(
        self, targets: list[PeerID], payload: bytes, explicit: bool, seen: tuple[PeerID, ...] = ()
    ) -> None:
        """Post a reliable message to each target as soon as its link takes more.

        A target whose link is over its high-water mark does not hold back the others: they
        get the message at once and only that target is waited for, up to send_timeout. Then a
        broadcast (``explicit`` False) closes the links of the targets still held, as failed
        links, and returns; a send naming its peers raises SendTimeout instead. A named peer that
        is disconnected while the send waits raises NotConnected; a broadcast skips it.
        ``seen`` is the peers_snapshot the targets were chosen from (all of them connected then).
        """
        # Also waited for: the core taking _MAX_POSTED bytes posted before; without that rule
        # a fast sender would queue without bound on the core loop before the transport's
        # back-pressure reaches it.
        node = self._node
        size = len(payload)
        if not node.blocked:
            # The common case (no link over its mark, every target still connected), decided
            # under the lock without the bookkeeping below; anything else takes the full path.
            changed = node.changed
            changed.acquire()
            try:
                snapshot = node.peers_snapshot
                if (
                    not node.blocked
                    and (node.posted == 0 or node.posted + size <= _MAX_POSTED)
                    and (snapshot is seen or all(peer in snapshot for peer in targets))
                ):
                    node.posted += size
                    ids = [peer.id for peer in targets]
                    self._runtime.post_many(node.send_posted_many, (_APP, ids, payload))
                    return
            finally:
                changed.release()
        deadline = time.monotonic() + self._send_timeout
        pending = {peer.id: peer for peer in targets}
        sent: list[PeerID] = []
        with node.changed:
            while True:
                connected = {peer.id for peer in node.peers_snapshot}
                gone = [peer for peer_id, peer in pending.items() if peer_id not in connected]
                if gone:
                    if explicit:
                        raise NotConnected(
                            f"{gone[0]!r} was disconnected before this send could be handed to it; "
                            + _sent_note(sent),
                            gone[0],
                        )
                    for peer in gone:
                        del pending[peer.id]
                ready = [peer for peer_id, peer in pending.items() if peer_id not in node.blocked]
                if ready and (node.posted == 0 or node.posted + size <= _MAX_POSTED):
                    node.posted += size
                    self._runtime.post(node.send_posted, Kind.APP, [peer.id for peer in ready], payload)
                    for peer in ready:
                        del pending[peer.id]
                    sent.extend(ready)
                if not pending:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                node.changed.wait(remaining)
            held = [peer for peer_id, peer in pending.items() if peer_id in node.blocked]
            if explicit or not held:
                who = repr(held[0]) if held else "the core"
                raise SendTimeout(
                    f"{who} has not drained its send buffer for {self._send_timeout} s; " + _sent_note(sent)
                )
            node.posted += size
        # A broadcast: the peers still held are cut (they could not take one message within
        # send_timeout); any whose link drained meanwhile gets the message instead.
        self._runtime.call(
            node.send_posted,
            Kind.APP,
            [peer.id for peer in pending.values()],
            payload,
            f"its link took nothing for {self._send_timeout:g} s (send_timeout) while a broadcast waited",
            timeout=self._send_timeout,
        )

    # -- leaving ------------------------------------------------------------------------------------
    def disconnect(self) -> None:
        """Leave the session: every peer is removed on both sides and looking stops."""
        self._check_open()
        self._runtime.call(self._node.disconnect)

    def end_all(self) -> None:
        """Disconnect and release everything; idempotent. Any later call raises mpstore.Closed."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        _shutdown(self._runtime, self._node)  # closes the server connections too
        error = getattr(self._node.store, "close_error", None)
        if error is not None:
            raise error  # the last writes stayed in memory: the disk refused them

    def __enter__(self) -> MultipeerConnectivity:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.end_all()

    def __repr__(self) -> str:
        state = "ended" if self._closed else f"{len(self._node.peers_snapshot)} peers"
        return (
            f"<{type(self).__name__} {self.my_peer.display_name!r} "
            f"service={self._service_type!r} via {self._transport.name}, {state}>"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise Closed("this object was ended with end_all(); make a new one")


def _hash_checked(
    path: str | os.PathLike[str], name: str | None, max_size: int
) -> tuple[FileRef, list[bytes]]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {os.fspath(path)!r}")
    size = os.path.getsize(path)
    if size > max_size:
        raise TransferDeclined(f"{os.fspath(path)!r} is {size} bytes, over max_file_size ({max_size})")
    return hash_file(path, name)


class _Pacer:
    """A token bucket at a safe fraction of a peer's advertised rate (the store needs the rest)."""

    SHARE = 0.75

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._fill = rate * self.SHARE
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._at = time.monotonic()

    def take(self, now: float) -> float:
        """Take one token and return 0, or return how long to wait for one."""
        with self._lock:
            self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._fill)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self._fill


def _sent_note(sent: list[PeerID]) -> str:
    """How much of a failed reliable send went out, for its error message."""
    if not sent:
        return "nothing was sent"
    return "it was sent only to " + ", ".join(repr(peer) for peer in sent)


def _secret_bytes(secret: object) -> str | bytes:
    if isinstance(secret, bytearray):
        return bytes(secret)
    if not isinstance(secret, (str, bytes)):
        raise InvalidArgument(f"secret must be a str passphrase or bytes, not {type(secret).__name__}")
    if not secret:
        raise ConfigurationError("secret must not be empty")
    return secret


def _shutdown(runtime: Runtime, node: Node) -> None:
    """Stop a node and its threads (end_all, garbage collection and interpreter exit)."""
    if not runtime.closed:
        try:
            runtime.call_async(node.shutdown(), timeout=10)
        except Exception:
            log.exception("shutting down did not finish cleanly")
        with node.changed:
            node.changed.notify_all()
    runtime.stop()


#: The name the original wrapper's README uses for the same class.
MultipeerCommunications = MultipeerConnectivity
