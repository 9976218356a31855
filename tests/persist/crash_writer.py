"""A writer process for the crash test: writes to a saved store until it is killed.

    python crash_writer.py DATA_DIR HOST PORT START ENGINE MODE

Connects over the LAN transport (loopback, no discovery) to the peer at HOST:PORT, then writes
``{"c<i % 50>": i, "last": i}`` for i = START, START+1, ... (one update() each, a short pause
between) forever.
After each write returns it prints ``w <i>`` (MODE ``durable``: the store is durable, so the
write is on disk), and in MODE ``batched`` every 2000 writes it calls ``flush()`` and prints
``f <i>`` (every write up to i is on disk). Prints ``ready`` first. Only loopback traffic.
"""

from __future__ import annotations

import sys
import time

import mpstore
from mpstore.transports.lan import LanTransport

KEYS = 50
#: Between writes, so that 100 kills leave a history (tombstones) that reopens in about a second.
PAUSE = 0.0005


class Quiet(mpstore.MultipeerConnectivity):
    """No prints from callbacks: stdout carries only the protocol lines."""

    def peer_added(self, peer: mpstore.PeerID) -> None:
        pass

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        pass


def main() -> None:
    data_dir, host, port, start, engine, mode = sys.argv[1:7]
    transport = LanTransport(host="127.0.0.1", discovery=False, ip_version="v4", peers=[(host, int(port))])
    mc = Quiet("writer", "crash", transport=transport, data_dir=data_dir, engine=engine, peer_timeout=5.0)
    store = mc.shared_dict("s", durable=mode == "durable")
    mc.wait_for_peers(1, timeout=20)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    i = int(start)
    while True:
        store.update({f"c{i % KEYS}": i, "last": i})
        out.write(f"w {i}\n")
        if mode == "batched" and i % 2000 == 1999:
            store.flush()
            out.write(f"f {i}\n")
        out.flush()
        i += 1
        time.sleep(PAUSE)


if __name__ == "__main__":
    main()
