"""A web worker waits briefly on a kept-alive connection for the client's next request
and serves it itself, unless no other worker is idle; requests are answered in order and
a connection that went quiet is served again when the client comes back."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from hoody_mount.config import HTTPOptions, Listen
from hoody_mount.http_transport import server as web_server
from hoody_mount.http_transport.server import WebServer


class _App:
    """Answers "ok <path>" and notes which worker thread served each request."""

    def __init__(self) -> None:
        self.workers: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.workers.append(threading.current_thread().name)
        body = f"ok {environ['PATH_INFO']}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[WebServer] = []

    def start(threads: int, app: _App) -> int:
        server = WebServer(app, Listen("127.0.0.1", 0), None, HTTPOptions(threads=threads))
        server.start()
        started.append(server)
        return server.port

    yield start
    for server in started:
        server.stop()


def _get(conn: http.client.HTTPConnection, path: str) -> str:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.read().decode()


def test_a_serial_client_keeps_its_worker(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_server, "LINGER", 2.0)  # whatever this machine's speed
    app = _App()
    conn = http.client.HTTPConnection("127.0.0.1", serve(4, app), timeout=10)
    answers = [_get(conn, f"/{i}") for i in range(20)]
    conn.close()
    assert answers == [f"ok /{i}" for i in range(20)]
    assert len(set(app.workers)) == 1, app.workers


def test_the_last_idle_worker_does_not_linger(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_server, "LINGER", 60.0)
    port = serve(1, _App())
    first = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    assert _get(first, "/a") == "ok /a"
    second = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    started = time.monotonic()
    assert _get(second, "/b") == "ok /b"
    assert time.monotonic() - started < 30, "a new client waited for a lingering worker"
    assert _get(first, "/c") == "ok /c"  # the first connection still works
    first.close()
    second.close()


def test_pipelined_requests_are_answered_in_order(serve: Any) -> None:
    port = serve(2, _App())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        requests = b"".join(f"GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(5))
        sock.sendall(requests)
        received = b""
        while received.count(b"ok /") < 5 or not received.endswith(b"ok /4"):
            piece = sock.recv(65536)
            assert piece, received
            received += piece
    bodies = [part.split(b"\r\n\r\n", 1)[1][:5] for part in received.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [f"ok /{i}".encode() for i in range(5)]


def test_a_client_back_after_a_pause_is_served(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_server, "LINGER", 0.05)
    conn = http.client.HTTPConnection("127.0.0.1", serve(2, _App()), timeout=10)
    assert _get(conn, "/x") == "ok /x"
    time.sleep(0.5)  # the worker gave up waiting and handed the connection back
    assert _get(conn, "/y") == "ok /y"
    conn.close()
