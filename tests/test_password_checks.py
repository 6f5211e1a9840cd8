"""Password checks under concurrency: scrypt (32 MiB each) runs at most two at a time in
the process, and HTTP requests that bring the same credentials at once share one check;
end to end, a burst of first-time logins keeps the server's memory bounded."""

from __future__ import annotations

import base64
import http.client
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSWORD, Server

from hoody_mount.core import users
from hoody_mount.core.guard import LoginGuard
from hoody_mount.core.users import User, hash_password, verify_password
from hoody_mount.http_transport import auth
from hoody_mount.http_transport.auth import Authenticator, AuthError


class _Gauge:
    """Counts calls and the most running at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = self.calls = 0

    def __enter__(self) -> None:
        with self.lock:
            self.calls += 1
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *_: object) -> None:
        with self.lock:
            self.now -= 1


def test_scrypt_runs_at_most_two_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = hash_password("secret")
    gauge = _Gauge()
    real = users._scrypt_now

    def watched(*args: Any) -> bytes:
        with gauge:
            time.sleep(0.05)
            return real(*args)

    monkeypatch.setattr(users, "_scrypt_now", watched)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda pw: verify_password(pw, stored), ["secret", "x"] * 4))
    assert results == [True, False] * 4
    assert gauge.calls == 8
    assert gauge.most == users.SCRYPT_AT_ONCE


def _environ(name: str, password: str) -> dict[str, Any]:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"REMOTE_ADDR": "127.0.0.1", "HTTP_AUTHORIZATION": f"Basic {token}"}


def test_same_credentials_at_once_share_one_check(monkeypatch: pytest.MonkeyPatch) -> None:
    user = User("alice", password_hash=hash_password("right"))
    authenticator = Authenticator({"alice": user}, LoginGuard())
    gauge = _Gauge()
    real = auth.verify_password

    def watched(password: str, stored: str | None) -> bool:
        with gauge:
            time.sleep(0.2)  # long enough for every request to arrive meanwhile
            return real(password, stored)

    monkeypatch.setattr(auth, "verify_password", watched)

    def attempt(password: str) -> bool:
        try:
            return authenticator.authenticate(_environ("alice", password)).user is user
        except AuthError:
            return False

    with ThreadPoolExecutor(12) as pool:
        assert all(pool.map(attempt, ["right"] * 12))
    assert gauge.calls == 1, "twelve requests, one scrypt check"
    assert attempt("right") and gauge.calls == 1, "then remembered"
    with ThreadPoolExecutor(6) as pool:
        assert not any(pool.map(attempt, ["wrong"] * 6))
    assert gauge.calls == 2, "a wrong password is checked once too"
    assert not attempt("wrong") and gauge.calls == 3, "and never remembered"


def _peak_bytes(pid: int) -> int:
    match = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match, f"no VmHWM for {pid}"
    return int(match.group(1)) << 10


def test_a_burst_of_logins_keeps_memory_bounded(server: Server) -> None:
    """24 clients connect at once with the same password (as rclone's and davfs2's
    parallel connections do): without the shared check and the scrypt cap each would
    hold 32 MiB of scrypt state at the same time."""
    clients = 24
    before = _peak_bytes(server.process.pid)
    start = threading.Barrier(clients)
    token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()

    def fetch(_: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        try:
            start.wait(30)
            connection.request("PROPFIND", "/dav/", headers={
                "Authorization": f"Basic {token}", "Depth": "0",
            })  # fmt: skip
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(fetch, range(clients)))
    assert statuses == [207] * clients
    growth = _peak_bytes(server.process.pid) - before
    assert growth < 150 << 20, f"peak grew by {growth >> 20} MiB for {clients} logins"
