"""Write the atheris corpus seeds (tests/fuzz/corpus/) from real handshakes and messages.

    python -m tests.fuzz.make_corpus

Each seed is ``target index byte + input``, as ``harness.dispatch`` reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

from mpstore.transports._lan._framing import Decision, Preface, encode_decision, encode_frame_header
from tests.fuzz import harness

CORPUS = Path(__file__).parent / "corpus"


def seeds() -> dict[str, bytes]:
    """Seed name -> seed bytes."""
    out: dict[str, list[bytes]] = {name: [] for name in harness.TARGETS}
    for stage in harness.STAGES:
        frames, handshake = harness.transcript(stage)
        conversation = frames[handshake:] if stage.startswith("open") else frames
        out[f"session-{stage}"].append(harness.join_frames(conversation))
        if not stage.startswith("open"):
            out["wire"].append(harness.join_frames(frames))
    frames = harness.transcript("fresh-secret")[0]
    out["hello"].append(frames[0][2:] + frames[1][2:])
    preface = Preface("fuzz", "ab" * 16).encode()
    out["lan-handshake"] += [
        preface,
        encode_decision(Decision(True)),
        encode_decision(Decision(False, "full")),
    ]
    stream = [preface, encode_decision(Decision(True)), *frames]
    out["lan-stream"].append(bytes([7]) + b"".join(encode_frame_header(len(f)) + f for f in stream))
    out["app-payload"] += [b'{"hello":"world"}', json.dumps({"n": [1, 2.5, None, True, "\u00e9"]}).encode()]
    for name, extra in harness.extra_seeds().items():
        out.setdefault(name, []).extend(extra)
    names = list(harness.TARGETS)
    return {
        f"{name}-{i}": bytes([names.index(name)]) + data
        for name, items in out.items()
        for i, data in enumerate(items)
    }


def main() -> None:
    """Replace the corpus with fresh seeds."""
    CORPUS.mkdir(exist_ok=True)
    for old in CORPUS.glob("*"):
        old.unlink()
    for name, data in seeds().items():
        (CORPUS / name).write_bytes(data)
    print(f"wrote {len(seeds())} seeds to {CORPUS}")


if __name__ == "__main__":
    main()
