"""A peer process for the namespace tests: one MultipeerConnectivity over the LAN transport.

Driven by the test over stdin/stdout with JSON lines: the agent prints ``{"kind": "ready", ...}``
once started, then one ``{"kind": "reply", ...}`` per command. Commands: ``peers``, ``send``
(message, to: null | [names]), ``inbox`` (messages received so far), ``events`` (peer added/
removed with wall-clock times), ``stop``, ``start``, ``set``/``get``/``items`` (a shared dict),
``poke`` (open raw TCP connections to an address, sending garbage or nothing), ``stats`` (what
reached this node, counted per remote host: links up, frames by kind before the session, and
messages by kind that the session let through), ``flood``/``flood_wait`` (send small messages
as fast as possible from a thread for some seconds), ``send_until_stuck`` (reliable messages to
one peer until an error), ``threads``, the file commands (see ``_file_command``), ``end``.
Logs go to stderr. The agent ends when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import threading
import time
from typing import Any

T_START = time.time()

import mpstore  # noqa: E402
from mpstore import _core  # noqa: E402
from mpstore.transports.lan import LanTransport  # noqa: E402

_STATS_LOCK = threading.Lock()
STATS: dict[str, dict[str, int]] = {"links": {}, "frames": {}, "messages": {}, "bytes": {}}


def _count(table: str, key: str, n: int = 1) -> None:
    with _STATS_LOCK:
        STATS[table][key] = STATS[table].get(key, 0) + n


def _host(address: str | None) -> str:
    return _core._host_of(address) if address else "?"


def _install_counters() -> None:
    """Count, per remote host, what reaches the node (core thread) before and after the session."""
    node_cls = _core.Node
    link_up, link_frames, on_message = node_cls.link_up, node_cls.link_frames, node_cls._on_message

    def counting_link_up(self: Any, link: Any, address: str | None) -> None:
        _count("links", _host(address))
        link_up(self, link, address)

    def counting_link_frames(self: Any, link: Any, frames: Any) -> None:
        entry = self.links.get(link)
        host = _host(entry.address if entry is not None else None)
        for frame in frames:
            _count("frames", f"{host}/{frame[0] if frame else -1}")
        link_frames(self, link, frames)

    def counting_on_message(self: Any, entry: Any, event: Any) -> None:
        key = f"{_host(entry.address)}/{event.kind}"
        _count("messages", key)
        _count("bytes", key, len(event.payload))
        on_message(self, entry, event)

    node_cls.link_up = counting_link_up  # type: ignore[method-assign]
    node_cls.link_frames = counting_link_frames  # type: ignore[method-assign]
    node_cls._on_message = counting_on_message  # type: ignore[method-assign]


class Agent(mpstore.MultipeerConnectivity):
    """Records what happens, for the test to read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lock = threading.Lock()
        self.inbox: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.files: dict[str, mpstore.FileTransfer] = {}
        self.received: list[dict[str, Any]] = []
        super().__init__(*args, **kwargs)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        with self.lock:
            self.events.append({"event": "added", "name": peer.display_name, "t": time.time()})

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        with self.lock:
            self.events.append({"event": "removed", "name": peer.display_name, "t": time.time()})

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        with self.lock:
            self.inbox.append({"from": from_peer.display_name, "message": message})

    def accept_file(self, transfer: mpstore.FileTransfer, from_peer: mpstore.PeerID) -> Any:
        with self.lock:
            self.files[f"in-{transfer.sha256[:8]}-{len(self.files)}"] = transfer
        return super().accept_file(transfer, from_peer)

    def file_received(self, transfer: mpstore.FileTransfer, from_peer: mpstore.PeerID) -> None:
        with self.lock:
            self.received.append(
                {"path": transfer.path, "sha256": transfer.sha256, "from": from_peer.display_name}
            )


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _reply(**fields: Any) -> None:
    sys.stdout.write(json.dumps({"kind": "reply", **fields}) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Run the agent until ``end`` or the end of stdin."""
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--service", default="nstest")
    p.add_argument("--peer-timeout", type=float, default=3.0)
    p.add_argument("--send-timeout", type=float, default=10.0)
    p.add_argument("--ip-version", default="v4")
    p.add_argument("--host", default=None, help="listen on this address only (e.g. 127.0.0.1)")
    p.add_argument("--static", action="append", default=[], help="host:port to dial")
    p.add_argument("--no-discovery", action="store_true")
    p.add_argument("--info", default="", help="discovery info as k=v,k=v")
    p.add_argument("--interface", action="append", default=None, help="interface name or address")
    p.add_argument("--secret", default=None, help="the group secret")
    p.add_argument("--max-message-rate", type=float, default=5000.0, help="0 for no limit")
    p.add_argument("--handshake-timeout", type=float, default=5.0)
    p.add_argument("--file-dir", default=None, help="accept offered files into this folder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")

    statics = []
    for item in args.static:
        host, _, port = item.rpartition(":")
        statics.append((host, int(port)))
    info = dict(kv.split("=", 1) for kv in args.info.split(",") if kv)
    transport = LanTransport(
        interfaces=args.interface,
        ip_version=args.ip_version,
        peers=statics,
        discovery=not args.no_discovery,
        host=args.host,
        connect_timeout=2.0,
    )
    t_create = time.time()
    _install_counters()
    mc = Agent(
        args.name,
        args.service,
        transport=transport,
        peer_timeout=args.peer_timeout,
        send_timeout=args.send_timeout,
        discovery_info=info,
        secret=args.secret,
        max_message_rate=args.max_message_rate or None,
        handshake_timeout=args.handshake_timeout,
        file_dir=args.file_dir,
    )
    stores: dict[str, Any] = {}
    sys.stdout.write(
        json.dumps(
            {
                "kind": "ready",
                "id": mc.my_peer.id,
                "port": transport.address[1],
                "t_start": T_START,
                "t_create": t_create,
            }
        )
        + "\n"
    )
    sys.stdout.flush()
    held: list[socket.socket] = []
    flood: dict[str, Any] = {}
    try:
        for line in sys.stdin:
            try:
                req = json.loads(line)
                cmd = req["cmd"]
                if cmd == "peers":
                    _reply(peers=[{"name": p.display_name, "id": p.id} for p in mc.get_peers()])
                elif cmd == "send":
                    to = req.get("to")
                    target: Any = None
                    if to is not None:
                        by_name = {p.display_name: p for p in mc.get_peers()}
                        target = [by_name[n] for n in to]
                    mc.send(req["message"], to_peer=target, reliable=req.get("reliable", True))
                    _reply()
                elif cmd == "inbox":
                    with mc.lock:
                        _reply(inbox=list(mc.inbox))
                elif cmd == "events":
                    with mc.lock:
                        _reply(events=list(mc.events))
                elif cmd == "send_until_stuck":
                    # Reliable messages of `size` bytes to one peer until `count` or an error.
                    peer = {p.display_name: p for p in mc.get_peers()}[req["to"]]
                    blob, sent, error = "x" * req["size"], 0, None
                    t0 = time.monotonic()
                    try:
                        for _ in range(req["count"]):
                            mc.send(blob, to_peer=peer)
                            sent += 1
                    except mpstore.MpstoreError as exc:
                        error = type(exc).__name__
                    _reply(sent=sent, failure=error, seconds=time.monotonic() - t0, rss_kib=_rss_kib())
                elif cmd == "threads":
                    _reply(threads=sorted(t.name for t in threading.enumerate()))
                elif cmd == "stop":
                    mc.stop_looking_for_peers()
                    _reply()
                elif cmd == "start":
                    mc.start_looking_for_peers()
                    _reply()
                elif cmd in ("set", "get", "items"):
                    name = req.get("store", "s")
                    if name not in stores:
                        stores[name] = mc.shared_dict(name)
                    d = stores[name]
                    if cmd == "set":
                        d[req["key"]] = req["value"]
                        _reply()
                    elif cmd == "get":
                        _reply(value=d.get(req["key"]))
                    else:
                        _reply(items=dict(d.items()))
                elif cmd == "poke":
                    for _ in range(req.get("count", 1)):
                        s = socket.create_connection((req["host"], req["port"]), timeout=3)
                        if req.get("garbage"):
                            s.sendall(bytes(range(256)) * 8)
                        held.append(s)
                    _reply()
                elif cmd == "unpoke":
                    for s in held:
                        s.close()
                    held.clear()
                    _reply()
                elif cmd == "stats":
                    with _STATS_LOCK:
                        _reply(**{k: dict(v) for k, v in STATS.items()})
                elif cmd == "flood":
                    flood.clear()
                    flood["thread"] = threading.Thread(
                        target=_flood,
                        args=(mc, float(req["seconds"]), bool(req.get("reliable", False)), flood),
                        daemon=True,
                    )
                    flood["thread"].start()
                    _reply()
                elif cmd == "flood_wait":
                    flood["thread"].join(timeout=req.get("timeout", 30))
                    _reply(sent=flood.get("sent", 0), errors=flood.get("errors", 0))
                elif cmd.startswith("file_") or cmd in ("rss", "sha"):
                    _reply(**_file_command(mc, cmd, req))
                elif cmd == "end":
                    mc.end_all()
                    _reply()
                    return 0
                else:
                    _reply(error=f"unknown command {cmd!r}")
            except Exception as exc:
                logging.exception("command failed")
                _reply(error=repr(exc))
    finally:
        for s in held:
            s.close()
        mc.end_all()
    return 0


def _sha(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _file_command(mc: Agent, cmd: str, req: dict[str, Any]) -> dict[str, Any]:
    """File commands: file_make, file_send, file_share, file_fetch, file_state, file_cancel,
    file_received, sha, rss (current and peak RSS in KiB)."""
    if cmd == "rss":
        peak = 0
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
        return {"rss_kib": _rss_kib(), "peak_kib": peak}
    if cmd == "sha":
        return {"sha": _sha(req["path"])}
    if cmd == "file_make":
        import os

        with open(req["path"], "wb") as f:
            left = int(req["size"])
            while left:
                block = os.urandom(min(left, 1 << 20))
                f.write(block)
                left -= len(block)
        return {"sha": _sha(req["path"])}
    if cmd == "file_send":
        to = req.get("to")
        target = None if to is None else {p.display_name: p for p in mc.get_peers()}[to]
        handle = mc.send_file(req["path"], target, name=req.get("name"))
        with mc.lock:
            key = f"out-{len(mc.files)}"
            mc.files[key] = handle
        return {"id": key}
    if cmd == "file_share":
        return {"token": mc.share_file(req["path"])}
    if cmd == "file_fetch":
        handle = mc.fetch_file(req["token"], req.get("folder"))
        with mc.lock:
            key = f"fetch-{len(mc.files)}"
            mc.files[key] = handle
        return {"id": key}
    if cmd == "file_received":
        with mc.lock:
            return {"received": list(mc.received)}
    with mc.lock:
        handles = dict(mc.files)
    if cmd == "file_state":
        return {
            "files": {
                key: {
                    "state": h.state,
                    "bytes_done": h.bytes_done,
                    "path": h.path,
                    "error": str(h.error) if h.error else None,
                    "peer": h.peer.display_name if h.peer is not None else None,
                }
                for key, h in handles.items()
            }
        }
    if cmd == "file_cancel":
        handles[req["id"]].cancel()
        return {}
    raise ValueError(f"unknown file command {cmd!r}")


def _flood(mc: Agent, seconds: float, reliable: bool, out: dict[str, Any]) -> None:
    """Send small messages to every peer as fast as possible for ``seconds`` (while it has any),
    ignoring the rates the peers advertise, as a hostile peer would."""
    mc._pace = lambda targets, reliable: targets  # type: ignore[method-assign]
    sent = errors = 0
    payload = "x" * 16
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not mc.get_peers():
            time.sleep(0.005)
            continue
        try:
            mc.send(payload, reliable=reliable)
            sent += 1
        except mpstore.MpstoreError:
            errors += 1
            time.sleep(0.001)
    out["sent"], out["errors"] = sent, errors


if __name__ == "__main__":
    sys.exit(main())
