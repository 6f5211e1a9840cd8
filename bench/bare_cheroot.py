"""The floor for WebDAV request costs: a bare WSGI app on cheroot.

Usage: ``python bench/bare_cheroot.py ROOT USER PASSWORD``. Binds 127.0.0.1 on a free
port, prints ``cheroot listening on 127.0.0.1:PORT`` and serves until SIGTERM. It checks
the Basic credentials by string comparison, and answers three methods:

- GET reads the whole file and sends it;
- MKCOL makes the folder;
- PUT keeps what hoody-mount promises of an upload, and nothing more: the body goes to
  a temp file beside the target, which is fsynced, renamed over the target, and its
  folder fsynced, before the answer.

No WebDAV beyond that, no locks, no properties, no jail, no logs. Both hoody-mount and
stock WsgiDAV run on cheroot, so neither can answer a small GET, or keep a small upload,
for less than this app does.
"""

from __future__ import annotations

import base64
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from cheroot_run import serve


def make_app(root: str, user: str, password: str) -> Callable[..., Iterable[bytes]]:
    """A WSGI app serving GET, MKCOL and PUT under ``root`` to one user."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_AUTHORIZATION") != expected:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="floor"')])
            return [b""]
        method = environ["REQUEST_METHOD"]
        parts = [p for p in environ["PATH_INFO"].split("/") if p]
        if any(p in (".", "..") for p in parts):
            start_response("400 Bad Request", [("Content-Length", "0")])
            return [b""]
        path = os.path.join(root, *parts)
        try:
            if method == "GET":
                with open(path, "rb") as handle:
                    body = handle.read()
            elif method == "MKCOL":
                os.mkdir(path)
                start_response("201 Created", [("Content-Length", "0")])
                return [b""]
            elif method == "PUT":
                _keep(path, environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
                start_response("201 Created", [("Content-Length", "0")])
                return [b""]
            else:
                start_response("405 Method Not Allowed", [("Allow", "GET, MKCOL, PUT")])
                return [b""]
        except OSError:
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return app


def _keep(path: str, body: bytes) -> None:
    """Replace ``path`` with ``body`` as a durable upload: temp file, fsync, rename, and
    an fsync of the folder."""
    temp = f"{path}.{os.getpid()}-{threading.get_ident()}.part"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, path)
    folder = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def main(argv: list[str]) -> None:
    """Serve ``ROOT`` until SIGTERM."""
    root, user, password = argv
    serve(make_app(root, user, password), "cheroot")


if __name__ == "__main__":
    main(sys.argv[1:])
