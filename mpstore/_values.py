"""Exact Python values <-> the one string an engine stores per key.

A value is encoded as compact JSON text. JSON's own types carry None, bool, str, list and
dict with str keys as they are; ints and floats keep their type because Python writes every
float with a '.' or an exponent (``1.0``, ``1e+16``) and every int without. What JSON cannot say
is carried by a one-key object whose key starts with ``$`` (a *tag*):

* ``{"$b": "<base64>"}``: bytes (standard alphabet, padded);
* ``{"$i": "<hex>"}``: an int outside JavaScript's safe range (|n| > 2**53 - 1), lowercase hex
  digits with a leading ``-`` when negative, so any size survives and a browser can use BigInt;
* ``{"$f": "NaN" | "Infinity" | "-Infinity"}``: the floats JSON has no literal for.

A dict key that starts with ``$`` is written with one more ``$`` in front (``"$x"`` ->
``"$$x"``), so a user dict never looks like a tag. Decoding is strict: anything else that starts
with a single ``$`` is refused, as is text that is not JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any, Final

from ._errors import InvalidArgument

__all__ = ["MISSING", "ValueDecodeError", "check_key", "decode_value", "encode_value"]

_SAFE_INT: Final = 2**53 - 1
_TAGS: Final = frozenset({"$b", "$i", "$f"})
_FLOAT_NAMES: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class _Missing:
    """The type of :data:`MISSING`; one instance only."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "mpstore.MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


#: Marks the absent side of a change: ``(MISSING, 3)`` is an insertion, ``(3, MISSING)`` a delete.
MISSING: Final = _Missing()


class ValueDecodeError(ValueError):
    """A stored string is not a value this codec writes (a peer's bad or foreign data)."""


def check_key(key: object) -> str:
    """Return ``key`` if it is a str that UTF-8 can carry, else raise TypeError."""
    if type(key) is not str:
        raise InvalidArgument(f"store keys must be str, not {type(key).__name__}")
    if key.isascii():
        return key
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"store key {key!r} holds a lone surrogate (not UTF-8)") from None
    return key


def _to_json(value: object, path: list[int]) -> Any:
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        n: int = value  # type: ignore[assignment]
        if -_SAFE_INT <= n <= _SAFE_INT:
            return n
        return {"$i": ("-" + format(-n, "x")) if n < 0 else format(n, "x")}
    if t is float:
        f: float = value  # type: ignore[assignment]
        if math.isfinite(f):
            return f
        return {"$f": "NaN" if math.isnan(f) else ("Infinity" if f > 0 else "-Infinity")}
    if t is bytes:
        return {"$b": base64.b64encode(value).decode("ascii")}  # type: ignore[arg-type]
    if t is list or t is dict:
        if id(value) in path:
            raise InvalidArgument("store values cannot contain themselves (a reference cycle)")
        path.append(id(value))
        try:
            if t is list:
                return [_to_json(v, path) for v in value]  # type: ignore[attr-defined]
            out: dict[str, Any] = {}
            for k, v in value.items():  # type: ignore[attr-defined]
                if type(k) is not str:
                    raise InvalidArgument(f"dict keys in store values must be str, not {type(k).__name__}")
                out["$" + k if k.startswith("$") else k] = _to_json(v, path)
            return out
        finally:
            path.pop()
    raise InvalidArgument(
        f"store values must be None, bool, int, float, str, bytes, list or dict (exact types), "
        f"not {t.__module__}.{t.__qualname__}"
    )


def encode_value(value: object) -> str:
    """Encode ``value`` to its stored string; TypeError for anything not storable exactly."""
    # The common scalars straight to the text JSONEncoder writes for them (it uses the same
    # int/float repr and string escaper); everything else through the full path below.
    if type(value) is str and value.isascii():
        text: str = _encode_str(value)
        return text
    if type(value) is int and -_SAFE_INT <= value <= _SAFE_INT:
        return int.__repr__(value)
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    try:
        obj = _to_json(value, [])
    except RecursionError:
        raise InvalidArgument("store value is nested too deeply") from None
    text = _ENCODER.encode(obj)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates: JSON's \\u escapes carry them, UTF-8 cannot.
        text = _ASCII_ENCODER.encode(obj)
    return text


