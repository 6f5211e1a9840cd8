"""No HTTP client can starve the others (issue 18): slow heads, silent TLS handshakes,
connection floods from one address and slow bodies of one user.

Each attack runs against a real server with few workers (8), from its own loopback
address (127.0.0.2 and up) or as its own user, while an honest client (127.0.0.1, or
another user) must get its answer: bounds on time here are for liveness only (the
answer comes at all, in seconds), never a measure of speed.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import random
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    PASSWORD,
    Vitals,
    assert_back_to_normal,
    http_port,
    password_hash,
    start_server,
    stop_server,
    wait_until,
)

from hoody_mount.core.users import hash_password

JAILED_PASSWORD = "jailed horse battery staple"
THREADS = 8
PER_ADDRESS = 16
UPLOADS_PER_USER = 3
HEAD_TIMEOUT = 2
BODY_TIMEOUT = 3
LIVENESS = 15.0  # seconds an honest request may take under attack, at most


@dataclass
class Web:
    port: int
    root: Path
    log: Path
    tls: bool
    pid: int


def _config(base: Path, tls: bool) -> Path:
    root = base / "root"
    (root / "home" / "jailed").mkdir(parents=True)
    (root / "small.txt").write_text("small\n")
    (root / "home" / "jailed" / "kept.txt").write_text("old content\n")
    config = base / "fair.toml"
    config.write_text(
        f"""
root = "{root}"
state_dir = "{base / "state"}"
shutdown_grace = 3

[ssh]
listen = "127.0.0.1:0"

[http]
listen = "127.0.0.1:0"
tls = {"true" if tls else "false"}
threads = {THREADS}
max_connections_per_address = {PER_ADDRESS}
uploads_per_user = {UPLOADS_PER_USER}
head_timeout = {HEAD_TIMEOUT}
body_timeout = {BODY_TIMEOUT}

[users.root]
password_hash = "{password_hash(PASSWORD)}"

[users.jailed]
password_hash = "{hash_password(JAILED_PASSWORD)}"
root = "/home/jailed"
"""
    )
    return config


def _start(base: Path, tls: bool) -> Iterator[Web]:
    config = _config(base, tls)
    log = base / "server.log"
    process, _, banner = start_server(["--config", str(config)], log)
    web = Web(http_port(banner), base / "root", log, tls, process.pid)
    try:
        assert honest_get(web)[0] == 200  # (what a first request starts is running)
        before = Vitals.of(process.pid)
        yield web
        assert_back_to_normal(process.pid, before)  # every attack here ends so
    finally:
        stop_server(process)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    yield from _start(tmp_path, tls=False)


@pytest.fixture
def tls_web(tmp_path: Path) -> Iterator[Web]:
    yield from _start(tmp_path, tls=True)


def _auth(user: str = "root", password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def honest_get(web: Web, path: str = "/api/v1/files/small.txt") -> tuple[int, float]:
    """An honest GET from 127.0.0.1: its status and how long it took."""
    started = time.monotonic()
    conn: http.client.HTTPConnection
    if web.tls:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", web.port, timeout=LIVENESS, context=_context()
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=LIVENESS)
    try:
        conn.request("GET", path, headers={"Authorization": _auth()})
        reply = conn.getresponse()
        reply.read()
        return reply.status, time.monotonic() - started
    finally:
        conn.close()


def connect_from(web: Web, address: str) -> socket.socket:
    """A TCP connection to the server from the loopback ``address``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((address, 0))
    sock.settimeout(LIVENESS)
    sock.connect(("127.0.0.1", web.port))
    return sock


def read_answer(sock: socket.socket) -> bytes:
    """Whatever the server sends until it closes (or LIVENESS passes)."""
    data = b""
    deadline = time.monotonic() + LIVENESS
    try:
        while time.monotonic() < deadline:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    except OSError:
        pass
    return data


class Drip:
    """Sends a request head a byte at a time on each socket, until stopped."""

    def __init__(self, socks: list[socket.socket], interval: float = 0.5) -> None:
        self.socks = socks
        self.stop = threading.Event()
        self.head = b"GET /api/v1/files/small.txt HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 500
        self.thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self.thread.start()

    def _run(self, interval: float) -> None:
        for index in range(len(self.head)):
            if self.stop.wait(interval):
                return
            for sock in self.socks:
                with contextlib.suppress(OSError):
                    sock.send(self.head[index : index + 1])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.socks:
            sock.close()


def test_slow_request_heads_hold_no_worker_and_time_out(web: Web) -> None:
    """More connections than workers send their heads a byte at a time: an honest
    client is answered meanwhile (before, every worker was held until the attack
    ended), and each slow head gets 408 once the head deadline has passed."""
    socks = [connect_from(web, "127.0.0.2") for _ in range(THREADS + 4)]
    drip = Drip(socks)
    try:
        for _ in range(3):
            status, _took = honest_get(web)
            assert status == 200
        answer = read_answer(socks[0])  # the head never completes
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    finally:
        drip.close()
    assert honest_get(web)[0] == 200


