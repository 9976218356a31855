"""Browsers as participants of a store: a y-websocket endpoint, and the whiteboard it serves."""
