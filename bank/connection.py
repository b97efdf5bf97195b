"""Drop the client's TCP connection from inside a WSGI request, with no response.

``drop_after`` must look to the caller exactly like a bank that crashed after
committing: the request was sent, nothing came back. WSGI has no way to say
that, so this reaches the socket through the server's environ when the server
is waitress (what ``python -m source_bank`` runs).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping


def drop_client_connection(environ: Mapping[str, object]) -> bool:
    """Shut the request's socket down both ways; False if the server does not expose it."""
    probe = environ.get("waitress.client_disconnected")
    channel = getattr(probe, "__self__", None)
    sock = getattr(channel, "socket", None)
    if not isinstance(sock, socket.socket):
        return False
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    return True
