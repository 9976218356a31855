"""The ``mpstore`` command line: ``chat``, ``peers``, ``demo`` and ``--version``.

prompt_toolkit (for ``chat``) and the LAN transport's dependencies are imported only by the
commands that need them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
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


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mpstore", description="Find peers nearby and share data.")
    p.add_argument("--version", action="store_true", help="print the version and the CRDT engine")
    sub = p.add_subparsers(dest="command")

    chat = sub.add_parser("chat", help="a line chat with everyone on the same service")
    chat.add_argument("--name", required=True, help="your display name")
    chat.add_argument("--service", default="chat", help="service type (default: chat)")
    chat.add_argument("--transport", default="auto", help="auto (default), lan or memory")
    chat.add_argument("--host", default=None, help="LAN: address to listen on (default: all)")
    chat.add_argument("--port", type=int, default=0, help="LAN: port to listen on (default: any)")
    chat.add_argument(
        "--peer", type=_address, action="append", default=[], help="LAN: dial HOST:PORT (repeatable)"
    )
    chat.add_argument("--no-discovery", action="store_true", help="LAN: no mDNS, only --peer")

    peers = sub.add_parser("peers", help="list the services of a type found on the LAN")
    peers.add_argument("--service", default="chat", help="service type (default: chat)")
    peers.add_argument("--wait", type=float, default=3.0, help="seconds to listen (default: 3)")
    peers.add_argument(
        "--interface", action="append", default=None, help="interface name or address (repeatable)"
    )

    demo = sub.add_parser(
        "demo",
        help="a self-checking demonstration with several devices: one OS process each over TLS "
        "on 127.0.0.1 (--memory: all in this process, with a partition and its healing)",
    )
    demo.add_argument("args", nargs=argparse.REMAINDER, help="options passed to the demo")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:  # everything after 'demo' belongs to the demo, options included
        return _demo(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.version:
            return _version()
        if args.command == "chat":
            return _chat(args)
        if args.command == "peers":
            return _peers(args)
    except MpstoreError as exc:
        print(f"mpstore: {exc}", file=sys.stderr)
        return 2
    _parser().print_help()
    return 0


def _version() -> int:
    print(f"mpstore {__version__}")
    try:
        engines = importlib.import_module("mpstore.engines")
        engine = engines.load_engine(None)
        print(f"CRDT engine: {getattr(engine, 'name', type(engine).__name__)}")
    except Exception as exc:
        print(f"CRDT engine: none loadable ({exc})")
    return 0


def _demo(argv: list[str]) -> int:
    """One OS process per device over TLS on 127.0.0.1 when the LAN extra is installed
    (``--processes`` insists on it); ``--memory`` runs every device in this process."""
    mode = "auto"
    if argv[:1] in (["--processes"], ["--memory"]):
        mode, argv = argv[0][2:], argv[1:]
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
    result = demo.run_demo(argv)
    return int(result)


def _lan_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("cryptography", "zeroconf"))


# -- chat ---------------------------------------------------------------------------------------


class _Chat(MultipeerConnectivity):
    """The seed's chat, printing through a function that keeps the prompt intact."""

    def __init__(self, out: Callable[[str], None], *args: Any, **kwargs: Any) -> None:
        self._out = out
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

    mc = _Chat(out, args.name, args.service, transport=_chat_transport(args))
    try:
        address = getattr(mc.transport, "address", None)
        if address is not None:
            out(f"* listening on {address[0]}:{address[1]} (service {args.service!r}); /peers, /quit")
        if prompt_session is not None:
            with patch_stdout():
                _chat_loop(mc, lambda: str(prompt_session.prompt(f"{args.name}> ")), out)
        else:
            _chat_loop(mc, lambda: _read_line(sys.stdin), out)
    finally:
        mc.end_all()
    return 0


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
        if line.strip() == "/quit":
            return
        if line.strip() == "/peers":
            peers = mc.get_peers()
            out(", ".join(p.display_name for p in peers) if peers else "* nobody yet")
            continue
        if not mc.get_peers():
            out("* nobody to send to yet")
            continue
        try:
            mc.send(line)
        except MpstoreError as exc:
            out(f"* not sent: {exc}")


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