def test_a_kept_alive_connection_sending_its_next_head_slowly_holds_no_worker(web: Web) -> None:
    """After a first request, a client trickles its next head on the same connection:
    the worker does not wait for it (it went back to the intake)."""
    socks = []
    for _ in range(THREADS + 2):
        sock = connect_from(web, "127.0.0.4")
        sock.sendall(
            b"GET /api/v1/files/small.txt HTTP/1.1\r\nHost: x\r\nAuthorization: "
            + _auth().encode()
            + b"\r\n\r\n"
        )
        first = b""
        while b"small\n" not in first:
            piece = sock.recv(65536)
            assert piece, first
            first += piece
        assert first.startswith(b"HTTP/1.1 200"), first[:200]
        socks.append(sock)
    drip = Drip(socks)
    try:
        time.sleep(3)  # (a few bytes of every next head have arrived)
        assert honest_get(web)[0] == 200
    finally:
        drip.close()


def test_connections_per_address_are_capped_with_503(web: Web) -> None:
    """One address may hold at most PER_ADDRESS connections: the next gets 503 with
    Retry-After (never silence), other addresses are served, and the address gets its
    places back as its connections close."""
    held = [connect_from(web, "127.0.0.3") for _ in range(PER_ADDRESS)]
    try:
        time.sleep(0.5)  # (the intake has accepted them all)
        extra = connect_from(web, "127.0.0.3")
        answer = read_answer(extra)
        extra.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"Retry-After:" in answer
        assert honest_get(web)[0] == 200
    finally:
        for sock in held:
            sock.close()

    def served_again() -> bool:
        sock = connect_from(web, "127.0.0.3")
        try:
            sock.sendall(b"GET /api/v1/files/small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         b"Authorization: " + _auth().encode() + b"\r\n\r\n")  # fmt: skip
            return read_answer(sock).startswith(b"HTTP/1.1 200")
        finally:
            sock.close()

    assert wait_until(served_again, LIVENESS)
    refusals = [line for line in web.log.read_text().splitlines() if "refused" in line]
    assert refusals, "a refusal is logged"


def test_a_silent_tls_handshake_stalls_no_one(tls_web: Web) -> None:
    """A connection that never sends its ClientHello: other HTTPS clients are answered
    at once (cheroot shook hands in its accepting thread: 60 s for everyone), and the
    silent one is closed after the handshake deadline. Plain HTTP to the TLS port gets
    a plain-text 400 saying so."""
    silent = [connect_from(tls_web, "127.0.0.5") for _ in range(3)]
    try:
        status, _took = honest_get(tls_web)
        assert status == 200
    finally:
        for sock in silent:
            sock.close()
    plain = connect_from(tls_web, "127.0.0.6")
    plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = read_answer(plain)
    plain.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"HTTPS" in answer


def _slow_put(web: Web, name: str) -> socket.socket:
    sock = connect_from(web, "127.0.0.7")
    sock.sendall(
        f"PUT /api/v1/files/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n".encode()
        + b"Authorization: " + _auth("jailed", JAILED_PASSWORD).encode() + b"\r\n\r\nx"
    )  # fmt: skip
    return sock


def test_one_users_slow_uploads_hold_a_bounded_share_and_stall_out(web: Web) -> None:
    """A user's uploads that send a byte and stop: past UPLOADS_PER_USER at once the
    next gets 503 with Retry-After before its body is read, another user is served all
    along, and a stalled body is dropped (408) after the body deadline, its temp file
    removed and the old file intact."""
    uploads = [_slow_put(web, "kept.txt") for _ in range(UPLOADS_PER_USER)]
    try:
        jail = web.root / "home" / "jailed"
        assert wait_until(lambda: len(list(jail.glob(".kept.txt.hoody-*"))) == UPLOADS_PER_USER, 10)
        refused = _slow_put(web, "other.txt")
        answer = read_answer(refused)
        refused.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"Retry-After: 2" in answer
        for _ in range(3):
            assert honest_get(web)[0] == 200
        stalled = read_answer(uploads[0])
        assert stalled == b"" or stalled.startswith(b"HTTP/1.1 408"), stalled[:200]
    finally:
        for sock in uploads:
            sock.close()
    assert wait_until(lambda: not list(jail.glob(".*.hoody-*")), 10)
    assert (jail / "kept.txt").read_text() == "old content\n"
    assert not (jail / "other.txt").exists()


def test_sigterm_stops_the_server_while_a_client_reads_nothing(tmp_path: Path) -> None:
    """A PROPFIND of a big folder whose client stops reading keeps a worker blocked in
    a send; SIGTERM still ends the process within seconds (it hung on that worker)."""
    config = _config(tmp_path, tls=False)
    folder = tmp_path / "root" / "big"
    folder.mkdir()
    for i in range(20_000):
        (folder / f"file-{i:05d}").touch()
    process, _, banner = start_server(["--config", str(config)], tmp_path / "server.log")
    try:
        web = Web(http_port(banner), tmp_path / "root", tmp_path / "server.log", False, process.pid)
        stuck = socket.create_connection(("127.0.0.1", web.port), timeout=LIVENESS)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.sendall(b"PROPFIND /dav/big/ HTTP/1.1\r\nHost: x\r\nDepth: 1\r\nAuthorization: "
                      + _auth().encode() + b"\r\n\r\n")  # fmt: skip
        assert stuck.recv(100).startswith(b"HTTP/1.1 207")
        time.sleep(1)  # (the server fills the socket's buffers and blocks)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=LIVENESS)
        assert time.monotonic() - started < LIVENESS
        stuck.close()
    finally:
        if process.poll() is None:
            process.kill()


def test_digests_of_one_user_hold_a_bounded_share_and_stop_when_the_client_goes(
    web: Web,
) -> None:
    """Downloads of a 1 TiB sparse file each hash it first for its Repr-Digest (ten
    minutes each): a user's third such download comes at once without the header, a
    third ?sha256 is 503 with Retry-After, other users are served all along, and once
    the clients leave the hashes stop: the user's next digest is answered."""
    jail = web.root / "home" / "jailed"
    with open(jail / "huge.bin", "wb") as handle:
        handle.seek(1 << 40)
        handle.write(b"abc")
    (jail / "small.txt").write_text("small\n")
    auth = _auth("jailed", JAILED_PASSWORD).encode()
    hashing = []
    for _ in range(2):
        sock = connect_from(web, "127.0.0.8")
        sock.sendall(b"GET /api/v1/files/huge.bin HTTP/1.1\r\nHost: x\r\nAuthorization: "
                     + auth + b"\r\n\r\n")  # fmt: skip
        hashing.append(sock)
    try:
        time.sleep(1)  # (both are hashing)
        third = connect_from(web, "127.0.0.8")
        third.sendall(b"GET /api/v1/files/huge.bin HTTP/1.1\r\nHost: x\r\nAuthorization: "
                      + auth + b"\r\n\r\n")  # fmt: skip
        head = b""
        while b"\r\n\r\n" not in head:
            head += third.recv(4096)
        third.close()
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        assert b"Repr-Digest" not in head
        explicit = connect_from(web, "127.0.0.8")
        explicit.sendall(b"GET /api/v1/files/huge.bin?sha256 HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: close\r\nAuthorization: " + auth + b"\r\n\r\n")  # fmt: skip
        answer = read_answer(explicit)
        explicit.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"Retry-After: 5" in answer
        assert honest_get(web)[0] == 200
    finally:
        for sock in hashing:
            sock.close()

    def small_digest() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=LIVENESS)
        conn.request("GET", "/api/v1/files/small.txt?sha256",
                     headers={"Authorization": _auth("jailed", JAILED_PASSWORD)})  # fmt: skip
        reply = conn.getresponse()
        reply.read()
        conn.close()
        return reply.status == 200

    assert wait_until(small_digest, LIVENESS)