def _tag(d: dict[str, Any]) -> object:
    ((tag, arg),) = d.items()
    if type(arg) is not str:
        raise ValueDecodeError(f"tag {tag} needs a string argument")
    if tag == "$b":
        try:
            return base64.b64decode(arg.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise ValueDecodeError(f"bad base64 in $b: {exc}") from None
    if tag == "$i":
        neg = arg.startswith("-")
        digits = arg[1:] if neg else arg
        if not digits or digits.strip("0123456789abcdef"):
            raise ValueDecodeError("bad hex in $i")
        n = int(digits, 16)
        return -n if neg else n
    if arg not in _FLOAT_NAMES:
        raise ValueDecodeError(f"unknown $f value {arg!r}")
    return _FLOAT_NAMES[arg]


def _hook(pairs: list[tuple[str, Any]]) -> object:
    if len(pairs) == 1 and pairs[0][0] in _TAGS:
        return _tag(dict(pairs))
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k.startswith("$"):
            if not k.startswith("$$"):
                raise ValueDecodeError(f"unknown tag or unescaped key {k!r}")
            k = k[1:]
        out[k] = v
    return out


def _refuse_constant(name: str) -> object:
    raise ValueDecodeError(f"bare {name} is not valid here")


def decode_value(text: str) -> object:
    """Decode a stored string back to the exact value; ValueDecodeError if it is not ours."""
    # A string without escapes and a short int: what the JSON decoder would return, read
    # directly (a joiner decodes every value once); everything else through the decoder.
    if type(text) is str:
        if _PLAIN_STR.fullmatch(text):
            return text[1:-1]
        if _PLAIN_INT.fullmatch(text):
            return int(text)
    try:
        return _DECODER.decode(text)
    except ValueDecodeError:
        raise
    except (ValueError, RecursionError, TypeError) as exc:
        raise ValueDecodeError(f"not a stored value: {exc}") from None


_encode_str: Final = json.encoder.encode_basestring  # what _ENCODER uses for a str
_PLAIN_STR: Final = re.compile(r'"[^"\\\x00-\x1f]*"')  # no escape, no control character
_PLAIN_INT: Final = re.compile(r"-?(?:0|[1-9][0-9]{0,15})")
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_ASCII_ENCODER: Final = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)
_DECODER: Final = json.JSONDecoder(object_pairs_hook=_hook, parse_constant=_refuse_constant)


def _not_json(obj: object) -> object:
    raise InvalidArgument(f"Object of type {type(obj).__name__} is not JSON serializable")


try:  # the C encoder json.dumps builds on every call: one made once (none in pure-Python builds)
    from json.encoder import c_make_encoder as _c_make_encoder  # type: ignore[attr-defined]
    from json.encoder import encode_basestring as _encode_basestring
except ImportError:  # pragma: no cover
    _c_make_encoder = None
# Without cycle markers it keeps no state between calls, so one serves every thread; a cycle
# then ends in RecursionError, refused like a value nested too deeply.
_MESSAGE_ENCODER: Any = (
    None
    if _c_make_encoder is None
    else _c_make_encoder(None, _not_json, _encode_basestring, None, ":", ",", False, False, False)
)


_STR_ONLY: Final = frozenset((str,))


def exact_json(obj: Any, what: str) -> str:
    """Compact JSON text of ``obj`` that loads back equal, else InvalidArgument (a TypeError).

    Refused: what JSON cannot carry (NaN, infinities, other types, cycles) and dict keys that
    are not ``str`` (JSON would turn them into strings). ``what`` names the value in the error.
    """
    try:
        text = "".join(_MESSAGE_ENCODER(obj, 0)) if _MESSAGE_ENCODER is not None else _ENCODER.encode(obj)
    except RecursionError:
        raise InvalidArgument(f"{what} is not JSON-serialisable: nested too deeply, or a cycle") from None
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{what} is not JSON-serialisable: {exc}") from None
    todo = [obj]
    while todo:  # after encoding, which refuses cycles
        item = todo.pop()
        if isinstance(item, dict):
            if not _STR_ONLY.issuperset(map(type, item)):  # all keys exactly str: checked in C
                for key in item:
                    if not isinstance(key, str):
                        raise InvalidArgument(
                            f"{what} is not JSON-serialisable: dict keys must be str, not "
                            f"{type(key).__name__} ({key!r})"
                        )
            for value in item.values():
                if isinstance(value, (dict, list, tuple)):
                    todo.append(value)
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
    return text
