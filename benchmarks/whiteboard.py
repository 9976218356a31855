"""The whiteboard's figures: a page in headless Chromium and a Python replica, mpstore vs pycrdt-websocket.

    python benchmarks/whiteboard.py [--rounds 3] [--strokes 200] [--burst 500]

Each system is a server process that serves the same page (mpstore/web/static: the whiteboard,
its bundle) and holds the board's document; the Python replica measured is that process's own
(mpstore: ``mc.shared_dict`` with its observer on the dispatcher thread; pycrdt-websocket: the
room's ``ydoc`` with a Map observer on the server loop). The page is Debian's chromium, driven by
Playwright from this process. Per round and system:

1. page -> Python: the page writes one stroke (40 points) every 10 ms carrying its send time
   (performance.timeOrigin + now(), the wall clock); the server records arrival - send.
2. Python -> page: the server writes one stroke every 10 ms with its send time; the page
   records arrival - send in a Y.Map observer.
3. strokes/s: the page writes ``--burst`` strokes back to back; the rate is strokes divided by
   the time from the first write to the server holding the last.

Rounds alternate the systems; figures are medians over all samples of all rounds (p50, p99), the
rate the median of the rounds with min-max; the ratio is mpstore / pycrdt-websocket. The load
average is printed: the machine is shared, so read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

ROOM = "whiteboard/bench"
POINTS = [[100 + i * 5, 200 + (i * 7) % 50] for i in range(40)]


# -- the server processes -----------------------------------------------------------------------


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _on_value(key: str, value: Any) -> None:
    if key.startswith("stroke/page-") and isinstance(value, dict) and "t" in value:
        _emit({"key": key, "lat": time.time() * 1000 - value["t"], "at": time.time() * 1000})


def _commands(write: Any) -> None:
    """stdin: 'write N' -> N strokes 10 ms apart, then 'written'; 'quit' ends."""
    for line in sys.stdin:
        cmd = line.split()
        if cmd[:1] == ["write"]:
            for i in range(int(cmd[1])):
                write(f"stroke/py-{i:06d}", {"points": POINTS, "colour": "#1971c2", "width": 4,
                                             "author": "py", "t": time.time() * 1000})
                time.sleep(0.01)
            _emit({"written": int(cmd[1])})
        elif cmd[:1] == ["quit"]:
            return


def serve_mpstore() -> None:
    import mpstore
    from mpstore.web import serve

    mc = mpstore.MultipeerConnectivity("bench", "wbbench", transport=mpstore.MemoryNetwork())
    endpoint = serve(mc)
    store = mc.shared_dict(ROOM)

    def changed(change: Any) -> None:
        for key, (_old, new) in change.changes.items():
            _on_value(key, new)

    store.observe(changed)
    _emit({"port": endpoint.port})

    def write(key: str, value: Any) -> None:
        store[key] = value

    try:
        _commands(write)
    finally:
        endpoint.close()
        mc.end_all()


def serve_pycrdt_websocket() -> None:
    from pycrdt import Map
    from pycrdt.websocket import WebsocketServer
    from websockets.asyncio.server import serve
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    from mpstore._values import decode_value, encode_value
    from mpstore.web._server import static_files

    files = static_files("whiteboard.html", "whiteboard.js")
    files["/"] = files["/whiteboard.html"]

    class Channel:
        def __init__(self, ws: Any) -> None:
            self._ws = ws
            self.path = ws.request.path

        def __aiter__(self) -> Channel:
            return self

        async def __anext__(self) -> bytes:
            try:
                return await self.recv()
            except Exception:
                raise StopAsyncIteration from None

        async def send(self, message: bytes) -> None:
            await self._ws.send(message)

        async def recv(self) -> bytes:
            data = await self._ws.recv()
            return bytes(data) if not isinstance(data, str) else data.encode()

    def process_request(connection: Any, request: Any) -> Any:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        file = files.get(request.path.split("?")[0])
        if file is None:
            return connection.respond(404, "Not found.\n")
        body = file.body.replace(b"{{query}}", b"")
        headers = Headers([("Content-Type", file.content_type), ("Content-Length", str(len(body)))])
        return Response(200, "OK", headers, body)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with WebsocketServer(auto_clean_rooms=False) as ws_server:
            room = await ws_server.get_room("/" + ROOM)
            board = room.ydoc.get("mpstore", type=Map)

            def changed(event: Any) -> None:
                for key in event.keys:
                    raw = board.get(key)
                    if isinstance(raw, str):
                        _on_value(key, decode_value(raw))

            board.observe(changed)

            async def handler(ws: Any) -> None:
                await ws_server.serve(Channel(ws))

            server_cm = serve(handler, "127.0.0.1", 0, process_request=process_request, compression=None)
            async with server_cm as server:
                _emit({"port": next(iter(server.sockets)).getsockname()[1]})

                def write(key: str, value: Any) -> None:
                    text = encode_value(value)
                    loop.call_soon_threadsafe(board.__setitem__, key, text)

                await asyncio.to_thread(_commands, write)

    asyncio.run(main())


# -- the driver -------------------------------------------------------------------------------------


class Server:
    """One server process and the JSON lines it prints."""

    def __init__(self, system: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", system],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
            # pycrdt-websocket logs a traceback for every page that closes (1001): keep it quiet.
            stderr=subprocess.DEVNULL if system == "pycrdt-websocket" else None,
        )
        self.lines: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = int(self.wait(lambda line: "port" in line, 60)["port"])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(json.loads(raw))
                self.cond.notify_all()

    def wait(self, pred: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if pred(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("server did not report in time")
                self.cond.wait(left)

    def received(self, prefix: str) -> list[dict[str, Any]]:
        with self.cond:
            return [line for line in self.lines if line.get("key", "").startswith(prefix)]

    def command(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.command("quit")
            self.proc.wait(30)
        except Exception:
            self.proc.kill()
            self.proc.wait()


_PAGE_SETUP = """() => {
  window.bench = []
  window.whiteboard.doc.getMap('mpstore').observe((e) => {
    const now = performance.timeOrigin + performance.now()
    for (const key of e.keysChanged) {
      if (!key.startsWith('stroke/py-')) continue
      const v = window.whiteboard.read(key)
      if (v && v.t !== undefined) window.bench.push(now - Number(v.t))
    }
  })
}"""

_PAGE_TRICKLE = """async ([n, prefix, points]) => {
  for (let i = 0; i < n; i++) {
    window.whiteboard.write(prefix + String(i).padStart(6, '0'),
      { points, colour: '#e03131', width: 4, author: 'page', t: performance.timeOrigin + performance.now() })
    await new Promise((r) => setTimeout(r, 10))
  }
}"""

_PAGE_BURST = """([n, prefix, points]) => {
  const t0 = performance.timeOrigin + performance.now()
  for (let i = 0; i < n; i++) {
    window.whiteboard.write(prefix + String(i).padStart(6, '0'),
      { points, colour: '#e03131', width: 4, author: 'page', t: performance.timeOrigin + performance.now() })
  }
  return t0
}"""


def one_round(browser: Any, system: str, strokes: int, burst: int, r: int) -> dict[str, Any]:
    server = Server(system)
    try:
        page = browser.new_context().new_page()
        page.goto(f"http://127.0.0.1:{server.port}/?board=bench&name=page")
        deadline = time.monotonic() + 30
        while not page.evaluate("() => !!(window.whiteboard && window.whiteboard.provider.synced)"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{system}: the page did not sync")
            time.sleep(0.05)
        page.evaluate(_PAGE_SETUP)
        # 1. page -> Python
        prefix = f"stroke/page-lat{r}-"
        page.evaluate(_PAGE_TRICKLE, [strokes, prefix, POINTS])
        server.wait(lambda line: line.get("key") == f"{prefix}{strokes - 1:06d}", 60)
        to_python = [line["lat"] for line in server.received(prefix)]
        # 2. Python -> page
        server.command(f"write {strokes}")
        server.wait(lambda line: line.get("written") == strokes, 120)
        deadline = time.monotonic() + 60
        while page.evaluate("() => window.bench.length") < strokes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{system}: the page did not get every stroke")
            time.sleep(0.05)
        to_page = page.evaluate("() => window.bench")
        # 3. strokes/s
        prefix = f"stroke/page-burst{r}-"
        t0 = page.evaluate(_PAGE_BURST, [burst, prefix, POINTS])
        last = server.wait(lambda line: line.get("key") == f"{prefix}{burst - 1:06d}", 120)
        rate = burst / ((last["at"] - t0) / 1000)
        page.context.close()
        return {"to_python": to_python, "to_page": to_page, "rate": rate}
    finally:
        server.close()


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--strokes", type=int, default=200)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--serve", choices=["mpstore", "pycrdt-websocket"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "mpstore":
        serve_mpstore()
        return
    if args.serve == "pycrdt-websocket":
        serve_pycrdt_websocket()
        return

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests" / "web"))
    from chromium import CHROMIUM, FLAGS  # type: ignore[import-not-found]

    systems = ["mpstore", "pycrdt-websocket"]
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            for r in range(args.rounds):
                order = systems if r % 2 == 0 else systems[::-1]
                for system in order:
                    results[system].append(one_round(browser, system, args.strokes, args.burst, r))
        finally:
            browser.close()
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{args.rounds} rounds, {args.strokes} strokes of {len(POINTS)} points each way, "
          f"bursts of {args.burst}; systems interleaved\n")
    figures: dict[str, dict[str, float]] = {}
    for system in systems:
        to_python = [x for res in results[system] for x in res["to_python"]]
        to_page = [x for res in results[system] for x in res["to_page"]]
        rates = [res["rate"] for res in results[system]]
        figures[system] = {
            "py50": statistics.median(to_python), "py99": pct(to_python, 0.99),
            "pg50": statistics.median(to_page), "pg99": pct(to_page, 0.99),
            "rate": statistics.median(rates), "rmin": min(rates), "rmax": max(rates),
        }
    head = ("", "page->Python p50", "p99", "Python->page p50", "p99", "strokes/s (min-max)")
    print(f"{head[0]:18}{head[1]:>18}{head[2]:>11}{head[3]:>18}{head[4]:>11}  {head[5]}")
    for system in systems:
        f = figures[system]
        print(f"{system:18}{f['py50']:>15.2f} ms{f['py99']:>8.1f} ms{f['pg50']:>15.2f} ms{f['pg99']:>8.1f} ms"
              f"  {f['rate']:,.0f} ({f['rmin']:,.0f}-{f['rmax']:,.0f})")
    m, b = figures["mpstore"], figures["pycrdt-websocket"]
    print(f"{'ratio':18}{m['py50'] / b['py50']:>17.2f}x{m['py99'] / b['py99']:>10.2f}x"
          f"{m['pg50'] / b['pg50']:>17.2f}x{m['pg99'] / b['pg99']:>10.2f}x  {m['rate'] / b['rate']:.2f}x")
    print("(latency ratio < 1: mpstore faster; strokes/s ratio > 1: mpstore faster)")


if __name__ == "__main__":
    main()
