"""``mpstore whiteboard``: a peer that serves the whiteboard page to browsers."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import webbrowser
from typing import Any

from .._peer import PeerID
from .._wrapper import MultipeerConnectivity
from ._endpoint import new_token, serve
from ._server import is_loopback

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser, address: Any) -> None:
    """The whiteboard's options (``address`` parses HOST:PORT)."""
    p.add_argument("--name", default="whiteboard", help="this peer's display name (default: whiteboard)")
    p.add_argument("--board", default="main", help="the board the printed URL opens (default: main)")
    p.add_argument("--service", default="whiteboard", help="service type (default: whiteboard)")
    p.add_argument("--memory", action="store_true", help="no LAN peers: the in-memory network (pages only)")
    p.add_argument("--secret", default=None, help="group secret: only peers with the same secret can join")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the page is served on (default 127.0.0.1; 0.0.0.0 lets other machines' "
        "browsers in, with a token in the printed URL)",
    )
    p.add_argument("--port", type=int, default=8765, help="port of the page (default 8765; 0: any)")
    p.add_argument(
        "--token", default=None, help="token browsers must present (default: a fresh one off loopback)"
    )
    p.add_argument("--lan-port", type=int, default=0, help="LAN: port for peers (default: any)")
    p.add_argument(
        "--peer", type=address, action="append", default=[], help="LAN: dial HOST:PORT (repeatable)"
    )
    p.add_argument("--no-discovery", action="store_true", help="LAN: no mDNS, only --peer")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")


class _Board(MultipeerConnectivity):
    def peer_added(self, peer: PeerID) -> None:
        print(f"* {peer.display_name} joined", flush=True)

    def peer_removed(self, peer: PeerID) -> None:
        print(f"* {peer.display_name} left", flush=True)


def _transport(args: argparse.Namespace) -> Any:
    if args.memory:
        return "memory"
    from ..transports.lan import LanTransport

    return LanTransport(port=args.lan_port, peers=args.peer, discovery=not args.no_discovery)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted (Ctrl-C, SIGTERM); 0 on a clean stop."""
    token = args.token
    if token is None and not is_loopback(args.host):
        token = new_token()
    mc = _Board(args.name, args.service, transport=_transport(args), secret=args.secret)
    try:
        try:
            endpoint = serve(mc, host=args.host, port=args.port, token=token)
        except OSError as exc:
            print(f"mpstore whiteboard: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}"
                  " (--port 0 picks a free port)", file=sys.stderr)
            return 2
        try:
            url = endpoint.url(board=args.board)
            where = "in-memory network: pages only" if args.memory else f"LAN service {args.service!r}"
            print(f"whiteboard ({where}); open {url}", flush=True)
            if token is not None:
                print("  the token in that URL lets a browser in: share it only with the room", flush=True)
            print("  other boards: change the board name in the page; Ctrl-C to stop", flush=True)
            if args.open:
                webbrowser.open(url)
            _wait_for_signal()
        finally:
            endpoint.close()
    finally:
        mc.end_all()
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("whiteboard stopped", file=sys.stderr, flush=True)
