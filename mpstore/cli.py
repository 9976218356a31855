"""The ``mpstore`` command line: ``chat``, ``peers``, ``demo``, ``send``, ``receive``, ``--version``.

prompt_toolkit (for ``chat``) and the LAN transport's dependencies are imported only by the
commands that need them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from . import __version__
from ._errors import MpstoreError
from ._peer import PeerID, validate_service_type
from ._wrapper import MultipeerConnectivity

__all__ = ["main"]


#: The demos' ranges, the same in both modes.
DEMO_DEVICES = (3, 8)
DEMO_SECONDS = (2.0, 14.0)


def _nonnegative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _in_range(kind: type, low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text}")
        return value

    return parse


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (port 1..65535), got {text!r}")
    return host.strip("[]"), int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mpstore", description="Find peers nearby and share data.")
    p.add_argument("--version", action="store_true", help="print the version and the CRDT engine")
    sub = p.add_subparsers(dest="command")

    chat = sub.add_parser("chat", help="a line chat with everyone on the same service")
    chat.add_argument("--name", required=True, help="your display name")
    chat.add_argument("--service", default="chat", help="service type (default: chat)")
    chat.add_argument(
        "--transport",
        default="auto",
        choices=["auto", "lan", "memory", "mc"],
        help="auto (default: the LAN; Multipeer Connectivity in Pythonista), lan, memory or mc",
    )
    chat.add_argument("--secret", default=None, help="group secret: only peers with the same secret can join")
    chat.add_argument("--host", default=None, help="LAN: address to listen on (default: all)")
    chat.add_argument("--port", type=int, default=0, help="LAN: port to listen on (default: any)")
    chat.add_argument(
        "--peer", type=_address, action="append", default=[], help="LAN: dial HOST:PORT (repeatable)"
    )
    chat.add_argument("--no-discovery", action="store_true", help="LAN: no mDNS, only --peer")
    chat.add_argument(
        "--data-dir",
        default=None,
        help="keep the chat's history in this directory (a saved store, shared with peers): "
        "shown at start and by /history, and it survives restarts",
    )

    peers = sub.add_parser("peers", help="list the services of a type found on the LAN")
    peers.add_argument("--service", default="chat", help="service type (default: chat)")
    peers.add_argument(
        "--wait", type=_nonnegative, default=3.0, help="seconds to listen, 0 or more (default: 3)"
    )
    peers.add_argument(
        "--interface", action="append", default=None, help="interface name or address (repeatable)"
    )

    store = sub.add_parser(
        "store",
        help="show what a data directory holds: stores, keys, sizes, history",
        description="Open a data directory written with MultipeerConnectivity(data_dir=...) (or its "
        "mpstore.sqlite3) and list each saved store: its keys, the bytes of its snapshot and log, "
        "and its history length (updates ever saved). Needs the directory not in use.",
    )
    store.add_argument("path", help="the data directory, or its mpstore.sqlite3")
    store.add_argument("name", nargs="?", default=None, help="only this store, with its values")
    store.add_argument("--keys", type=int, default=20, help="keys to list per store (default: 20)")
    board = sub.add_parser(
        "whiteboard",
        help="a shared whiteboard: this peer serves the page to browsers (needs the web extra)",
        description="Starts a peer (LAN by default, --memory for none) and serves the whiteboard "
        "page at the printed URL: draw with mouse, pen or touch; strokes are store entries shared "
        "with every peer and page, cursors travel as presence.",
    )
    _whiteboard_arguments(board)

    demo = sub.add_parser(
        "demo",
        help="a self-checking demonstration with several devices",
        description="Devices score on a shared scoreboard at once; one joins late and receives a "
        "snapshot; the demo ends by itself with a VERDICT line, exit 0 when every replica is equal "
        "and no point was lost. By default each device is an OS process talking TLS on 127.0.0.1 "
        "(one leaves and rejoins); --memory runs them all in this process on the in-memory network "
        "(with a partition and its healing).",
    )
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument("--memory", action="store_true", help="every device in this process")
    mode.add_argument(
        "--processes", action="store_true", help="one OS process per device (default with the LAN extra)"
    )
    low, high = DEMO_DEVICES
    demo.add_argument(
        "--devices",
        type=_in_range(int, low, high),
        default=None,
        help=f"{low} to {high} devices (default: 4 processes, 5 in memory)",
    )
    low_s, high_s = DEMO_SECONDS
    demo.add_argument(
        "--seconds",
        type=_in_range(float, low_s, high_s),
        default=None,
        help=f"length of the scoring, {low_s:g} to {high_s:g} s (default: 8 processes, 10 in memory)",
    )
    demo.add_argument("--seed", type=int, default=None, help="--memory: random seed")
    demo.add_argument("--plain", action="store_true", help="--memory: plain text, no live table")
    from ._filecli import add_parsers

    add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        if args.version:
            return _version()
        if args.command == "demo":
            return _demo(args)
        if args.command == "chat":
            return _chat(args)
        if args.command == "peers":
            return _peers(args)
        if args.command == "store":
            return _store(args)
        if args.command == "whiteboard":
            return _whiteboard(args)
        if args.command in ("send", "receive"):
            from ._filecli import run_receive, run_send

            return run_send(args) if args.command == "send" else run_receive(args)
    except MpstoreError as exc:
        print(f"mpstore: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mpstore: interrupted", file=sys.stderr)
        return 130
    _parser().print_help()
    return 0


def _whiteboard_arguments(p: argparse.ArgumentParser) -> None:
    try:
        from .web._cli import add_arguments
    except ImportError as exc:  # the web extra (websockets) is missing: say so when it is used
        p.set_defaults(web_missing=str(exc))
        p.add_argument("rest", nargs=argparse.REMAINDER)
        return
    add_arguments(p, _address)


def _whiteboard(args: argparse.Namespace) -> int:
    if getattr(args, "web_missing", None):
        print(f"mpstore whiteboard needs the web extra (pip install 'mpstore[web]'): {args.web_missing}",
              file=sys.stderr)
        return 2
    from .web._cli import run

    return run(args)


def _version() -> int:
    print(f"mpstore {__version__}")
    try:
        engines = importlib.import_module("mpstore.engines")
        engine = engines.load_engine(None)
        print(f"CRDT engine: {getattr(engine, 'name', type(engine).__name__)}")
    except Exception as exc:
        print(f"CRDT engine: none loadable ({exc})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    """One OS process per device over TLS on 127.0.0.1 when the LAN extra is installed
    (``--processes`` insists on it); ``--memory`` runs every device in this process."""
    mode = "memory" if args.memory else "processes" if args.processes else "auto"
    argv: list[str] = []
    if args.devices is not None:
        argv += ["--devices", str(args.devices)]
    if args.seconds is not None:
        argv += ["--seconds", repr(args.seconds)]
    if mode == "auto":
        mode = "processes" if _lan_available() else "memory"
        if mode == "memory":
            print(
                "mpstore demo: the LAN extra is not installed (pip install 'mpstore[lan]'); "
                "running every device in this process instead",
                file=sys.stderr,
            )
    if mode == "processes":
        from ._demo_lan import run_processes

        return run_processes(argv)
    try:
        demo = importlib.import_module("mpstore._demo")
    except ImportError as exc:
        print(f"mpstore demo is not available in this build ({exc})", file=sys.stderr)
        return 2
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    if args.plain:
        argv.append("--plain")
    result = demo.run_demo(argv)
    return int(result)


def _lan_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("cryptography", "zeroconf"))


# -- chat ---------------------------------------------------------------------------------------


class _Chat(MultipeerConnectivity):
    """The seed's chat, printing through a function that keeps the prompt intact."""

    def __init__(self, out: Callable[[str], None], *args: Any, **kwargs: Any) -> None:
        self._out = out
        self.history: Any = None
        super().__init__(*args, **kwargs)

    def peer_added(self, peer: PeerID) -> None:
        self._out(f"* {peer.display_name} joined")

    def peer_removed(self, peer: PeerID) -> None:
        self._out(f"* {peer.display_name} left")

    def receive(self, message: Any, from_peer: PeerID) -> None:
        self._out(f"{from_peer.display_name}: {message}")


