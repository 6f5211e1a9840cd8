"""The PROXY protocol (versions 1 and 2): the header a trusted proxy sends before the
bytes of a connection it forwards, naming the client; read off the socket exactly.

Version 1 is a text line (``PROXY TCP4 src dst sport dport\\r\\n``, at most 107 bytes);
version 2 a binary header (a 12-byte signature, version and command, family, length,
addresses, then TLVs, which are skipped). A header that says ``LOCAL`` or ``UNKNOWN``
(the proxy's own health check, say) names no client: the proxy's address stands.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_LIMIT = 107  # the longest line version 1 allows, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16  # signature, version and command, family, length
# a LOCAL header (version 2, no client named): a trusted peer speaking for itself
LOCAL_V2 = V2_SIGNATURE + b"\x20\x00\x00\x00"
V2_LIMIT = V2_FIXED + 2048  # addresses and TLVs beyond this are refused
LONGEST = max(V1_LIMIT, V2_LIMIT)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyHeaderError(ValueError):
    """Bytes that are not a PROXY header (or a connection that ended before one)."""


@dataclass(frozen=True)
class Header:
    """A whole header: the bytes it took, and the client's (address, port), or None
    when it names no client (``LOCAL``, ``UNKNOWN``, or a family without addresses)."""

    length: int
    source: tuple[str, int] | None


def parse(data: bytes) -> Header | None:
    """The header at the start of ``data``; None while ``data`` is only the start of
    one (every byte of it then belongs to the header). ProxyHeaderError for anything
    else."""
    if not data:
        return None
    if data[:1] == V1_PREFIX[:1]:
        return _v1(data)
    if data[:1] == V2_SIGNATURE[:1]:
        return _v2(data)
    raise ProxyHeaderError("no PROXY header (version 1 or 2) at the start of the connection")


def _v1(data: bytes) -> Header | None:
    if not data[: len(V1_PREFIX)] == V1_PREFIX[: len(data)]:
        raise ProxyHeaderError("not a PROXY version 1 header")
    end = data.find(b"\r\n", 0, V1_LIMIT)
    if end < 0:
        if len(data) >= V1_LIMIT:
            raise ProxyHeaderError(f"PROXY version 1 header without an end in {V1_LIMIT} bytes")
        return None
    try:
        fields = data[len(V1_PREFIX) : end].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY version 1 header that is not ASCII") from None
    if fields[0] == "UNKNOWN":
        return Header(end + 2, None)
    kinds = {"TCP4": ipaddress.IPv4Address, "TCP6": ipaddress.IPv6Address}
    if fields[0] not in kinds or len(fields) != 5:
        raise ProxyHeaderError(f"PROXY version 1 header of an unknown form: {fields[0]!r}")
    if "%" in fields[1] or "%" in fields[2]:  # (a zone: a second name for one client)
        raise ProxyHeaderError("PROXY version 1 header with a scoped address")
    try:
        source = kinds[fields[0]](fields[1])
        kinds[fields[0]](fields[2])
    except ValueError as exc:
        raise ProxyHeaderError(f"PROXY version 1 header with a bad address: {exc}") from None
    ports = fields[3:5]
    if not all(p.isdigit() and len(p) <= 5 and int(p) <= 65535 for p in ports):
        raise ProxyHeaderError(f"PROXY version 1 header with a bad port: {' '.join(ports)}")
    return Header(end + 2, (_shown(ipaddress.ip_address(str(source))), int(ports[0])))


def _v2(data: bytes) -> Header | None:
    if not data[:12] == V2_SIGNATURE[: len(data)]:
        raise ProxyHeaderError("not a PROXY version 2 header")
    if len(data) < V2_FIXED:
        return None
    version, command = data[12] >> 4, data[12] & 0x0F
    if version != 2 or command > 1:
        raise ProxyHeaderError(f"PROXY version 2 header with version {version}, command {command}")
    length = V2_FIXED + int.from_bytes(data[14:16], "big")
    if length > V2_LIMIT:
        raise ProxyHeaderError(f"PROXY version 2 header of {length} bytes (at most {V2_LIMIT})")
    if len(data) < length:
        return None
    family, transport = data[13] >> 4, data[13] & 0x0F
    if command == 0 or family in (0, 3):  # LOCAL; or UNSPEC, UNIX: no client address
        return Header(length, None)
    sizes = {1: 4, 2: 16}  # AF_INET, AF_INET6: the size of one address
    if family not in sizes or transport != 1:
        raise ProxyHeaderError(
            f"PROXY version 2 header of family {family}, transport {transport} (TCP only)"
        )
    size = sizes[family]
    if length < V2_FIXED + 2 * size + 4:
        raise ProxyHeaderError("PROXY version 2 header too short for its addresses")
    body = data[V2_FIXED:length]
    address = ipaddress.ip_address(body[:size])
    port = int.from_bytes(body[2 * size : 2 * size + 2], "big")
    return Header(length, (_shown(address), port))


def _shown(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """A client's address as one text: an IPv4-mapped IPv6 one as the IPv4 address it
    carries (else one client had two names, and two ban counts)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def take(sock: socket.socket, held: bytearray) -> Header | None:
    """One step of reading a header off a non-blocking ``sock``, never a byte past its
    end (what follows belongs to SSH, TLS or HTTP): the bytes are peeked at, and only
    the header's are taken. ``held`` keeps the start of a header taken so far; None:
    wait until the socket is readable again. ProxyHeaderError for a bad header or a
    connection that ends before one; OSError as the socket raises it."""
    try:
        peeked = sock.recv(LONGEST - len(held), socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return None
    if not peeked:
        raise ProxyHeaderError("the connection ended before a whole PROXY header")
    header = parse(bytes(held) + peeked)
    wanted = len(peeked) if header is None else header.length - len(held)
    got = sock.recv(wanted)  # (what was peeked is there, so all of it comes at once)
    if len(got) != wanted:
        raise ProxyHeaderError("the connection's bytes changed under a PROXY header")
    held += got
    return header


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Parse CIDRs (a bare address is a network of one); ValueError names a bad one."""
    return tuple(ipaddress.ip_network(text.strip(), strict=True) for text in cidrs)


def is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    """Whether a peer's ``address`` lies in one of the ``trusted`` networks (an
    IPv4-mapped IPv6 address as the IPv4 address it carries)."""
    if not trusted:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in trusted)
