"""The PROXY protocol: the parser (versions 1 and 2, partial and hostile headers), and
both listeners behind a trusted proxy on 127.0.0.1: the client a header names is the
address that logs, bans and caps see; a trusted peer without a header is dropped; a
header from an untrusted peer is never honoured."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from conftest import PASSWORD, Server, require, served, server_log, wait_until

from hoody_mount.config import ConfigError, load
from hoody_mount.proxy_protocol import (
    V1_LIMIT,
    V2_LIMIT,
    V2_SIGNATURE,
    Header,
    ProxyHeaderError,
    is_trusted,
    networks,
    parse,
    take,
)

TRUST_LOOPBACK = 'trusted_proxies = ["127.0.0.1/32"]'
TRUST_ELSEWHERE = 'trusted_proxies = ["192.0.2.0/24", "2001:db8::/32"]'
GUESSER, OTHER = "203.0.113.7", "203.0.113.8"  # two clients behind one proxy


def v2(address: str | None, port: int = 40000, tlvs: bytes = b"") -> bytes:
    """A version 2 header: PROXY over TCP from ``address``, or LOCAL when None."""
    if address is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    source = socket.inet_pton(family, address)
    target = socket.inet_pton(family, "::1" if family == socket.AF_INET6 else "127.0.0.1")
    body = source + target + struct.pack("!HH", port, 22) + tlvs
    kind = 0x21 if family == socket.AF_INET6 else 0x11
    return V2_SIGNATURE + bytes([0x21, kind]) + struct.pack("!H", len(body)) + body


def v1(address: str, port: int = 40000) -> bytes:
    kind = "TCP6" if ":" in address else "TCP4"
    target = "::1" if ":" in address else "127.0.0.1"
    return f"PROXY {kind} {address} {target} {port} 8080\r\n".encode()


# -- the parser --------------------------------------------------------------------------------


def test_version_1_headers() -> None:
    line = v1(GUESSER, 51234)
    assert parse(line + b"SSH-2.0-x\r\n") == Header(len(line), (GUESSER, 51234))
    line = v1("2001:db8::5", 1)
    assert parse(line + b"GET /") == Header(len(line), ("2001:db8::5", 1))
    assert parse(b"PROXY UNKNOWN\r\nrest") == Header(15, None)
    assert parse(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n") == Header(31, None)


def test_version_2_headers() -> None:
    header = v2(GUESSER, 51234)
    assert len(header) == 28
    assert parse(header + b"\x16\x03\x01") == Header(28, (GUESSER, 51234))
    tlv = b"\x01\x00\x02h2" + b"\x04\x00\x05hello"  # ALPN, NOOP: skipped
    header = v2("2001:db8::7", 443, tlv)
    assert parse(header + b"SSH-2.0") == Header(16 + 36 + len(tlv), ("2001:db8::7", 443))
    assert parse(v2(None) + b"GET") == Header(16, None), "LOCAL: the proxy's own address"
    assert parse(v2(None, tlvs=b"\x04\x00\x00")) == Header(19, None)
    unspec = V2_SIGNATURE + b"\x21\x00\x00\x00"
    assert parse(unspec) == Header(16, None), "PROXY with family UNSPEC: no address"


@pytest.mark.parametrize("header", [v1(GUESSER), v1("::1"), v2(GUESSER), v2("2001:db8::1")])
def test_every_part_of_a_header_waits_for_more(header: bytes) -> None:
    for end in range(len(header)):
        assert parse(header[:end]) is None, header[:end]
    whole = parse(header)
    assert whole is not None and whole.length == len(header)
    assert parse(header + b"SSH-2.0") == whole, "what follows is not the header's"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"GET / HTTP/1.1\r\n", "no PROXY header"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "no PROXY header"),
        (b"PROXZ TCP4", "not a PROXY version 1"),
        (b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "unknown form"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "unknown form"),
        (b"PROXY TCP4 1.2.3.400 1.2.3.4 1 2\r\n", "bad address"),
        (b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n", "bad address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "bad address"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", "bad port"),
        (b"PROXY TCP4 1.2.3.4 1.2.3.4 \xff 2\r\n", "not ASCII"),
        (b"PROXY " + b"9" * V1_LIMIT, "without an end in 107 bytes"),
        (V2_SIGNATURE[:5] + b"X", "not a PROXY version 2"),
        (V2_SIGNATURE + b"\x11\x11\x00\x0c", "version 1, command 1"),
        (V2_SIGNATURE + b"\x22\x11\x00\x0c", "version 2, command 2"),
        (V2_SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12), "transport 2 (TCP only)"),
        (V2_SIGNATURE + b"\x21\x41\x00\x0c" + bytes(12), "family 4"),
        (V2_SIGNATURE + b"\x21\x11\x00\x08" + bytes(8), "too short for its addresses"),
        (V2_SIGNATURE + b"\x21\x11\xff\xff", f"of {16 + 0xFFFF} bytes (at most {V2_LIMIT})"),
    ],
)
def test_garbage_is_refused_with_a_reason(data: bytes, words: str) -> None:
    with pytest.raises(ProxyHeaderError) as refused:
        parse(data)
    assert words in str(refused.value)


def test_take_reads_the_header_and_not_a_byte_more() -> None:
    """Over a real socket: a header sent in pieces is taken whole; what follows it
    stays in the socket for the protocol behind it."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        held = bytearray()
        header = v2(GUESSER, 7)
        assert take(ours, held) is None  # nothing yet
        theirs.sendall(header[:10])
        assert take(ours, held) is None and held == header[:10]
        theirs.sendall(header[10:] + b"SSH-2.0-client\r\n")
        assert take(ours, held) == Header(len(header), (GUESSER, 7))
        assert ours.recv(100) == b"SSH-2.0-client\r\n"
        theirs.sendall(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\n")
        held = bytearray()
        assert take(ours, held) == Header(32, ("1.2.3.4", 1))
        assert ours.recv(100) == b"GET / HTTP/1.1\r\n"
        theirs.sendall(b"PROXY TCP4 1.2")
        theirs.shutdown(socket.SHUT_WR)
        held = bytearray()
        assert take(ours, held) is None
        with pytest.raises(ProxyHeaderError, match="ended before a whole PROXY header"):
            take(ours, held)


def test_trust_goes_by_network() -> None:
    trusted = networks(["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"])
    assert is_trusted("10.1.2.3", trusted) and is_trusted("192.0.2.1", trusted)
    assert is_trusted("::ffff:10.9.9.9", trusted), "an IPv4-mapped peer of a dual-stack socket"
    assert is_trusted("2001:db8:1::1", trusted)
    assert not is_trusted("192.0.2.2", trusted) and not is_trusted("11.0.0.1", trusted)
    assert not is_trusted("10.0.0.1", ()) and not is_trusted("nonsense", trusted)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('["10.0.0.1/8"]', "has host bits set"),
        ('["10.0.0.0/33"]', "10.0.0.0/33"),
        ('["proxy.example"]', "does not appear to be an IPv4 or IPv6 network"),
        ("[1]", "expected a list of strings"),
    ],
)
def test_a_bad_cidr_is_a_config_error_naming_the_key(
    tmp_path: Path, value: str, words: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f"trusted_proxies = {value}\n[users.root]\nauthorized_keys = []\n")
    with pytest.raises(ConfigError) as refused:
        load(config)
    assert f"{config}: trusted_proxies: " in str(refused.value) and words in str(refused.value)
    config.write_text('trusted_proxies = ["10.0.0.0/8", "::1"]\n[users.root]\n')
    assert [str(n) for n in load(config).trusted_proxies] == ["10.0.0.0/8", "::1/128"]


