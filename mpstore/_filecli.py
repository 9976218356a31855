"""``mpstore send FILE [--to NAME]`` and ``mpstore receive [--dir DIR]``, with rich progress bars."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

from ._errors import MpstoreError, Timeout, TransferFailed
from ._filenode import FileTransfer
from ._peer import PeerID
from ._wrapper import MultipeerConnectivity

__all__ = ["add_parsers", "run_receive", "run_send"]


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (port 1..65535), got {text!r}")
    return host.strip("[]"), int(port)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=None, help="your display name (default: the host name)")
    p.add_argument("--service", default="files", help="service type (default: files)")
    p.add_argument("--secret", default=None, help="group secret: only peers with the same secret connect")
    p.add_argument("--host", default=None, help="address to listen on (default: all)")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: any)")
    p.add_argument("--peer", type=_address, action="append", default=[], help="dial HOST:PORT (repeatable)")
    p.add_argument("--no-discovery", action="store_true", help="no mDNS, only --peer")
    p.add_argument("--plain", action="store_true", help="plain progress lines instead of a live bar")


def add_parsers(sub: Any) -> None:
    """Add the ``send`` and ``receive`` commands to the CLI's subparsers."""
    send = sub.add_parser("send", help="send a file to a peer on the LAN (with a progress bar)")
    send.add_argument("file", help="the file to send")
    send.add_argument("--to", default=None, help="the receiver's display name (default: every peer found)")
    send.add_argument(
        "--wait", type=_seconds, default=15.0, help="seconds to wait for the peer (default: 15)"
    )
    _common(send)
    receive = sub.add_parser("receive", help="receive files from peers on the LAN into a folder")
    receive.add_argument("--dir", default=".", help="where received files go (default: here)")
    receive.add_argument(
        "--count", type=_count, default=0, help="exit after this many files (default: never)"
    )
    receive.add_argument(
        "--timeout", type=_seconds, default=0, help="exit after this many seconds (default: never)"
    )
    _common(receive)


def _transport(args: argparse.Namespace) -> Any:
    from .transports.lan import LanTransport

    return LanTransport(host=args.host, port=args.port, peers=args.peer, discovery=not args.no_discovery)


def _display_name(args: argparse.Namespace, default: str) -> str:
    if args.name:
        return str(args.name)
    import socket

    return (socket.gethostname().split(".")[0] or default)[:63]


class _Quiet(MultipeerConnectivity):
    def peer_added(self, peer: PeerID) -> None:
        pass

    def peer_removed(self, peer: PeerID) -> None:
        pass

    def receive(self, message: Any, from_peer: PeerID) -> None:
        pass


class _Receiver(_Quiet):
    """Accepts every offer into the folder; keeps the handles for the progress display."""

    def __init__(self, folder: str, *args: Any, **kwargs: Any) -> None:
        self.lock = threading.Lock()
        self.incoming: list[tuple[FileTransfer, PeerID]] = []
        self.folder = folder
        super().__init__(*args, file_dir=folder, **kwargs)

    def accept_file(self, transfer: FileTransfer, from_peer: PeerID) -> bool:
        with self.lock:
            self.incoming.append((transfer, from_peer))
        return True

    def file_received(self, transfer: FileTransfer, from_peer: PeerID) -> None:
        pass


class _Bars:
    """A rich progress display, or plain lines when asked (or when rich is missing)."""

    def __init__(self, plain: bool) -> None:
        self._rich: Any = None
        self._tasks: dict[int, Any] = {}
        self._last: dict[int, str] = {}
        if not plain:
            try:
                from rich.progress import (
                    BarColumn,
                    DownloadColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                    TransferSpeedColumn,
                )
            except ImportError:
                pass
            else:
                self._rich = Progress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                )

    def __enter__(self) -> _Bars:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()

    def show(self, handle: FileTransfer, label: str) -> None:
        key = id(handle)
        if self._rich is not None:
            task = self._tasks.get(key)
            if task is None:
                task = self._tasks[key] = self._rich.add_task(label, total=handle.total_bytes or 1)
            done = (handle.total_bytes or 1) if handle.state == "done" else handle.bytes_done
            self._rich.update(task, completed=done, description=f"{label} [{handle.state}]")
            return
        line = f"{label}: {handle.progress:.0%} {handle.state}"
        if self._last.get(key) != line:
            self._last[key] = line
            print(line, flush=True)

    def note(self, text: str) -> None:
        if self._rich is not None:
            self._rich.console.print(text)
        else:
            print(text, flush=True)


