"""The shipped JavaScript value module against Python's codec: every value survives both ways."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpstore._values import ValueDecodeError, decode_value, encode_value

MODULE = Path(__file__).resolve().parents[2] / "mpstore" / "web" / "static" / "mpstore-values.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")

# Reads a JSON list of stored strings; answers, for each, JS's re-encoding or the decode error.
_SCRIPT = """
import { decodeValue, encodeValue, ValueDecodeError } from %s
let input = ''
process.stdin.on('data', (d) => { input += d })
process.stdin.on('end', () => {
  const out = JSON.parse(input).map((text) => {
    try { return { text: encodeValue(decodeValue(text)) } } catch (e) {
      return { error: e instanceof ValueDecodeError ? 'decode' : e.name + ': ' + e.message }
    }
  })
  process.stdout.write(JSON.stringify(out))
})
"""


def through_js(texts: list[str]) -> list[dict[str, str]]:
    """Each stored string decoded and encoded again by the JS module (one node process)."""
    assert NODE is not None
    script = _SCRIPT % json.dumps(MODULE.as_uri())
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script],
        input=json.dumps(texts, ensure_ascii=True),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: list[dict[str, str]] = json.loads(done.stdout)
    return result


def same(a: Any, b: Any) -> bool:
    """Equal with exact types at every level (NaN equals NaN); dict key order aside (JS objects)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


EXAMPLES: list[Any] = [
    None, True, False, 0, -1, 3, 2**53 - 1, -(2**53 - 1), 2**53, -(2**53), 2**64, -(2**200),
    0.0, -0.0, 3.0, 0.1, 1e16, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, math.inf, -math.inf,
    math.nan, "", "x", "é\u2028\U0001f600", "\ud800", "\x00\x1f\"\\", b"", b"\x00\xff" * 3,
    [], [1, 1.0, "1"], {}, {"$b": "x"}, {"$$": 1, "$": 2, "a$": 3}, {"2": 1, "1": 2, "b": [{}]},
    {"points": [[1.5, 2.0], [3, 4]], "colour": "#ff0000", "width": 2.0, "author": "ab12"},
]


def test_examples_round_trip_through_javascript() -> None:
    texts = [encode_value(v) for v in EXAMPLES]
    for value, text, out in zip(EXAMPLES, texts, through_js(texts), strict=True):
        assert "text" in out, (value, out)
        assert same(decode_value(out["text"]), value), (value, text, out["text"])


def test_javascript_writes_python_text_for_plain_values() -> None:
    values: list[Any] = [None, 3, -0.0, 3.0, 0.5, 2**70, b"ab", [1, {"$x": 2}], math.nan]
    texts = [encode_value(v) for v in values]
    assert [o["text"] for o in through_js(texts)] == texts


def test_javascript_refuses_what_python_refuses() -> None:
    bad = ['{"$z": 1}', '{"$b": "***"}', '{"$i": "xyz"}', '{"$f": "nan"}', '{"$b": 1}', "NaN",
           "[1,]", "01", '"\x01"', "{'a': 1}", "1 2", "", "[", '{"a" 1}']
    for text in bad:
        with pytest.raises(ValueDecodeError):
            decode_value(text)
    assert [o.get("error") for o in through_js(bad)] == ["decode"] * len(bad)


scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats() | st.text() | st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=5, deadline=None)
@given(st.lists(values, min_size=50, max_size=50))
def test_random_values_round_trip_through_javascript(batch: list[Any]) -> None:
    texts = [encode_value(v) for v in batch]
    for value, out in zip(batch, through_js(texts), strict=True):
        assert "text" in out, (value, out)
        assert same(decode_value(out["text"]), value), value




def test_javascript_encode_refuses_what_it_cannot_carry() -> None:
    """encodeValue throws a TypeError for a JS value the encoding cannot carry exactly, and never
    writes text that no reader accepts (a sparse array once gave '[1,,3]', hidden by every
    replica as undecodable)."""
    assert NODE is not None
    script = """
import { encodeValue, decodeValue } from MODULE_URL
const cases = {
  hole: () => [1, , 3], trailingHole: () => new Array(2), undef: () => [undefined],
  undefKey: () => ({ a: undefined }), fn: () => [() => 1], sym: () => ({ s: Symbol('x') }),
  map: () => new Map(), date: () => ({ d: new Date(0) }), int8: () => new Int8Array(2),
}
const out = {}
for (const [name, make] of Object.entries(cases)) {
  try {
    const text = encodeValue(make())
    try { decodeValue(text); out[name] = 'wrote ' + text } catch (e) { out[name] = 'unreadable ' + text }
  } catch (e) { out[name] = e.name }
}
process.stdout.write(JSON.stringify(out))
""".replace("MODULE_URL", json.dumps(MODULE.as_uri()))
    done = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True, text=True,
                          timeout=60, check=True)
    out = json.loads(done.stdout)
    assert out == {name: "TypeError" for name in out}, out
