"""Interop with JavaScript y-protocols/awareness (the pinned package in js/), both ways."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mpstore._presence import PresenceCore, decode_awareness_update

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "js" / "awareness_peer.mjs"
JS_CLIENT = 4242


class JsAwareness:
    """One node process running awareness.js; every command is answered within a deadline."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            ["node", str(SCRIPT), str(JS_CLIENT)],
            cwd=ROOT / "js",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def __call__(self, timeout: float = 20.0, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"node did not answer {cmd['op']} within {timeout} s"
        reply: dict[str, Any] = json.loads(self.proc.stdout.readline())
        assert "error" not in reply, reply
        return reply

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write('{"op":"quit"}\n')
            self.proc.stdin.close()
            self.proc.wait(5)
        except Exception:
            self.proc.kill()
            self.proc.wait(5)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@pytest.fixture
def js() -> Iterator[JsAwareness]:
    if shutil.which("node") is None or not (ROOT / "js" / "node_modules" / "y-protocols").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("node and js/node_modules are required in CI")
        pytest.skip("node or the pinned npm packages are missing (run npm ci in js/)")
    peer = JsAwareness()
    try:
        yield peer
    finally:
        peer.close()


def test_js_reads_what_mpstore_writes(js: JsAwareness) -> None:
    now = time.monotonic()
    a = PresenceCore("a" * 32, "Ann", now)
    b = PresenceCore("b" * 32, "Bob", now)
    a.peer_added(b.local_id, now)
    b.peer_added(a.local_id, now)
    a.add_participant("js", now)
    a.outbox.clear()
    b.outbox.clear()

    def deliver() -> list[bytes]:
        for _ in range(10):
            for src, dst in ((a, b), (b, a)):
                out, src.outbox = src.outbox, []
                for target, payload, reliable in out:
                    if target == dst.local_id:
                        dst.receive(src.local_id, payload, now, reliable)
                    elif target == "@js":
                        sent.append(payload)
        return sent

    sent: list[bytes] = []
    state_a = {"user": {"name": "Ann", "color": "#ff0000"}, "cursor": [1, 2.5], "é": "ü"}
    a.set_local(json.dumps(state_a), now)
    b.set_local(json.dumps({"typing": True}), now)
    for update in deliver():
        reply = js(op="apply", update=update.hex())
    assert reply["states"] == {str(a.client_id): state_a, str(b.client_id): {"typing": True}}
    assert reply["clocks"][str(a.client_id)] == a.local_clock
    # A clear reaches JS as a removal.
    now += 1
    b.set_local(None, now)
    sent.clear()
    for update in deliver():
        reply = js(op="apply", update=update.hex())
    assert str(b.client_id) not in reply["states"]
    assert str(a.client_id) in reply["states"]


def test_mpstore_reads_what_js_writes(js: JsAwareness) -> None:
    now = time.monotonic()
    a = PresenceCore("a" * 32, "Ann", now)
    a.add_participant("js", now)
    reply = js(op="set", state={"user": {"name": "Tab"}, "cursor": None})
    a.receive_participant("js", bytes.fromhex(reply["update"]), now)
    assert a.entries()[JS_CLIENT][2] is not None
    assert json.loads(a.entries()[JS_CLIENT][2]) == {"user": {"name": "Tab"}, "cursor": None}
    reply = js(op="field", field="cursor", value={"x": 3})
    a.receive_participant("js", bytes.fromhex(reply["update"]), now)
    assert json.loads(a.entries()[JS_CLIENT][2])["cursor"] == {"x": 3}
    assert a.entries()[JS_CLIENT][1] == reply["clocks"][str(JS_CLIENT)]
    reply = js(op="set", state=None)
    assert decode_awareness_update(bytes.fromhex(reply["update"]))[0][2] is None
    a.receive_participant("js", bytes.fromhex(reply["update"]), now)
    assert JS_CLIENT not in a.entries()
