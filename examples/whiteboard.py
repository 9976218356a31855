"""Take part in the whiteboard from Python: draw a star, and print the strokes others draw.

    mpstore whiteboard                  # on one machine: serves the page (open the printed URL)
    python examples/whiteboard.py       # on any device nearby, Pythonista included

The board is the store ``whiteboard/<board>``: each finished stroke is one entry
``stroke/<id>`` = {"points": [[x, y], ...], "colour": "#rrggbb", "width": w, "author": name}.
The stroke being drawn and the cursor are presence (``mc.presence``), which the pages show as a
cursor with our name. Options: --board NAME, --name NAME, --seconds N (default: until Ctrl-C),
--peer HOST:PORT and --no-discovery (LAN without mDNS).
"""

import argparse
import math
import secrets
import threading
import time

import mpstore

SERVICE = "whiteboard"
PREFIX = "stroke/"
_print_lock = threading.Lock()


def say(text):
    with _print_lock:
        print(text, flush=True)


def stroke_key():
    """A new stroke key: the time in ms (hex, so keys sort by time) and a random suffix."""
    return f"{PREFIX}{int(time.time() * 1000):012x}-{secrets.token_hex(3)}"


def star(cx, cy, r):
    """The points of a five-pointed star drawn in one stroke."""
    points = []
    for i in range(6):
        angle = -math.pi / 2 + i * 4 * math.pi / 5
        points.append([round(cx + r * math.cos(angle)), round(cy + r * math.sin(angle))])
    return points


def describe(value):
    points = value.get("points") or []
    xs = [p[0] for p in points] or [0]
    ys = [p[1] for p in points] or [0]
    return (f"{len(points)} points, {value.get('colour')}, width {value.get('width')}, "
            f"from ({min(xs)}, {min(ys)}) to ({max(xs)}, {max(ys)})")


class Artist(mpstore.MultipeerConnectivity):
    def peer_added(self, peer):
        say(f"* {peer.display_name} joined")

    def peer_removed(self, peer):
        say(f"* {peer.display_name} left")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="main")
    parser.add_argument("--name", default="pythonista")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--peer", action="append", default=[], help="LAN: dial HOST:PORT")
    parser.add_argument("--no-discovery", action="store_true")
    args = parser.parse_args()

    transport = "auto"  # LAN on a computer, Multipeer Connectivity in Pythonista
    if args.peer or args.no_discovery:
        from mpstore.transports.lan import LanTransport

        peers = [(h, int(p)) for h, _, p in (a.rpartition(":") for a in args.peer)]
        transport = LanTransport(peers=peers, discovery=not args.no_discovery)

    mc = Artist(args.name, SERVICE, transport=transport)
    try:
        say("looking for the whiteboard...")
        mc.wait_for_peers(1, timeout=60)
        board = mc.shared_dict("whiteboard/" + args.board)

        def on_change(change):
            for key, (_old, new) in change.changes.items():
                if not key.startswith(PREFIX):
                    continue
                if new is mpstore.MISSING:
                    say("a stroke was removed")
                elif isinstance(new, dict) and new.get("author") != args.name:
                    say(f"{new.get('author')} drew a stroke: {describe(new)}")

        board.observe(on_change)
        say(f"the board has {sum(1 for k in board if k.startswith(PREFIX))} strokes")

        # Draw a star: the stroke in progress travels as presence, then it becomes one entry.
        user = {"name": args.name, "color": "#e03131"}
        points = star(560, 280, 90)
        for i in range(1, len(points) + 1):
            mc.presence.set({"user": user, "board": args.board, "cursor": points[i - 1],
                             "drawing": {"points": points[:i], "colour": "#e03131", "width": 6}})
            time.sleep(0.08)
        board[stroke_key()] = {"points": points, "colour": "#e03131", "width": 6, "author": args.name}
        mc.presence.set({"user": user, "board": args.board, "cursor": points[-1], "drawing": None})
        say("drew a star; printing the strokes others draw (Ctrl-C to stop)")

        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        mc.end_all()


if __name__ == "__main__":
    main()