def test_one_users_downloads_that_are_never_read_leave_workers_for_others(web: Web) -> None:
    """A user's downloads whose client reads nothing hold their workers for as long as
    the sends wait: past its share (a quarter of the workers, more while a reserve is
    free) the user gets 503 with Retry-After at once, and another user is served all
    along (10 such downloads held every worker: no one else got an answer)."""
    jail = web.root / "home" / "jailed"
    with open(jail / "big.bin", "wb") as handle:
        handle.write(random.randbytes(32 << 20))
    auth = _auth("jailed", JAILED_PASSWORD).encode()
    stuck = []
    answers = []
    for _ in range(10):
        sock = connect_from(web, "127.0.0.10")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /api/v1/files/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: "
                     + auth + b"\r\n\r\n")  # fmt: skip
        answers.append(sock.recv(12))
        stuck.append(sock)
    try:
        assert answers.count(b"HTTP/1.1 200") <= THREADS - THREADS // 4, answers
        assert b"HTTP/1.1 503" in answers, answers
        for _ in range(3):
            assert honest_get(web)[0] == 200
        assert wait_until(lambda: "HTTP requests refused: user jailed is past its share of "
                          "workers from 127.0.0.10" in web.log.read_text(), LIVENESS)  # fmt: skip
    finally:
        for sock in stuck:
            sock.close()


