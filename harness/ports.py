"""Free TCP ports on 127.0.0.1, for servers a test or a benchmark starts itself.

The system picks the port (bind to port 0), so parallel test workers do not collide on it.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
