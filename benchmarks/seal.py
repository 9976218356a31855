"""The cost of sealing frames (group secret on Multipeer Connectivity): session throughput with
and without the seal, in one process, pure Python (as on Pythonista).

Two LinkSessions are opened with the same group secret, once with an empty channel binding
(Multipeer Connectivity: every frame sealed) and once with a binding (the LAN: TLS protects the
frames, nothing sealed), at MC's 16 KiB frame size. Each round sends a batch of messages one way
and pumps them through; the two variants alternate round by round. Prints MB/s medians with
min-max and the sealed/plain ratio, and the machine's load.

    python -m benchmarks.seal [--rounds 7] [--size 1024 65536]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from mpstore._auth import derive_key
from mpstore._session import Hello, HelloReceived, LinkSession, MessageReceived, SessionConfig
from mpstore._wire import Kind

KEY = derive_key("benchmark passphrase", "bench")
CONFIG = SessionConfig(max_frame_size=16 * 1024, max_receive_size=64 * 1024 * 1024, max_message_rate=None)


def _pump(a: LinkSession, b: LinkSession) -> int:
    received = 0
    for _ in range(1000):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for frame, _ in src.frames_to_send():
                dst.receive_frame(frame, 0.0)
                moved = True
        for s in (a, b):
            for e in s.events():
                if isinstance(e, HelloReceived):
                    s.accept()
                    moved = True
                elif isinstance(e, MessageReceived):
                    received += len(e.payload)
        if not moved:
            return received
    raise AssertionError("sessions never went quiet")


def _pair(binding: bytes) -> tuple[LinkSession, LinkSession]:
    a = LinkSession(Hello("a" * 32, "A", {}, LinkSession.new_nonce()), CONFIG, 0.0, KEY, binding)
    b = LinkSession(Hello("b" * 32, "B", {}, LinkSession.new_nonce()), CONFIG, 0.0, KEY, binding)
    _pump(a, b)
    assert a.is_open and b.is_open
    return a, b


def _round(binding: bytes, size: int, total: int) -> float:
    a, b = _pair(binding)
    payload = os.urandom(size)
    count = max(1, total // size)
    start = time.perf_counter()
    for _ in range(count):
        a.send(Kind.APP, payload)
    got = _pump(a, b)
    elapsed = time.perf_counter() - start
    assert got == count * size
    return got / elapsed / 1e6


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size", type=int, nargs="+", default=[1024, 65536])
    parser.add_argument("--total", type=int, default=8 * 1024 * 1024, help="bytes per round")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}")
    print(f"{'message':>9} {'plain MB/s (min-max)':>24} {'sealed MB/s (min-max)':>24} {'sealed/plain':>13}")
    for size in args.size:
        plain: list[float] = []
        sealed: list[float] = []
        for _ in range(args.rounds):  # interleaved
            plain.append(_round(b"tls binding", size, args.total))
            sealed.append(_round(b"", size, args.total))
        mp, ms = statistics.median(plain), statistics.median(sealed)
        print(
            f"{size:>9} {mp:>9.1f} ({min(plain):.1f}-{max(plain):.1f}){'':>5} "
            f"{ms:>9.1f} ({min(sealed):.1f}-{max(sealed):.1f}){'':>5} {ms / mp:>12.2f}"
        )
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
