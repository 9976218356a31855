"""Private pieces of the LAN transport: framing and handshake (sans-IO), TLS, discovery."""