def run_send(args: argparse.Namespace) -> int:
    """``mpstore send``: offer one file, show its progress, exit 0 once every peer verified it."""
    if not os.path.isfile(args.file):
        why = "not a file (a folder)" if os.path.isdir(args.file) else "no such file"
        print(f"mpstore send: {why}: {args.file}", file=sys.stderr)
        return 2
    mc = _Quiet(_display_name(args, "sender"), args.service, transport=_transport(args), secret=args.secret)
    try:
        target: Any = None
        deadline = time.monotonic() + args.wait
        while True:
            peers = mc.get_peers()
            if args.to is None and peers:
                time.sleep(0.3)  # let the others that are about to connect connect too
                break
            named = [p for p in peers if p.display_name == args.to]
            if named:
                target = named[0]
                break
            if time.monotonic() > deadline:
                who = f"peer named {args.to!r}" if args.to else "peer"
                print(f"mpstore send: no {who} found within {args.wait:g} s", file=sys.stderr)
                return 1
            time.sleep(0.1)
        handle = mc.send_file(args.file, target)
        names = ", ".join(p.display_name for p in ([target] if target else mc.get_peers()))
        label = f"{os.path.basename(args.file)} -> {names}"
        with _Bars(args.plain) as bars:
            while not handle.done:
                bars.show(handle, label)
                time.sleep(0.1)
            bars.show(handle, label)
        try:
            handle.wait()
        except TransferFailed as exc:
            print(f"mpstore send: {exc}", file=sys.stderr)
            return 1
        print(f"sent {os.path.basename(args.file)} ({handle.size} bytes, sha256 {handle.sha256[:16]}...)")
        return 0
    finally:
        mc.end_all()


def run_receive(args: argparse.Namespace) -> int:
    """``mpstore receive``: accept files into --dir until --count files arrived, --timeout, or ^C."""
    folder = os.path.abspath(args.dir)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        print(f"mpstore receive: cannot use {folder!r} as the folder: {exc.strerror or exc}", file=sys.stderr)
        return 2
    mc = _Receiver(
        folder, _display_name(args, "receiver"), args.service, transport=_transport(args), secret=args.secret
    )
    received = failed = 0
    try:
        address = getattr(mc.transport, "address", None)
        where = f" on port {address[1]}" if address else ""
        print(f"receiving into {folder} as {mc.my_peer.display_name!r}{where} (service {args.service!r})")
        deadline = time.monotonic() + args.timeout if args.timeout else None
        seen: set[int] = set()
        with _Bars(args.plain) as bars:
            while not args.count or received + failed < args.count:
                if deadline is not None and time.monotonic() > deadline:
                    raise Timeout(f"{received} file(s) received in {args.timeout:g} s")
                with mc.lock:
                    incoming = list(mc.incoming)
                for handle, peer in incoming:
                    label = f"{handle.ref.name} <- {peer.display_name}"
                    bars.show(handle, label)
                    if handle.done and id(handle) not in seen:
                        seen.add(id(handle))
                        if handle.state == "done":
                            received += 1
                            bars.note(f"received {handle.path} ({handle.size} bytes, sha256 verified)")
                        else:
                            failed += 1
                            bars.note(f"failed {handle.ref.name!r} from {peer.display_name}: {handle.error}")
                time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    except MpstoreError as exc:
        print(f"mpstore receive: {exc}", file=sys.stderr)
        return 1
    finally:
        mc.end_all()
    return 0 if failed == 0 else 1
