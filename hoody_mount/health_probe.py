"""``hoody-mount health``: the container's health check, asked of the running server.

It reads ``/healthz`` on the configured HTTP listener (a wildcard address is asked on
loopback), over HTTPS when the listener serves TLS, without checking the certificate:
it asks the server on this very host whether it serves, not who it is. Where the
configuration says port 0 (the server picks a free one at start), the running server
tells its port over the control socket. Exit status 0 while it serves, 1 otherwise,
with one line saying why.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import sys
from pathlib import Path

from . import control
from .config import Listen
from .proxy_protocol import LOCAL_V2, Network, is_trusted

TIMEOUT = 4.0  # seconds: a check that takes longer has failed


def probe(listen: Listen, tls: bool, trusted: tuple[Network, ...] = ()) -> int:
    """Ask ``/healthz`` at ``listen``; print the answer; 0 while the server serves.
    From an address among the ``trusted`` proxies, which must start with a PROXY
    header, it sends a LOCAL one (it speaks for itself)."""
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "", "::") else listen.host
    conn = http.client.HTTPConnection(host, listen.port, timeout=TIMEOUT)
    where = f"{'https' if tls else 'http'}://{listen}/healthz"
    try:
        sock = socket.create_connection((host, listen.port), timeout=TIMEOUT)
        if is_trusted(str(sock.getsockname()[0]), trusted):
            sock.sendall(LOCAL_V2)
        if tls:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=host)
        conn.sock = sock
        conn.request("GET", "/healthz")
        reply = conn.getresponse()
        body = reply.read().decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        print(f"hoody-mount: {where}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(body)
    return 0 if reply.status == 200 else 1


def bound_listener(state_dir: Path) -> tuple[Listen, bool] | None:
    """The running server's HTTP listener and whether it serves TLS, asked over the
    control socket in ``state_dir``; None, with the reason printed, when none answers."""
    try:
        _ssh, http, tls = control.listeners(state_dir)
    except control.ControlError as exc:
        print(f"hoody-mount: the HTTP port is 0 (picked at start): {exc}", file=sys.stderr)
        return None
    return http, tls
