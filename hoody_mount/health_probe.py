"""``hoody-mount health``: the container's health check, asked of the running server.

It reads ``/healthz`` on the configured HTTP listener (a wildcard address is asked on
loopback), over HTTPS when the listener serves TLS, without checking the certificate:
it asks the server on this very host whether it serves, not who it is. Exit status 0
while it serves, 1 otherwise, with one line saying why.
"""

from __future__ import annotations

import http.client
import ssl
import sys

from .config import Listen

TIMEOUT = 4.0  # seconds: a check that takes longer has failed


def probe(listen: Listen, tls: bool) -> int:
    """Ask ``/healthz`` at ``listen``; print the answer; 0 while the server serves."""
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "", "::") else listen.host
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, listen.port, timeout=TIMEOUT, context=context
        )
    else:
        conn = http.client.HTTPConnection(host, listen.port, timeout=TIMEOUT)
    where = f"{'https' if tls else 'http'}://{listen}/healthz"
    try:
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
