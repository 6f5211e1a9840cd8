"""The PROXY protocol: the parser (versions 1 and 2, partial and hostile headers), the
exact reading off a socket, and the trusted_proxies key."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

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
