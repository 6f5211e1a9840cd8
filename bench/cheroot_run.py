"""Run a WSGI app on cheroot as the bench's anchors do: loopback, a free port, a banner."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from cheroot import wsgi


def serve(app: Callable[..., Any], name: str) -> None:
    """Bind 127.0.0.1 on a free port with 50 threads (as the ``wsgidav`` CLI does), print
    ``NAME listening on 127.0.0.1:PORT`` and serve until SIGTERM or SIGINT."""
    server = wsgi.Server(bind_addr=("127.0.0.1", 0), wsgi_app=app, numthreads=50)
    server.prepare()
    host, port = server.bind_addr[:2]
    print(f"{name} listening on {host}:{port}", flush=True)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve()
    finally:
        server.stop()