def test_a_slow_body_before_any_login_holds_a_worker_for_seconds_only(web: Web) -> None:
    """Uploads without credentials whose bodies trickle in: the worker answers 401
    after reading at most a couple of seconds of the unwanted body (it drained up to
    64 MB at the client's pace: hours), so an honest client is served meanwhile."""
    socks = []
    for _ in range(THREADS + 2):
        sock = connect_from(web, "127.0.0.11")
        sock.sendall(b"PUT /api/v1/files/x HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 60000000\r\n\r\n" + b"x" * 1000)  # fmt: skip
        socks.append(sock)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(b"x" * 8000)  # (above the minimum rate: only the drain bound)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        answer = read_answer(socks[0])
        assert answer.startswith((b"HTTP/1.1 401", b"HTTP/1.1 503")), answer[:200]
        assert time.monotonic() - started < LIVENESS
        assert honest_get(web)[0] == 200
    finally:
        stop.set()
        thread.join(5)
        for sock in socks:
            sock.close()


def test_many_requests_bringing_one_new_password_at_once_are_all_answered(web: Web) -> None:
    """Requests with the same password wait for one scrypt check; they wait without a
    turn (core/turns.py), or the check could never get one back: 12 such requests on a
    server of 4 turns all hung, and so did every other request. (6: the user's share of
    the workers, beyond which it gets 503.)"""
    results: list[int] = []
    logins = THREADS - 2

    def login(n: int) -> None:
        conn = http.client.HTTPConnection(
            "127.0.0.1", web.port, timeout=LIVENESS, source_address=(f"127.0.0.{2 + n}", 0)
        )
        try:
            conn.request("GET", "/api/v1/files/kept.txt", headers={"Authorization": _auth(
                "jailed", JAILED_PASSWORD)})  # fmt: skip
            reply = conn.getresponse()
            reply.read()
            results.append(reply.status)
        finally:
            conn.close()

    threads = [threading.Thread(target=login, args=(n,)) for n in range(logins)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIVENESS * 2)
    assert results == [200] * logins
    assert honest_get(web)[0] == 200


def test_a_request_that_finds_every_worker_held_gets_503_not_silence(web: Web) -> None:
    """Two users' downloads that are never read hold every worker (one beyond its
    share, the other within it): a third client's request waits for a worker at most
    head_timeout, then gets 503 with Retry-After (it waited, unanswered, for as long as
    the downloads were held); once they end, requests are served again."""
    (web.root / "big.bin").write_bytes(random.randbytes(32 << 20))
    jail = web.root / "home" / "jailed"
    (jail / "big.bin").write_bytes(random.randbytes(32 << 20))
    stuck = []
    answers = []
    for user, password, path, count in (
        ("jailed", JAILED_PASSWORD, "big.bin", THREADS),
        ("root", PASSWORD, "big.bin", 2),
    ):
        auth = _auth(user, password).encode()
        for _ in range(count):
            sock = connect_from(web, "127.0.0.12")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /api/v1/files/" + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: " + auth + b"\r\n\r\n")  # fmt: skip
            answers.append(sock.recv(12))
            stuck.append(sock)
    try:
        assert answers.count(b"HTTP/1.1 200") == THREADS, answers
        third = connect_from(web, "127.0.0.13")
        third.settimeout(HEAD_TIMEOUT + LIVENESS)
        started = time.monotonic()
        third.sendall(b"GET /api/v1/files/small.txt HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")  # fmt: skip
        answer = read_answer(third)
        third.close()
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"Retry-After:" in answer
        assert time.monotonic() - started < HEAD_TIMEOUT + LIVENESS
    finally:
        for sock in stuck:
            sock.close()
    assert wait_until(lambda: honest_get(web)[0] == 200, LIVENESS)


def test_listings_with_bodies_are_not_uploads(web: Web) -> None:
    """A user's PROPFINDs (an XML body each) take no upload slot: with more of them
    under way than ``uploads_per_user`` (rclone lists eight folders at once), one more
    is still answered 207, not 503."""
    body = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'
    held = []
    try:
        for _ in range(UPLOADS_PER_USER + 2):  # (each waits for the rest of its body)
            sock = socket.create_connection(("127.0.0.1", web.port), timeout=LIVENESS)
            sock.sendall(
                b"PROPFIND /dav/ HTTP/1.1\r\nHost: x\r\nDepth: 0\r\nAuthorization: "
                + _auth().encode()
                + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:10]
            )  # fmt: skip
            held.append(sock)
        time.sleep(1)
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=LIVENESS)
        headers = {"Authorization": _auth(), "Depth": "0", "Content-Type": "application/xml"}
        conn.request("PROPFIND", "/dav/", body=body, headers=headers)
        assert conn.getresponse().status == 207
        conn.close()
    finally:
        for sock in held:
            sock.close()
