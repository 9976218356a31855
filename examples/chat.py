"""The original wrapper's line chat, as-is: run it on two devices on the same network.

    python examples/chat.py

(Prompts and incoming messages may mix, as in the original; `mpstore chat` keeps them apart.)
Set MPSTORE_TRANSPORT=memory to try it without a network.
"""

import mpstore as multipeer

my_name = input("Name: ")

mc = multipeer.MultipeerConnectivity(display_name=my_name, service_type="chat")

try:
    while True:
        chat_message = input("Message: ")
        mc.send(chat_message)
except (EOFError, KeyboardInterrupt):
    pass
finally:
    mc.end_all()
