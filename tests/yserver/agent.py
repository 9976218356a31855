"""A peer process for the server namespace tests: one MultipeerConnectivity over the LAN
transport (mDNS inside its group's namespaces), optionally connected to a Yjs server.

JSON lines on stdin/stdout: prints ``{"kind": "ready"}``, then one ``{"kind": "reply", ...}`` per
command: ``peers``, ``connect`` (url, dialect, token, store), ``server`` (state, connects),
``set_many`` (store, prefix, count: keys prefix0.. set to their index), ``items`` (store), ``end``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import mpstore
from mpstore.transports.lan import LanTransport


class Agent(mpstore.MultipeerConnectivity):
    def peer_added(self, peer: mpstore.PeerID) -> None:
        pass

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        pass


def _reply(**fields: Any) -> None:
    sys.stdout.write(json.dumps({"kind": "reply", **fields}) + "\n")
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--secret", default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    mc = Agent(
        args.name,
        "ysrvtest",
        transport=LanTransport(connect_timeout=2.0),
        peer_timeout=3.0,
        secret=args.secret,
    )
    server: Any = None
    sys.stdout.write(json.dumps({"kind": "ready", "id": mc.my_peer.id}) + "\n")
    sys.stdout.flush()
    try:
        for line in sys.stdin:
            try:
                req = json.loads(line)
                cmd = req["cmd"]
                if cmd == "peers":
                    _reply(peers=sorted(p.display_name for p in mc.get_peers()))
                elif cmd == "connect":
                    server = mc.connect_server(
                        req["url"],
                        req["store"],
                        dialect=req["dialect"],
                        token=req.get("token"),
                        max_backoff=2.0,
                    )
                    _reply()
                elif cmd == "server":
                    _reply(state=server.state if server else None, connects=server.connects if server else 0)
                elif cmd == "set_many":
                    d = mc.shared_dict(req["store"])
                    with d.batch():
                        for k in range(req["count"]):
                            d[f"{req['prefix']}{k}"] = k
                    _reply()
                elif cmd == "items":
                    _reply(items=mc.shared_dict(req["store"]).to_dict())
                elif cmd == "end":
                    _reply()
                    break
                else:
                    _reply(error=f"unknown command {cmd}")
            except Exception as exc:  # report, keep serving
                _reply(error=f"{type(exc).__name__}: {exc}")
    finally:
        mc.end_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
