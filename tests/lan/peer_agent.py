"""A peer process for the namespace tests: one MultipeerConnectivity over the LAN transport.

Driven by the test over stdin/stdout with JSON lines: the agent prints ``{"kind": "ready", ...}``
once started, then one ``{"kind": "reply", ...}`` per command. Commands: ``peers``, ``send``
(message, to: null | [names]), ``inbox`` (messages received so far), ``events`` (peer added/
removed with wall-clock times), ``stop``, ``start``, ``set``/``get``/``items`` (a shared dict),
``poke`` (open raw TCP connections to an address, sending garbage or nothing), ``end``.
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
from mpstore.transports.lan import LanTransport  # noqa: E402


class Agent(mpstore.MultipeerConnectivity):
    """Records what happens, for the test to read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lock = threading.Lock()
        self.inbox: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
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


def _reply(**fields: Any) -> None:
    sys.stdout.write(json.dumps({"kind": "reply", **fields}) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Run the agent until ``end`` or the end of stdin."""
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--service", default="nstest")
    p.add_argument("--peer-timeout", type=float, default=3.0)
    p.add_argument("--ip-version", default="v4")
    p.add_argument("--static", action="append", default=[], help="host:port to dial")
    p.add_argument("--no-discovery", action="store_true")
    p.add_argument("--info", default="", help="discovery info as k=v,k=v")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")

    statics = []
    for item in args.static:
        host, _, port = item.rpartition(":")
        statics.append((host, int(port)))
    info = dict(kv.split("=", 1) for kv in args.info.split(",") if kv)
    transport = LanTransport(
        ip_version=args.ip_version, peers=statics, discovery=not args.no_discovery, connect_timeout=2.0
    )
    t_create = time.time()
    mc = Agent(
        args.name, args.service, transport=transport, peer_timeout=args.peer_timeout, discovery_info=info
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


if __name__ == "__main__":
    sys.exit(main())
