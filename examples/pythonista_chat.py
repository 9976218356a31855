"""The seed's cleaner chat, for Pythonista on iOS: a message log above a text field.

Run it in Pythonista on two or more devices on the same Wi-Fi or Bluetooth. Elsewhere this file
imports (for tests) but does not run: it needs Pythonista's ``ui`` module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mpstore

try:  # Pythonista's modules; absent elsewhere
    import ui  # type: ignore[import-not-found]
    from objc_util import on_main_thread  # type: ignore[import-not-found]
except ImportError:
    ui = None

    def on_main_thread(func: Any) -> Any:
        return func


#: iOS lets an app browse only the Bonjour types its Info.plist declares (see docs/MC.md); if
#: this one is refused you get mpstore.ServiceTypeNotDeclared: change it to one that is declared.
SERVICE_TYPE = "chat"


class Chat(mpstore.MultipeerConnectivity):
    """Writes peers coming and going, and their messages, to ``log``."""

    def __init__(self, name: str, log: Callable[[str], None], **kwargs: Any) -> None:
        self.log = log
        super().__init__(display_name=name, service_type=SERVICE_TYPE, **kwargs)

    def peer_added(self, peer: mpstore.PeerID) -> None:
        self.log(f"* {peer.display_name} joined")

    def peer_removed(self, peer: mpstore.PeerID) -> None:
        self.log(f"* {peer.display_name} left")

    def receive(self, message: Any, from_peer: mpstore.PeerID) -> None:
        self.log(f"{from_peer.display_name}: {message}")


def main() -> None:
    """Ask for a name, show the chat, end the session when the view closes."""
    if ui is None:
        raise SystemExit(
            "pythonista_chat.py needs Pythonista's ui module (iOS); on a computer run examples/chat.py"
        )
    import console  # type: ignore[import-not-found]

    name = console.input_alert("mpstore chat", "Your name") or "Peer"
    width, height = ui.get_screen_size()
    log_view = ui.TextView(frame=(0, 0, width, height - 88), flex="WH", editable=False)
    field = ui.TextField(
        frame=(8, height - 80, width - 16, 36),
        flex="WT",
        placeholder="Message",
        clear_button_mode="while_editing",
    )

    def append(line: str) -> None:
        log_view.text += line + "\n"

    log: Callable[[str], None] = on_main_thread(append)  # callbacks come on another thread
    chat = Chat(name, log)

    def send(sender: Any) -> None:
        text = sender.text.strip()
        if text:
            sender.text = ""
            log(f"me: {text}")
            chat.send(text)

    field.action = send

    class ChatView(ui.View):  # type: ignore[misc]
        def will_close(self) -> None:
            chat.end_all()

    view = ChatView(name=f"mpstore chat: {name}", background_color="white")
    view.add_subview(log_view)
    view.add_subview(field)
    view.present("fullscreen")
    field.begin_editing()


if __name__ == "__main__":
    main()