# -- behind a trusted proxy --------------------------------------------------------------------


@pytest.fixture
def proxied(tmp_path: Path, client_key: Path) -> Iterator[Server]:
    """A server that trusts 127.0.0.1 as a proxy, serving HTTPS."""
    with served(tmp_path, client_key, flags=("--tls", "--log-level", "debug"),
                top=TRUST_LOOPBACK) as running:  # fmt: skip
        yield running


def _through(port: int, header: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(header)
    return sock


def _ssh_login(server: Server, header: bytes, password: str) -> bool:
    """A password login over a connection that starts with ``header``, then an SFTP
    listing: whether it all worked (False when refused, or when the server ended the
    connection)."""
    transport = paramiko.Transport(_through(server.port, header))
    try:
        transport.connect(username="root", password=password)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        with sftp:
            return "share" in sftp.listdir("/")
    except (paramiko.SSHException, EOFError, OSError):
        return False
    finally:
        transport.close()


def _https(server: Server, header: bytes, password: str | None) -> int:
    """The status of one GET over TLS on a connection that starts with ``header``."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    auth = ""
    if password is not None:
        token = base64.b64encode(f"root:{password}".encode()).decode()
        auth = f"Authorization: Basic {token}\r\n"
    with context.wrap_socket(_through(server.http_port, header)) as sock:
        head = f"GET /api/v1/files/?json HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n"
        sock.sendall(head.encode() + b"\r\n")
        return _status(sock)


def _status(sock: socket.socket) -> int:
    reply = b""
    while b"\r\n" not in reply:
        data = sock.recv(4096)
        assert data, f"the connection closed without an answer: {reply!r}"
        reply += data
    return int(reply.split(b" ", 2)[1])


def _logged(server: Server, text: str) -> bool:
    return wait_until(lambda: text in server.log.read_text(), 5)


def test_ssh_ten_wrong_passwords_ban_the_forwarded_client_alone(proxied: Server) -> None:
    """Ten guesses from one client behind the proxy ban that client; another client
    behind the same proxy (the same peer address) still logs in."""
    for attempt in range(10):
        assert not _ssh_login(proxied, v2(GUESSER, 50000 + attempt), f"guess-{attempt}")
    assert not _ssh_login(proxied, v2(GUESSER), PASSWORD), "the guesser is banned"
    assert _ssh_login(proxied, v2(OTHER), PASSWORD), "the other client is not"
    assert _ssh_login(proxied, v1("2001:db8::9"), PASSWORD), "nor is one named by version 1"
    for line in (
        f'failed login for "root" from {GUESSER} over ssh',
        f"banned {GUESSER} for 300 s after 10 failed logins",
        f"login root from {OTHER} over ssh (password)",
        "login root from 2001:db8::9 over ssh (password)",
        f"SSH connection of {OTHER} through the proxy 127.0.0.1",
    ):
        assert _logged(proxied, line), server_log(proxied)
    assert "from 127.0.0.1 over ssh" not in proxied.log.read_text()


def test_https_ten_wrong_passwords_ban_the_forwarded_client_alone(proxied: Server) -> None:
    statuses = [_https(proxied, v2(GUESSER), f"guess-{attempt}") for attempt in range(10)]
    assert statuses == [401] * 10
    assert _logged(proxied, f"banned {GUESSER} for 300 s after 10 failed logins")
    assert _https(proxied, v2(GUESSER), PASSWORD) == 429, "the guesser is banned"
    assert _https(proxied, v2(OTHER), PASSWORD) == 200, "the other client is not"
    assert _https(proxied, v1("2001:db8::9"), PASSWORD) == 200
    for line in (
        f'failed login for "root" from {GUESSER} over http',
        f"login root from {OTHER} over http (password)",
        f"user=root address={OTHER}",
        f"user=- address={GUESSER}",
        "user=root address=2001:db8::9",
        f"connection of {OTHER} through the proxy 127.0.0.1",
    ):
        assert _logged(proxied, line), server_log(proxied)
    assert "address=127.0.0.1" not in proxied.log.read_text()


def test_local_headers_leave_the_proxys_own_address(proxied: Server) -> None:
    """LOCAL (a proxy's health check) names no client: the proxy's address stands."""
    assert _ssh_login(proxied, v2(None), PASSWORD)
    assert _https(proxied, v2(None), PASSWORD) == 200
    assert _logged(proxied, "login root from 127.0.0.1 over ssh (password)")
    assert _logged(proxied, "address=127.0.0.1")


def test_a_trusted_peer_without_a_header_is_dropped(proxied: Server) -> None:
    """A trusted proxy's connection that does not start with a valid header is closed
    unanswered: plain SSH, a TLS hello, a header cut short."""
    assert not _ssh_login(proxied, b"", PASSWORD)
    with pytest.raises((ssl.SSLError, OSError)):
        _https(proxied, b"", PASSWORD)
    for start in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PROXY TCP4 1.2.3.4 garbage\r\n"):
        # (closed with bytes unread: a reset, or an end)
        with _through(proxied.http_port, start) as sock, contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b"", "no answer"
    assert _logged(proxied, "no valid PROXY header from a trusted proxy")
    assert "login root" not in proxied.log.read_text()


def test_a_header_that_never_ends_is_dropped_in_time(tmp_path: Path, client_key: Path) -> None:
    """A partial header waits at most head_timeout (over HTTP, 10 s by default)."""
    with served(tmp_path, client_key, top=TRUST_LOOPBACK) as server:
        with _through(server.http_port, v2(GUESSER)[:20]) as sock:
            sock.settimeout(60)
            started = time.monotonic()
            assert sock.recv(100) == b""
            assert 9 < time.monotonic() - started < 40  # (waited; then liveness)
        assert _logged(server, "no whole PROXY header in time from a trusted proxy")


def test_plain_http_with_a_version_1_header(tmp_path: Path, client_key: Path) -> None:
    with served(tmp_path, client_key, top=TRUST_LOOPBACK) as server:
        with _through(server.http_port, v1("198.51.100.9")) as sock:
            sock.sendall(b"GET /api/v1/files/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _status(sock) == 401
        with _through(server.http_port, v1("127.0.0.9")) as sock:
            token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
            sock.sendall(
                b"GET /api/v1/files/?json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + f"Authorization: Basic {token}\r\n\r\n".encode()
            )
            assert _status(sock) == 200, "Basic over plain HTTP: the client is on loopback"
        assert _logged(server, "address=198.51.100.9")
        assert _logged(server, "login root from 127.0.0.9 over http (password)")


def test_an_untrusted_peer_is_served_as_before_and_its_header_never_honoured(
    tmp_path: Path, client_key: Path
) -> None:
    with served(tmp_path, client_key, top=TRUST_ELSEWHERE) as server:
        assert _ssh_login(server, b"", PASSWORD), "no header needed"
        assert not _ssh_login(server, v2(GUESSER), PASSWORD), "a header is bad SSH"
        for header in (v1(GUESSER), v2(GUESSER)):
            with _through(server.http_port, header) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert _status(sock) == 400, "a header is a bad request line"
        with _through(server.http_port, b"") as sock:
            sock.sendall(b"GET /api/v1/files/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _status(sock) == 401
        assert _logged(server, "login root from 127.0.0.1 over ssh (password)")
        assert _logged(server, "address=127.0.0.1")
        assert GUESSER not in server.log.read_text()


def test_no_trusted_proxies_keeps_asyncssh_listening(tmp_path: Path, client_key: Path) -> None:
    """Without trusted proxies nothing changes: asyncssh's own listener, no header."""
    with served(tmp_path, client_key) as server:
        assert _ssh_login(server, b"", PASSWORD)
        with contextlib.closing(_through(server.port, v1(GUESSER))) as sock:
            sock.settimeout(30)
            assert sock.recv(100).startswith(b"SSH-2.0-hoody-mount")
        assert GUESSER not in server.log.read_text()


def test_a_forwarded_ipv6_client_is_banned_by_its_64(proxied: Server) -> None:
    """Guesses from ten addresses of one IPv6 /64 ban the /64 (as the caps count it):
    an eleventh address of it is refused, another /64 is not."""
    for i in range(1, 11):
        assert _https(proxied, v2(f"2001:db8:1::{i:x}"), "wrong") == 401
    assert _https(proxied, v2("2001:db8:1::ff"), PASSWORD) == 429
    assert _https(proxied, v2("2001:db8:2::1"), PASSWORD) == 200
    assert _logged(proxied, "banned 2001:db8:1::/64")


def test_one_client_has_one_name(proxied: Server) -> None:
    """An IPv4-mapped address in a version 2 header is the IPv4 client; a version 1
    address with a zone is refused (a second name for a client)."""
    assert _https(proxied, v2("::ffff:203.0.113.9"), PASSWORD) == 200
    assert _logged(proxied, "login root from 203.0.113.9 over http")
    with _through(proxied.http_port, v1("2001:db8::1%eth0")) as sock:
        try:
            answer = sock.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # (dropped: no answer)


def test_the_health_check_speaks_for_itself_to_a_server_that_trusts_it(
    proxied: Server,
) -> None:
    """``hoody-mount health`` from an address the server trusts as a proxy starts with
    a LOCAL header, so the image's check works behind a sidecar proxy too."""
    config = proxied.state.parent / "hoody-mount.toml"
    done = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "health", "--config", str(config), "--tls",
         "--http", f"127.0.0.1:{proxied.http_port}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_plain_http_never_passes_for_https(tmp_path: Path, client_key: Path) -> None:
    """An absolute https:// URI in the request line does not make plain HTTP count as
    HTTPS: Basic from a client not on this machine is still refused."""
    token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    with (
        served(tmp_path, client_key, top=TRUST_LOOPBACK) as server,
        _through(server.http_port, v1("198.51.100.9")) as sock,
    ):
        sock.sendall(
            b"OPTIONS https://x/dav/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + f"Authorization: Basic {token}\r\n\r\n".encode()
        )
        assert _status(sock) == 403


REMOTE_PROXY = "203.0.113.250"  # an address given to lo for one test: not loopback


def test_a_remote_proxy_naming_loopback_is_not_loopback(tmp_path: Path, client_key: Path) -> None:
    """Basic over plain HTTP is for clients on this machine: a client that a proxy
    elsewhere names 127.0.0.1 is on the proxy's machine, and is refused."""
    require("ip")
    subprocess.run(["ip", "addr", "add", f"{REMOTE_PROXY}/32", "dev", "lo"], check=True)
    try:
        top = f'trusted_proxies = ["{REMOTE_PROXY}/32"]'
        with served(tmp_path, client_key, top=top) as server:
            sock = socket.socket()
            sock.bind((REMOTE_PROXY, 0))
            sock.settimeout(30)
            sock.connect(("127.0.0.1", server.http_port))
            with sock:
                token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
                sock.sendall(
                    v1("127.0.0.1")
                    + b"GET /api/v1/files/?json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    + f"Authorization: Basic {token}\r\n\r\n".encode()
                )
                assert _status(sock) == 403
    finally:
        subprocess.run(["ip", "addr", "del", f"{REMOTE_PROXY}/32", "dev", "lo"], check=False)
