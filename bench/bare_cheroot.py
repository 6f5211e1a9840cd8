"""The floor for WebDAV request costs: a bare WSGI app on cheroot that only answers GET.

Usage: ``python bench/bare_cheroot.py ROOT USER PASSWORD``. Binds 127.0.0.1 on a free
port, prints ``cheroot listening on 127.0.0.1:PORT`` and serves until SIGTERM. It checks
the Basic credentials by string comparison, reads the whole file and sends it: no
WebDAV, no locks, no properties, no jail. Both hoody-mount and stock WsgiDAV run on
cheroot, so neither can answer a small GET for less than this app does.
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from cheroot_run import serve


def make_app(root: str, user: str, password: str) -> Callable[..., Iterable[bytes]]:
    """A WSGI app serving GET of the files under ``root`` to one user."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_AUTHORIZATION") != expected:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="floor"')])
            return [b""]
        if environ["REQUEST_METHOD"] != "GET":
            start_response("405 Method Not Allowed", [("Allow", "GET")])
            return [b""]
        parts = [p for p in environ["PATH_INFO"].split("/") if p]
        if any(p in (".", "..") for p in parts):
            start_response("400 Bad Request", [])
            return [b""]
        try:
            with open(os.path.join(root, *parts), "rb") as handle:
                body = handle.read()
        except OSError:
            start_response("404 Not Found", [])
            return [b""]
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def main(argv: list[str]) -> None:
    """Serve ``ROOT`` until SIGTERM."""
    root, user, password = argv
    serve(make_app(root, user, password), "cheroot")


if __name__ == "__main__":
    main(sys.argv[1:])
