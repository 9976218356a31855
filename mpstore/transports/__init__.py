"""Transports: the memory network (shipped for tests), the LAN, and Multipeer Connectivity."""
