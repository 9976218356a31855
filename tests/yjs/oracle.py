"""Real JavaScript Yjs as a test oracle: one Node process (js/oracle.mjs) speaking JSON lines.

    with YjsOracle.start() as js:
        doc = js.doc()                 # a Yjs replica with the EngineDoc contract
        update = doc.transact({"k": '"v"'}, [])

The process is started by us, talked to with a deadline on every answer, and ended by its PID
(stdin closed, then SIGTERM, then SIGKILL). Nothing here touches the network.
"""

from __future__ import annotations

import itertools
import json
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mpstore import CorruptUpdate
from mpstore.engines.base import EngineDoc

JS_DIR = Path(__file__).resolve().parents[2] / "js"
SCRIPT = JS_DIR / "oracle.mjs"
#: Seconds one request may take before the oracle is declared hung.
CALL_TIMEOUT = 30.0


class OracleError(RuntimeError):
    """The oracle failed: it answered an error, died, or did not answer in time."""


def unavailable_reason() -> str | None:
    """Why the oracle cannot run here (no node, packages not installed), or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (JS_DIR / "node_modules" / "yjs").is_dir():
        return "js/node_modules is missing: run `npm ci` in js/"
    return None


class YjsOracle:
    """A running oracle process; use :meth:`start` and close it (or use it as a context)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self._ids = itertools.count(1)
        self._names = itertools.count(1)
        self._buf = b""
        self._sel = selectors.DefaultSelector()
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        self._sel.register(proc.stdout, selectors.EVENT_READ)

    @classmethod
    def start(cls) -> YjsOracle:
        """Start ``node js/oracle.mjs``; raise OracleError if it cannot answer."""
        reason = unavailable_reason()
        if reason is not None:
            raise OracleError(reason)
        proc = subprocess.Popen(
            ["node", str(SCRIPT)],
            cwd=JS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        oracle = cls(proc)
        try:
            oracle.call("versions")
        except BaseException:
            oracle.close()
            raise
        return oracle

    def __enter__(self) -> YjsOracle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the process by its PID: EOF first, then SIGTERM, then SIGKILL."""
        proc = self.proc
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self._sel.close()
        if proc.stdout is not None:
            proc.stdout.close()

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one request and wait (bounded) for its answer."""
        rid = next(self._ids)
        line = json.dumps({"id": rid, "op": op, **args}).encode() + b"\n"
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except OSError as exc:
            raise OracleError(f"the oracle is gone ({exc})") from None
        answer = json.loads(self._read_line())
        if answer.get("id") != rid:
            raise OracleError(f"answer out of order: {answer!r}")
        if not answer.get("ok"):
            raise OracleError(f"{op}: {answer.get('error')}")
        return answer  # type: ignore[no-any-return]

    def _read_line(self) -> bytes:
        deadline = time.monotonic() + CALL_TIMEOUT
        assert self.proc.stdout is not None
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise OracleError(f"no answer within {CALL_TIMEOUT} s")
            if not self._sel.select(left):
                continue
            try:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                raise OracleError(f"the oracle exited (status {self.proc.poll()})")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    # -- conveniences

    def doc(self, client: int | None = None) -> JsDoc:
        """A new Yjs replica (client id ``client``, or Yjs's own random one)."""
        return JsDoc(self, f"d{next(self._names)}", client)

    def merge(self, updates: Iterable[bytes]) -> bytes:
        """Y.mergeUpdates."""
        return bytes.fromhex(self.call("merge", updates=[u.hex() for u in updates])["update"])

    def update_message(self, update: bytes) -> bytes:
        """y-protocols/sync writeUpdate, framed with message type 0."""
        return bytes.fromhex(self.call("update_message", update=update.hex())["message"])


class JsDoc(EngineDoc):
    """A Yjs replica in the oracle, with mpstore's EngineDoc contract (str -> str entries)."""

    def __init__(self, oracle: YjsOracle, name: str, client: int | None) -> None:
        self.oracle = oracle
        self.name = name
        self._client = int(oracle.call("new", doc=name, client=client)["client"])

    @property
    def client_id(self) -> int:
        return self._client

    def raw_entries(self) -> dict[str, bytes]:
        """Every entry of the root map as its lib0 Any encoding (bit-exact values)."""
        got = self.oracle.call("state", doc=self.name)["entries"]
        return {k: bytes.fromhex(v) if not v.startswith("type:") else v.encode() for k, v in got.items()}

    def items(self) -> list[tuple[str, str]]:
        out = []
        for key, raw in self.raw_entries().items():
            if raw[:1] == b"\x77":  # Any tag 119: a string
                from mpstore.engines._python._lib0 import Reader

                r = Reader(raw)
                value = r.read_any()
                assert isinstance(value, str)
                out.append((key, value))
        return out

    def get(self, key: str) -> str | None:
        return dict(self.items()).get(key)

    def transact(self, sets: Mapping[str, str], deletes: Iterable[str]) -> bytes:
        got = self.oracle.call("transact", doc=self.name, sets=dict(sets), deletes=list(deletes))
        return bytes.fromhex(got["update"])

    def set_any(self, key: str, any_value: bytes) -> bytes:
        """Set ``key`` to the value whose lib0 Any encoding is ``any_value``; return the update."""
        got = self.oracle.call("set_any", doc=self.name, key=key, any=any_value.hex())
        return bytes.fromhex(got["update"])

    def apply_update(self, update: bytes) -> dict[str, str | None]:
        before = dict(self.items())
        try:
            self.oracle.call("apply", doc=self.name, update=update.hex())
        except OracleError as exc:
            raise CorruptUpdate(str(exc)) from None
        after = dict(self.items())
        return {k: after.get(k) for k in before.keys() | after.keys() if before.get(k) != after.get(k)}

    def state_vector(self) -> bytes:
        return bytes.fromhex(self.oracle.call("state", doc=self.name)["sv"])

    def pending(self) -> bool:
        """Yjs holds pending structs or deletions (dependencies missing)."""
        return bool(self.oracle.call("state", doc=self.name)["pending"])

    def encode_diff(self, state_vector: bytes) -> bytes:
        return bytes.fromhex(self.oracle.call("diff", doc=self.name, sv=state_vector.hex())["update"])

    def step1(self) -> bytes:
        """y-protocols SyncStep1 of this replica (framed)."""
        return bytes.fromhex(self.oracle.call("step1", doc=self.name)["message"])

    def step2(self, state_vector: bytes | None = None) -> bytes:
        """y-protocols SyncStep2 answering ``state_vector`` (framed)."""
        sv = None if state_vector is None else state_vector.hex()
        return bytes.fromhex(self.oracle.call("step2", doc=self.name, sv=sv)["message"])

    def read(self, message: bytes) -> tuple[int, bytes]:
        """Handle a framed sync message as y-websocket does: (its sync type, the reply or b"")."""
        got = self.oracle.call("read", doc=self.name, message=message.hex())
        return int(got["kind"]), bytes.fromhex(got["reply"])

    def close(self) -> None:
        """Destroy the replica in the oracle."""
        self.oracle.call("drop", doc=self.name)
