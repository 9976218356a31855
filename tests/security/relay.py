"""A man in the middle for the namespace tests: relays TCP connections, or re-terminates TLS.

Run inside a network namespace::

    python -m tests.security.relay --listen 0.0.0.0:7000 --target 198.18.0.2:5555 \\
        --mode tcp|tls --record DIR

``tcp`` forwards the bytes both ways untouched (it sees only TLS ciphertext). ``tls`` accepts TLS
with its own certificate (signed by the LAN transport's well-known CA, whose key anyone can
derive, so both honest peers' TLS checks pass) and opens its own TLS connection to the target:
it sees and forwards every plaintext frame. Connection ``N``'s bytes are recorded in
``DIR/cN-up.bin`` (client to target) and ``DIR/cN-down.bin``; one JSON line per connection event
goes to ``DIR/events.jsonl``. Prints ``ready`` once listening; runs until killed.

``--replay FILE --target host:port`` instead opens one TCP connection, sends the file's bytes,
reads until the target hangs up (or ``--wait`` seconds pass), prints a JSON summary and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class Relay:
    """Accepts clients and connects each one to the target, copying bytes both ways."""

    def __init__(self, target: tuple[str, int], mode: str, record: Path) -> None:
        self.target = target
        self.mode = mode
        self.record = record
        self.counter = itertools.count()
        self.server_ctx: ssl.SSLContext | None = None
        self.client_ctx: ssl.SSLContext | None = None
        if mode == "tls":
            from mpstore.transports._lan._tls import TlsIdentity

            identity = TlsIdentity("relay")
            self.server_ctx, self.client_ctx = identity.server_context, identity.client_context

    def event(self, **fields: Any) -> None:
        with open(self.record / "events.jsonl", "a") as f:
            f.write(json.dumps({"t": time.time(), **fields}) + "\n")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = next(self.counter)
        self.event(conn=n, event="accepted", peer=str(writer.get_extra_info("peername")))
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(
                    *self.target,
                    ssl=self.client_ctx,
                    server_hostname="mpstore" if self.client_ctx else None,
                ),
                5,
            )
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            self.event(conn=n, event="target unreachable", error=repr(exc))
            writer.close()
            return
        self.event(conn=n, event="connected")
        with (
            open(self.record / f"c{n}-up.bin", "wb") as up,
            open(self.record / f"c{n}-down.bin", "wb") as down,
        ):
            await asyncio.gather(
                self.pipe(reader, up_writer, up), self.pipe(up_reader, writer, down), return_exceptions=True
            )
        self.event(conn=n, event="closed")

    @staticmethod
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: Any) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                log.write(data)
                log.flush()
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def _serve(args: argparse.Namespace) -> None:
    record = Path(args.record)
    record.mkdir(parents=True, exist_ok=True)
    relay = Relay(_split(args.target), args.mode, record)
    host, port = _split(args.listen)
    server = await asyncio.start_server(relay.handle, host, port, ssl=relay.server_ctx)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def _replay(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.replay).read_bytes()
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection(*_split(args.target))
    writer.write(data)
    received = 0
    hung_up = False
    with contextlib.suppress(OSError, asyncio.TimeoutError, ConnectionError):
        while time.monotonic() - t0 < args.wait:
            chunk = await asyncio.wait_for(reader.read(65536), args.wait)
            if not chunk:
                hung_up = True
                break
            received += len(chunk)
    writer.close()
    return {"sent": len(data), "received": received, "hung_up": hung_up, "seconds": time.monotonic() - t0}


def main() -> int:
    """Relay until killed, or replay one recording and exit."""
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="0.0.0.0:7000")
    p.add_argument("--target", required=True)
    p.add_argument("--mode", choices=("tcp", "tls"), default="tcp")
    p.add_argument("--record", default=".")
    p.add_argument("--replay")
    p.add_argument("--wait", type=float, default=5.0)
    args = p.parse_args()
    if args.replay:
        print(json.dumps(asyncio.run(_replay(args))), flush=True)
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
