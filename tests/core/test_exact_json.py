"""exact_json, the text every app message is sent as: json.dumps' compact output, or a refusal."""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpstore._errors import InvalidArgument
from mpstore._values import exact_json

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@given(_JSON)
def test_the_text_is_json_dumps_compact_output_and_loads_back_equal(value: Any) -> None:
    text = exact_json(value, "message")
    assert text == json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    assert json.loads(text) == value


def _cycle() -> Any:
    d: dict[str, Any] = {}
    d["self"] = [d]
    return d


@pytest.mark.parametrize(
    "bad",
    [math.nan, [math.inf], {1: "int key"}, {"a": {(1, 2): 3}}, {1, 2}, object(), b"bytes", _cycle()],
    ids=["nan", "inf", "int-key", "tuple-key", "set", "object", "bytes", "cycle"],
)
def test_what_json_cannot_carry_exactly_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidArgument, match="message is not JSON-serialisable"):
        exact_json(bad, "message")


def test_one_encoder_serves_many_threads_at_once() -> None:
    # The C encoder is made once and shared: it must keep no state between calls (a failing
    # call in one thread cannot disturb another's).
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(3000):
                value = {"n": n, "i": i, "l": [i, str(i), {"x": i / 7}]}
                assert json.loads(exact_json(value, "m")) == value
                if i % 100 == 0:
                    with pytest.raises(InvalidArgument):
                        exact_json({"bad": object()}, "m")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
