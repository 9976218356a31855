"""File transfer over the LAN transport, against a plain asyncio TLS transfer in the same run.

    python benchmarks/files.py [--size-mib 200] [--repeat 3]

Two OS processes on loopback (127.0.0.1), sender and receiver, for both contestants:

* baseline: asyncio TLS 1.3 (the same certificates as the LAN transport), the sender reads the
  file in 256 KiB blocks and writes them with ``drain()``; the receiver writes what arrives to a
  file. No hashing, no framing: the floor of "read, encrypt, send, decrypt, write".
* mpstore: ``send_file`` to a receiver that accepts into a folder; the time runs from the call
  (which hashes the file first) to ``wait()`` returning (the receiver verified the SHA-256 and
  renamed the file into place). "transfer only" starts when the offer is sent (hash excluded).

Then the message latency: the sender sends a 100-byte message every 10 ms to the receiver, which
records the one-way delay (CLOCK_MONOTONIC is shared by processes on one machine), while idle
and while a file is in flight. Repeats are interleaved; medians with min-max are printed, the CPU
seconds each process spent on the transfer per GiB, and the machine's load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import mpstore
from mpstore.transports.lan import LanTransport

BLOCK = 256 * 1024


def _cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _out(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


# -- baseline: plain asyncio TLS -----------------------------------------------------------------


def _tls_receiver(folder: str, size: int) -> None:
    from mpstore.transports._lan._tls import TlsIdentity

    ident = TlsIdentity()
    done = asyncio.Event()

    spent: list[float] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        spent.append(_cpu())
        got = 0
        with open(os.path.join(folder, "plain.bin"), "wb") as f:
            while got < size:
                data = await reader.read(1 << 20)
                if not data:
                    break
                f.write(data)
                got += len(data)
        spent[0] = _cpu() - spent[0]
        writer.write(b"k")
        await writer.drain()
        writer.close()
        done.set()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ident.server_context)
        _out(port=server.sockets[0].getsockname()[1])
        await done.wait()
        server.close()

    asyncio.run(main())
    _out(cpu=spent[0])


def _tls_sender(path: str, port: int) -> None:
    from mpstore.transports._lan._tls import TlsIdentity

    ident = TlsIdentity()

    async def main() -> tuple[float, float]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ident.client_context, server_hostname="mpstore"
        )
        t0, c0 = time.perf_counter(), _cpu()
        with open(path, "rb") as f:
            while block := f.read(BLOCK):
                writer.write(block)
                await writer.drain()
        await reader.readexactly(1)
        seconds, cpu = time.perf_counter() - t0, _cpu() - c0
        writer.close()
        return seconds, cpu

    seconds, cpu = asyncio.run(main())
    _out(seconds=seconds, cpu=cpu)


# -- mpstore -------------------------------------------------------------------------------------


class _Peer(mpstore.MultipeerConnectivity):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.delays: list[float] = []
        self.cpu: list[float] = []
        self.ended = threading.Event()
        super().__init__(*args, **kwargs)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        pass

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        pass

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        if message == "end":
            self.ended.set()
        elif isinstance(message, dict) and "t" in message:
            self.delays.append(time.monotonic() - message["t"])

    def accept_file(self, transfer: mpstore.FileTransfer, from_peer: mpstore.PeerID) -> bool:
        self.cpu.append(_cpu())
        return True

    def file_received(self, transfer: mpstore.FileTransfer, from_peer: mpstore.PeerID) -> None:
        self.cpu.append(_cpu())


def _mp_receiver(folder: str, window: int, target_ms: float) -> None:
    transport = LanTransport(host="127.0.0.1", discovery=False, ip_version="v4")
    limits = mpstore.FileLimits(window=window, target_delay=target_ms / 1000)
    mc = _Peer("rx", "filebench", transport=transport, file_dir=folder, peer_timeout=10.0, file_limits=limits)
    _out(port=transport.address[1])
    try:
        mc.ended.wait(600)
    finally:
        mc.end_all()
    _out(delays=mc.delays, cpu=mc.cpu[-1] - mc.cpu[0] if len(mc.cpu) == 2 else 0.0)


def _mp_sender(path: str, port: int, mode: str) -> None:
    transport = LanTransport(host="127.0.0.1", discovery=False, ip_version="v4", peers=[("127.0.0.1", port)])
    mc = _Peer("tx", "filebench", transport=transport, peer_timeout=10.0)
    try:
        (peer,) = mc.wait_for_peers(1, timeout=30)
        stop = threading.Event()
        pad = "x" * 60

        def ping() -> None:
            while not stop.is_set():
                mc.send({"t": time.monotonic(), "p": pad}, peer)
                time.sleep(0.01)

        result: dict[str, Any] = {}
        if mode == "idle":
            pinger = threading.Thread(target=ping)
            pinger.start()
            time.sleep(2.0)
        else:
            t0, c0 = time.perf_counter(), _cpu()
            ref, hashes = mpstore._filenode.hash_file(path)
            t_hashed = time.perf_counter()
            files = mc._files()
            handle = mc._runtime.call(files.offer, path, ref, hashes, [peer])
            pinger = threading.Thread(target=ping)
            pinger.start()
            handle.wait(600)
            t1 = time.perf_counter()
            result = {"seconds": t1 - t0, "transfer_seconds": t1 - t_hashed, "cpu": _cpu() - c0}
        stop.set()
        pinger.join()
        mc.send("end", peer)
        time.sleep(0.3)
    finally:
        mc.end_all()
    _out(**result)


# -- driver --------------------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )


def _line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("a benchmark process ended early")
    return dict(json.loads(line))


def _run_pair(receiver: list[str], sender: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    rx = _spawn(*receiver)
    try:
        port = _line(rx)["port"]
        tx = _spawn(*sender, "--port", str(port))
        sent = _line(tx)
        tx.wait(60)
        got = _line(rx)
        rx.wait(60)
        return sent, got
    finally:
        for p in (rx,):
            if p.poll() is None:
                p.kill()
                p.wait()


def _fmt(values: list[float], unit: str = "", scale: float = 1.0) -> str:
    v = sorted(x * scale for x in values)
    return f"{statistics.median(v):.1f}{unit} (min {v[0]:.1f}, max {v[-1]:.1f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=200)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("role", nargs="?", default="driver")
    p.add_argument("--path", default="")
    p.add_argument("--folder", default="")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--size", type=int, default=0)
    p.add_argument("--mode", default="file")
    p.add_argument("--window", type=int, default=mpstore.FileLimits().window, help="FileLimits.window")
    p.add_argument(
        "--target-ms",
        type=float,
        default=mpstore.FileLimits().target_delay * 1000,
        help="FileLimits.target_delay",
    )
    args = p.parse_args()
    if args.role == "tls-receiver":
        return _tls_receiver(args.folder, args.size)
    if args.role == "tls-sender":
        return _tls_sender(args.path, args.port)
    if args.role == "mp-receiver":
        return _mp_receiver(args.folder, args.window, args.target_ms)
    if args.role == "mp-sender":
        return _mp_sender(args.path, args.port, args.mode)

    size = args.size_mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="mpstore-filebench-") as tmp:
        src = os.path.join(tmp, "src.bin")
        with open(src, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1024 * 1024))
        print(f"file: {args.size_mib} MiB, two processes on 127.0.0.1, {args.repeat} interleaved repeats")
        print(f"receiver's window: at most {args.window} chunks, target queueing delay {args.target_ms:g} ms")
        print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
        plain, total, transfer, idle_p50, busy_p50 = [], [], [], [], []
        cpu: dict[str, list[float]] = {"plain tx": [], "plain rx": [], "mpstore tx": [], "mpstore rx": []}
        gib = args.size_mib / 1024
        busy_all: list[float] = []
        for r in range(args.repeat):
            for folder in (os.path.join(tmp, n) for n in ("plain", "mp")):
                if os.path.isdir(folder):
                    for name in os.listdir(folder):
                        os.unlink(os.path.join(folder, name))
                os.makedirs(folder, exist_ok=True)
            sent, got = _run_pair(
                ["tls-receiver", "--folder", os.path.join(tmp, "plain"), "--size", str(size)],
                ["tls-sender", "--path", src],
            )
            plain.append(args.size_mib / sent["seconds"])
            cpu["plain tx"].append(sent["cpu"] / gib)
            cpu["plain rx"].append(got["cpu"] / gib)
            tuning = ["--window", str(args.window), "--target-ms", str(args.target_ms)]
            sent, got = _run_pair(
                ["mp-receiver", "--folder", os.path.join(tmp, "mp"), *tuning], ["mp-sender", "--path", src]
            )
            total.append(args.size_mib / sent["seconds"])
            cpu["mpstore tx"].append(sent["cpu"] / gib)
            cpu["mpstore rx"].append(got["cpu"] / gib)
            transfer.append(args.size_mib / sent["transfer_seconds"])
            busy_p50.append(statistics.median(got["delays"]) * 1000)
            busy_all += got["delays"]
            _, got = _run_pair(
                ["mp-receiver", "--folder", os.path.join(tmp, "mp")], ["mp-sender", "--mode", "idle"]
            )
            idle_p50.append(statistics.median(got["delays"]) * 1000)
            print(f"  repeat {r + 1}: plain {plain[-1]:.0f} MiB/s, mpstore {total[-1]:.0f} MiB/s")
        ratio = [t / p for t, p in zip(total, plain, strict=True)]
        ratio_t = [t / p for t, p in zip(transfer, plain, strict=True)]
        print(f"plain asyncio TLS:          {_fmt(plain, ' MiB/s')}")
        print(f"mpstore send_file (total):  {_fmt(total, ' MiB/s')}  ratio {_fmt(ratio, 'x')}")
        print(f"mpstore (transfer only):    {_fmt(transfer, ' MiB/s')}  ratio {_fmt(ratio_t, 'x')}")
        busy_all.sort()
        p99 = busy_all[int(len(busy_all) * 0.99)] * 1000 if busy_all else float("nan")
        print(f"message latency p50, idle:        {_fmt(idle_p50, ' ms')}")
        print(f"message latency p50, file moving: {_fmt(busy_p50, ' ms')}  (p99 over all runs {p99:.1f} ms)")
        for side, values in cpu.items():
            print(
                f"CPU s per GiB, {side + ':':11} {_fmt(values, ' s')}  (from the connection/offer to the end)"
            )
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