def _chat_transport(args: argparse.Namespace) -> Any:
    lan_options = args.peer or args.port or args.no_discovery or args.host
    if args.transport not in ("auto", "lan") or not lan_options:
        return args.transport
    from .transports.lan import LanTransport

    return LanTransport(host=args.host, port=args.port, peers=args.peer, discovery=not args.no_discovery)


def _chat(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    prompt_session: Any = None
    if interactive:
        try:
            from prompt_toolkit import PromptSession
            from prompt_toolkit.patch_stdout import patch_stdout
        except ImportError:
            print('(pip install "mpstore[cli]" keeps messages apart from your typing)')
        else:
            prompt_session = PromptSession()
    lock = threading.Lock()

    def out(line: str) -> None:
        with lock:
            print(line, flush=True)

    mc = _Chat(
        out,
        args.name,
        args.service,
        transport=_chat_transport(args),
        secret=args.secret,
        data_dir=args.data_dir,
    )
    try:
        if args.data_dir is not None:
            mc.history = mc.shared_dict(HISTORY_STORE)
            _show_history(mc, out)
        address = getattr(mc.transport, "address", None)
        if address is not None:
            out(f"* listening on {_host_port(*address[:2])} (service {args.service!r}); /help for commands")
        if prompt_session is not None:
            with patch_stdout():
                _chat_loop(mc, lambda: str(prompt_session.prompt(f"{args.name}> ")), out)
        else:
            _chat_loop(mc, lambda: _read_line(sys.stdin), out)
    finally:
        mc.end_all()
    return 0


def _host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets (``[::]:43473``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_CHAT_HELP = (
    "commands: /peers (who is here), /history (with --data-dir), /help, /quit; "
    "anything else is sent to everyone"
)
#: The saved store holding the chat's history with --data-dir: time-ordered key -> line.
HISTORY_STORE = "chat-history"
HISTORY_SHOWN = 20


def _show_history(mc: MultipeerConnectivity, out: Callable[[str], None]) -> None:
    history = getattr(mc, "history", None)
    if history is None:
        out("* no history: start the chat with --data-dir to keep one")
        return
    keys = sorted(history.keys())[-HISTORY_SHOWN:]
    if not keys:
        out("* history: empty")
    for key in keys:
        entry = history.get(key)
        if isinstance(entry, dict):
            out(f"[history] {entry.get('from', '?')}: {entry.get('text', '')}")


def _read_line(stream: TextIO) -> str:
    line = stream.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")


def _chat_loop(mc: MultipeerConnectivity, read: Callable[[], str], out: Callable[[str], None]) -> None:
    while True:
        try:
            line = read()
        except (EOFError, KeyboardInterrupt):
            return
        if not line.strip():
            continue
        command = line.strip()
        if command == "/quit":
            return
        if command == "/peers":
            peers = mc.get_peers()
            out(", ".join(p.display_name for p in peers) if peers else "* nobody yet")
            continue
        if command == "/help":
            out(f"* {_CHAT_HELP}")
            continue
        if command == "/history":
            _show_history(mc, out)
            continue
        if command.startswith("/") and not command.startswith("//"):
            out(
                f"* unknown command {command.split()[0]!r}, not sent; {_CHAT_HELP} (// sends a leading /)"
            )
            continue
        if command.startswith("//"):
            line = line.replace("//", "/", 1)
        history = getattr(mc, "history", None)
        if history is not None:  # kept, and passed on to peers when they come
            key = f"{time.time_ns():020d}-{mc.my_peer.id[:8]}"
            history[key] = {"from": mc.my_peer.display_name, "text": line}
        if not mc.get_peers():
            out("* nobody to send to yet" + (" (kept in the history)" if history is not None else ""))
            continue
        try:
            mc.send(line)
        except MpstoreError as exc:
            out(f"* not sent: {exc}")


# -- store --------------------------------------------------------------------------------------


def _store(args: argparse.Namespace) -> int:
    from ._persist import inspect
    from ._values import ValueDecodeError, decode_value
    from .engines import load_engine

    if not os.path.exists(args.path):
        print(f"mpstore store: {args.path!r} does not exist", file=sys.stderr)
        return 2
    engine = load_engine(None)
    path, size, stores = inspect(args.path, engine.new_doc, values=args.name is not None)
    if args.name is not None:
        stores = [s for s in stores if s.name == args.name]
        if not stores:
            print(f"mpstore store: no store {args.name!r} in {path}", file=sys.stderr)
            return 1
    print(f"{path}: {size} bytes on disk, {len(stores)} store(s)")
    for s in stores:
        print(
            f"store {s.name!r}: {len(s.keys)} keys; snapshot {s.snapshot_bytes} B, log {s.log_rows} "
            f"updates ({s.log_bytes} B); history {s.history} updates; opened {s.clients} times"
        )
        shown = s.keys[: max(0, args.keys)]
        for key in shown:
            if s.values is None:
                print(f"  {key}")
                continue
            try:
                text = repr(decode_value(s.values[key]))
            except ValueDecodeError as exc:
                text = f"<undecodable: {exc}>"
            print(f"  {key} = {text if len(text) <= 200 else text[:197] + '...'}")
        if len(shown) < len(s.keys):
            print(f"  ... and {len(s.keys) - len(shown)} more")
    return 0


# -- peers --------------------------------------------------------------------------------------


def _peers(args: argparse.Namespace) -> int:
    service = validate_service_type(args.service)
    from .transports.lan import load_discovery

    found = asyncio.run(_browse(load_discovery(), service, args.wait, args.interface))
    if not found:
        print(f"no {service!r} service found in {args.wait:g} s")
        return 1
    for item in found:
        addresses = ", ".join(f"{h}:{p}" for h, p in item.addresses) or "?"
        info = " ".join(f"{k}={v}" for k, v in sorted(item.discovery_info.items()))
        print(f"{item.display_name}\t{addresses}\t{info}".rstrip())
    return 0


async def _browse(discovery_cls: Any, service: str, wait: float, interfaces: Any) -> list[Any]:
    found: dict[str, Any] = {}
    disc = discovery_cls(
        service_type=service,
        peer_id=None,
        display_name="",
        discovery_info={},
        port=0,
        interfaces=interfaces,
        ip_version="all",
        on_found=lambda f: found.__setitem__(f.peer_id, f),
        on_lost=lambda peer_id: found.pop(peer_id, None),
        advertise=False,
    )
    await disc.start()
    try:
        deadline = time.monotonic() + max(0.0, wait)
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    finally:
        await disc.stop()
    return sorted(found.values(), key=lambda f: (f.display_name, f.peer_id))
