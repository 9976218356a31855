"""Browsers as participants of a store: a y-websocket endpoint, and the whiteboard it serves.

    from mpstore.web import serve
    endpoint = serve(mc)                  # ws://127.0.0.1:<port>/<store name>
    print(endpoint.url(board="main"))     # the whiteboard page

Needs the ``web`` extra (``websockets``). See docs/WEB.md.
"""

from __future__ import annotations

from ._endpoint import Endpoint, new_token, serve
from ._protocol import Limits

__all__ = ["Endpoint", "Limits", "new_token", "serve"]
