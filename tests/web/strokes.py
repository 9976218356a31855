"""Whiteboard strokes as Python peers write them (the format of js/whiteboard/app.js)."""

from __future__ import annotations

import secrets
import time
from typing import Any

PREFIX = "stroke/"


def stroke_key() -> str:
    """A new stroke key: the time in ms (hex, so keys sort by time) and a random suffix."""
    return f"{PREFIX}{int(time.time() * 1000):012x}-{secrets.token_hex(3)}"


def stroke(points: list[list[int]], author: str, colour: str = "#1971c2", width: float = 4) -> dict[str, Any]:
    """One stroke's value."""
    return {"points": points, "colour": colour, "width": width, "author": author}


def strokes_of(store: Any) -> dict[str, Any]:
    """The strokes of a store, by id."""
    return {k[len(PREFIX):]: v for k, v in store.items() if k.startswith(PREFIX)}
