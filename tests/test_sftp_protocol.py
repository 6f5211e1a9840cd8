"""SFTP protocol behaviour at the packet level: extensions, limits and edge cases.

Most tests drive asyncssh's SFTP client; the ones that need exact packets (the version
message, extended replies, oversized packets, a READ longer than the limit) use ``RawSFTP``,
a minimal SFTP v3 client over an asyncssh session channel. Where a behaviour is open to
interpretation the expectation is what OpenSSH's sftp-server does.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncssh
import asyncssh.connection
import asyncssh.packet
import paramiko
import pytest
from asyncssh.constants import (
    FX_EOF,
    FX_FAILURE,
    FX_NO_SUCH_FILE,
    FX_OK,
    FXF_CREAT,
    FXF_READ,
    FXF_TRUNC,
    FXF_WRITE,
    FXP_ATTRS,
    FXP_CLOSE,
    FXP_DATA,
    FXP_EXTENDED,
    FXP_EXTENDED_REPLY,
    FXP_FSETSTAT,
    FXP_FSTAT,
    FXP_HANDLE,
    FXP_INIT,
    FXP_MKDIR,
    FXP_NAME,
    FXP_OPEN,
    FXP_OPENDIR,
    FXP_READ,
    FXP_READDIR,
    FXP_SETSTAT,
    FXP_STATUS,
    FXP_SYMLINK,
    FXP_VERSION,
    FXP_WRITE,
    MSG_IGNORE,
)
from conftest import Server

from hoody_mount.ssh.sftp import LISTING_BATCH

T = TypeVar("T")

TIMEOUT = 60.0
MAX_PACKET = 256 * 1024
MAX_READ = 255 * 1024
MAX_HANDLES = 64
MAX_SESSIONS = 4
ST_RDONLY = 1
ST_NOSUID = 2

EXPECTED_EXTENSIONS = {
    b"posix-rename@openssh.com": b"1",
    b"statvfs@openssh.com": b"2",
    b"fstatvfs@openssh.com": b"2",
    b"hardlink@openssh.com": b"1",
    b"fsync@openssh.com": b"1",
    b"lsetstat@openssh.com": b"1",
    b"limits@openssh.com": b"1",
    b"expand-path@openssh.com": b"1",
    b"copy-data": b"1",
    b"home-directory": b"1",
    b"users-groups-by-id@openssh.com": b"1",
}


# -- helpers ---------------------------------------------------------------------------


def run(factory: Callable[[], Awaitable[T]], timeout: float = 120.0) -> T:
    """Run one async test body on a fresh event loop, bounded by ``timeout`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(factory(), timeout)

    return asyncio.run(bounded())


async def connect(
    server: Server, user: str = "root", client_version: str = "AsyncSSH"
) -> asyncssh.SSHClientConnection:
    """An SSH connection to the test server with the test key (no agent, no known hosts)."""
    return await asyncio.wait_for(
        asyncssh.connect(
            "127.0.0.1",
            server.port,
            username=user,
            client_keys=[str(server.key)],
            known_hosts=None,
            agent_path=None,
            password=None,
            client_version=client_version,
        ),
        TIMEOUT,
    )


def u32(value: int) -> bytes:
    """An SSH uint32."""
    return value.to_bytes(4, "big")


def u64(value: int) -> bytes:
    """An SSH uint64."""
    return value.to_bytes(8, "big")


def sstr(value: bytes) -> bytes:
    """An SSH string."""
    return u32(len(value)) + value


class Buf:
    """A cursor over a reply body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        """The next ``size`` bytes (an error when the body is shorter)."""
        if self.pos + size > len(self.data):
            raise AssertionError(f"reply too short: wanted {size} bytes at {self.pos}")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def u32(self) -> int:
        """The next uint32."""
        return int.from_bytes(self.take(4), "big")

    def u64(self) -> int:
        """The next uint64."""
        return int.from_bytes(self.take(8), "big")

    def string(self) -> bytes:
        """The next string."""
        return self.take(self.u32())

    def at_end(self) -> bool:
        """Whether the whole body has been read."""
        return self.pos == len(self.data)


class RawSFTP:
    """A minimal SFTP v3 client: raw packets over one asyncssh session channel."""

    def __init__(
        self, writer: asyncssh.SSHWriter[bytes], reader: asyncssh.SSHReader[bytes]
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.next_id = 1
        self.version = 0
        self.extensions: dict[bytes, bytes] = {}

    @classmethod
    async def start(cls, conn: asyncssh.SSHClientConnection) -> RawSFTP:
        """Open the sftp subsystem and exchange INIT / VERSION."""
        writer, reader, _ = await conn.open_session(subsystem="sftp", encoding=None)
        raw = cls(writer, reader)
        raw.send(bytes([FXP_INIT]) + u32(3))
        ptype, body = await raw.recv()
        assert ptype == FXP_VERSION
        buf = Buf(body)
        raw.version = buf.u32()
        while not buf.at_end():
            name = buf.string()
            raw.extensions[name] = buf.string()
        return raw

    def send(self, body: bytes) -> None:
        """Send one packet (the length prefix is added here)."""
        self.writer.write(u32(len(body)) + body)

    async def recv(self) -> tuple[int, bytes]:
        """Read one packet: its type and the rest of its body."""
        length = int.from_bytes(await asyncio.wait_for(self.reader.readexactly(4), TIMEOUT))
        data = await asyncio.wait_for(self.reader.readexactly(length), TIMEOUT)
        return data[0], data[1:]

    async def request(self, ptype: int, payload: bytes) -> tuple[int, Buf]:
        """Send a request and return the reply's type and its body after the id."""
        rid = self.next_id
        self.next_id += 1
        self.send(bytes([ptype]) + u32(rid) + payload)
        rtype, body = await self.recv()
        buf = Buf(body)
        assert buf.u32() == rid, "reply to another request"
        return rtype, buf

    async def extended(self, name: bytes, payload: bytes = b"") -> tuple[int, Buf]:
        """Send an SSH_FXP_EXTENDED request."""
        return await self.request(FXP_EXTENDED, sstr(name) + payload)

    async def open(self, path: bytes, pflags: int) -> bytes:
        """OPEN and return the handle (an assertion error on a STATUS reply)."""
        rtype, buf = await self.request(FXP_OPEN, sstr(path) + u32(pflags) + u32(0))
        assert rtype == FXP_HANDLE, f"OPEN {path!r} failed: status {status(rtype, buf)}"
        return buf.string()

    async def close(self, handle: bytes) -> None:
        """CLOSE a handle, expecting OK."""
        rtype, buf = await self.request(FXP_CLOSE, sstr(handle))
        assert status(rtype, buf) == FX_OK


def status(rtype: int, buf: Buf) -> int:
    """The status code of a STATUS reply (an assertion error for any other reply)."""
    assert rtype == FXP_STATUS, f"expected STATUS, got packet type {rtype}"
    return buf.u32()


def names_of(rtype: int, buf: Buf) -> list[bytes]:
    """The file names of a NAME reply."""
    assert rtype == FXP_NAME, f"expected NAME, got packet type {rtype}"
    count = buf.u32()
    out = []
    for _ in range(count):
        out.append(buf.string())
        buf.string()  # long name
        flags = buf.u32()  # attributes: skip what the flags announce
        if flags & 0x1:
            buf.u64()
        if flags & 0x2:
            buf.u32()
            buf.u32()
        if flags & 0x4:
            buf.u32()
        if flags & 0x8:
            buf.u32()
            buf.u32()
        if flags & 0x80000000:
            for _ in range(buf.u32()):
                buf.string()
                buf.string()
    return out


def strings(blob: bytes) -> list[bytes]:
    """A blob of consecutive SSH strings, split."""
    buf = Buf(blob)
    out = []
    while not buf.at_end():
        out.append(buf.string())
    return out


# -- version and limits --------------------------------------------------------------------


def test_version_advertises_extensions(server: Server) -> None:
    """The VERSION reply is v3 and names every extension with OpenSSH's version strings."""

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            assert raw.version == 3
            for name, version in EXPECTED_EXTENSIONS.items():
                assert raw.extensions.get(name) == version, (name, raw.extensions)

    run(body)


def test_limits_reply_and_read_cap(server: Server) -> None:
    """limits@openssh.com tells the configured values; a 1 MiB READ returns at most max_read."""
    data = os.urandom(1 << 20)
    (server.root / "big.bin").write_bytes(data)

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            rtype, buf = await raw.extended(b"limits@openssh.com")
            assert rtype == FXP_EXTENDED_REPLY
            assert (buf.u64(), buf.u64(), buf.u64(), buf.u64()) == (
                MAX_PACKET,
                MAX_READ,
                MAX_READ,
                MAX_HANDLES,
            )
            assert buf.at_end()

            handle = await raw.open(b"/big.bin", FXF_READ)
            rtype, buf = await raw.request(FXP_READ, sstr(handle) + u64(0) + u32(1 << 20))
            assert rtype == FXP_DATA
            chunk = buf.string()
            assert 0 < len(chunk) <= MAX_READ
            assert chunk == data[: len(chunk)]
            # The largest length a READ can ask for is capped the same way.
            rtype, buf = await raw.request(FXP_READ, sstr(handle) + u64(7) + u32(0xFFFFFFFF))
            assert rtype == FXP_DATA
            chunk = buf.string()
            assert 0 < len(chunk) <= MAX_READ
            assert chunk == data[7 : 7 + len(chunk)]
            await raw.close(handle)

            # A WRITE of the advertised max write length fits in one packet and is accepted.
            handle = await raw.open(b"/w.bin", FXF_WRITE | FXF_CREAT | FXF_TRUNC)
            payload = os.urandom(MAX_READ)
            rtype, buf = await raw.request(FXP_WRITE, sstr(handle) + u64(0) + sstr(payload))
            assert status(rtype, buf) == FX_OK
            await raw.close(handle)
            assert (server.root / "w.bin").read_bytes() == payload

        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            # asyncssh's client adopts the advertised limits.
            assert sftp._handler.limits.max_read_len == MAX_READ
            assert sftp._handler.limits.max_write_len == MAX_READ

    run(body)


def _evict(path: os.PathLike[str]) -> None:
    """Drop a file's pages from the page cache, so the next read has to wait for the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_reads_from_cache_and_disk_agree_and_follow_writes(server: Server) -> None:
    """READs answered from the page cache (on the event loop) and from the disk (on a
    worker) return the same bytes; a READ sent right behind WRITEs, without waiting for
    their replies, sees what they wrote; short reads at the end and EOF past it."""
    size = 3 * MAX_READ + 1000
    data = bytearray(os.urandom(size))
    path = server.root / "cached.bin"
    path.write_bytes(data)

    async def read_all(raw: RawSFTP, handle: bytes) -> bytes:
        ids = []
        for offset in range(0, size, MAX_READ):  # all in flight at once
            ids.append(raw.next_id)
            request = sstr(handle) + u64(offset) + u32(MAX_READ)
            raw.send(bytes([FXP_READ]) + u32(raw.next_id) + request)
            raw.next_id += 1
        replies = {}
        for _ in ids:
            rtype, body = await raw.recv()
            buf = Buf(body)
            rid = buf.u32()
            assert rtype == FXP_DATA, f"READ {rid}: status {status(rtype, buf)}"
            replies[rid] = buf.string()
        return b"".join(replies[rid] for rid in ids)

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            handle = await raw.open(b"/cached.bin", FXF_READ | FXF_WRITE)
            _evict(path)
            assert await read_all(raw, handle) == data  # from the disk
            assert await read_all(raw, handle) == data  # now from the page cache

            # WRITE, WRITE, READ of both ranges: all sent before any reply is read.
            first, second = os.urandom(500), os.urandom(700)
            wid = raw.next_id
            raw.send(bytes([FXP_WRITE]) + u32(wid) + sstr(handle) + u64(100) + sstr(first))
            at = u64(MAX_READ)
            raw.send(bytes([FXP_WRITE]) + u32(wid + 1) + sstr(handle) + at + sstr(second))
            raw.send(bytes([FXP_READ]) + u32(wid + 2) + sstr(handle) + u64(0) + u32(MAX_READ + 700))
            raw.next_id += 3
            replies = {}
            for _ in range(3):
                rtype, body = await raw.recv()
                buf = Buf(body)
                replies[buf.u32()] = (rtype, buf)
            assert status(*replies[wid]) == FX_OK
            assert status(*replies[wid + 1]) == FX_OK
            rtype, buf = replies[wid + 2]
            assert rtype == FXP_DATA
            data[100:600] = first
            data[MAX_READ : MAX_READ + 700] = second
            chunk = buf.string()
            assert chunk == bytes(data[: len(chunk)]) and len(chunk) == MAX_READ

            # The tail: a short read, then EOF.
            rtype, buf = await raw.request(FXP_READ, sstr(handle) + u64(size - 10) + u32(100))
            assert rtype == FXP_DATA and buf.string() == bytes(data[-10:])
            rtype, buf = await raw.request(FXP_READ, sstr(handle) + u64(size) + u32(100))
            assert status(rtype, buf) == FX_EOF
            await raw.close(handle)
            # A READ on a write-only handle is an error reply; the session goes on.
            handle = await raw.open(b"/cached.bin", FXF_WRITE)
            rtype, buf = await raw.request(FXP_READ, sstr(handle) + u64(0) + u32(100))
            assert status(rtype, buf) not in (FX_OK, FX_EOF)
            await raw.close(handle)
        assert path.read_bytes() == data

    run(body)


def test_fstat_and_close_follow_pipelined_writes(server: Server) -> None:
    """FSTAT and CLOSE sent right behind WRITEs, before any reply is read, see every
    write (FSTAT is answered on the event loop, the fd is closed behind CLOSE's answer);
    the closed handle is gone and the file holds all the bytes."""
    pid = server.process.pid
    chunks = [os.urandom(10_000) for _ in range(8)]

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            await raw.close(await raw.open(b"/warmup", FXF_WRITE | FXF_CREAT))
            baseline = _open_fds(pid)
            handle = await raw.open(b"/piped.bin", FXF_WRITE | FXF_CREAT | FXF_TRUNC)
            first = raw.next_id
            for i, chunk in enumerate(chunks):
                raw.send(
                    bytes([FXP_WRITE]) + u32(first + i) + sstr(handle)
                    + u64(i * len(chunk)) + sstr(chunk)
                )  # fmt: skip
            fstat_id, close_id = first + len(chunks), first + len(chunks) + 1
            raw.send(bytes([FXP_FSTAT]) + u32(fstat_id) + sstr(handle))
            raw.send(bytes([FXP_CLOSE]) + u32(close_id) + sstr(handle))
            raw.next_id = close_id + 1
            replies = {}
            for _ in range(len(chunks) + 2):
                rtype, reply = await raw.recv()
                buf = Buf(reply)
                replies[buf.u32()] = (rtype, buf)
            for i in range(len(chunks)):
                assert status(*replies[first + i]) == FX_OK
            rtype, buf = replies[fstat_id]
            assert rtype == FXP_ATTRS and buf.u32() & 0x1, "FSTAT: attributes with a size"
            assert buf.u64() == sum(map(len, chunks))
            assert status(*replies[close_id]) == FX_OK
            rtype, buf = await raw.request(FXP_READ, sstr(handle) + u64(0) + u32(100))
            assert status(rtype, buf) == FX_FAILURE, "the handle is closed"
            deadline = asyncio.get_running_loop().time() + 5
            while _open_fds(pid) > baseline and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            assert _open_fds(pid) <= baseline, "the file's fd was closed"
        assert (server.root / "piped.bin").read_bytes() == b"".join(chunks)

    run(body)


def test_setstat_behind_pipelined_writes_keeps_their_order(server: Server) -> None:
    """A SETSTAT or FSETSTAT sent right behind WRITEs, before any reply is read (as sshfs
    does), runs after every WRITE before it, and a WRITE sent after it runs after it:
    the results of sequential processing."""
    chunks = [os.urandom(10_000) for _ in range(8)]
    late = os.urandom(10_000)

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)

            def write(rid: int, handle: bytes, offset: int, data: bytes) -> None:
                raw.send(bytes([FXP_WRITE]) + u32(rid) + sstr(handle) + u64(offset) + sstr(data))

            async def replies(count: int) -> dict[int, tuple[int, Buf]]:
                got = {}
                for _ in range(count):
                    rtype, reply = await raw.recv()
                    buf = Buf(reply)
                    got[buf.u32()] = (rtype, buf)
                return got

            # SETSTAT of the mtime behind the WRITEs: a WRITE after it would reset the mtime.
            handle = await raw.open(b"/timed.bin", FXF_WRITE | FXF_CREAT | FXF_TRUNC)
            first = raw.next_id
            for i, chunk in enumerate(chunks):
                write(first + i, handle, i * len(chunk), chunk)
            setstat_id = first + len(chunks)
            when = u32(1_000_000_000) + u32(1_000_000_000)
            raw.send(bytes([FXP_SETSTAT]) + u32(setstat_id) + sstr(b"/timed.bin") + u32(0x8) + when)
            raw.next_id = setstat_id + 1
            got = await replies(len(chunks) + 1)
            assert all(status(*got[first + i]) == FX_OK for i in range(len(chunks) + 1))
            await raw.close(handle)

            # FSETSTAT of the size behind the WRITEs, then a WRITE beyond the new end.
            handle = await raw.open(b"/cut.bin", FXF_WRITE | FXF_CREAT | FXF_TRUNC)
            first = raw.next_id
            for i, chunk in enumerate(chunks):
                write(first + i, handle, i * len(chunk), chunk)
            cut_id, late_id, fstat_id = (first + len(chunks) + n for n in range(3))
            raw.send(bytes([FXP_FSETSTAT]) + u32(cut_id) + sstr(handle) + u32(0x1) + u64(25_000))
            write(late_id, handle, 30_000, late)
            raw.send(bytes([FXP_FSTAT]) + u32(fstat_id) + sstr(handle))
            raw.next_id = fstat_id + 1
            got = await replies(len(chunks) + 3)
            assert all(status(*got[first + i]) == FX_OK for i in range(len(chunks) + 2))
            rtype, buf = got[fstat_id]
            assert rtype == FXP_ATTRS and buf.u32() & 0x1 and buf.u64() == 40_000
            await raw.close(handle)

    run(body)
    timed = server.root / "timed.bin"
    assert timed.read_bytes() == b"".join(chunks)
    assert timed.stat().st_mtime == 1_000_000_000, "the SETSTAT ran after every WRITE"
    whole = b"".join(chunks)
    assert (server.root / "cut.bin").read_bytes() == whole[:25_000] + bytes(5_000) + late


def test_readdir_to_the_end_then_eof(server: Server) -> None:
    """Folders smaller than, equal to and larger than one batch list every name once;
    READDIR past the end keeps answering EOF, CLOSE then succeeds once."""
    sizes = [0, 1, LISTING_BATCH - 1, LISTING_BATCH, LISTING_BATCH + 1, 3 * LISTING_BATCH]

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            for size in sizes:
                folder = server.root / f"dir{size}"
                folder.mkdir()
                expected = {f"n{i}".encode() for i in range(size)}
                for name in expected:
                    (folder / name.decode()).touch()
                rtype, buf = await raw.request(FXP_OPENDIR, sstr(f"/dir{size}".encode()))
                assert rtype == FXP_HANDLE
                handle = buf.string()
                seen: list[bytes] = []
                while True:
                    rtype, buf = await raw.request(FXP_READDIR, sstr(handle))
                    if rtype == FXP_STATUS:
                        assert buf.u32() == FX_EOF
                        break
                    seen += names_of(rtype, buf)
                names = [n for n in seen if n not in (b".", b"..")]
                assert len(names) == len(set(names)) and set(names) == expected, size
                for _ in range(2):
                    rtype, buf = await raw.request(FXP_READDIR, sstr(handle))
                    assert status(rtype, buf) == FX_EOF
                await raw.close(handle)
                rtype, buf = await raw.request(FXP_CLOSE, sstr(handle))
                assert status(rtype, buf) == FX_FAILURE, "closed twice"

    run(body)


def test_no_empty_ignore_packets(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server sends data packets alone: no SSH_MSG_IGNORE before each (asyncssh's CBC
    countermeasure, pointless with the AES-CTR and AES-GCM ciphers offered)."""
    ignored: list[bytes] = []
    handlers = asyncssh.connection.SSHConnection._packet_handlers
    original = handlers[MSG_IGNORE]

    def count(conn: object, pkttype: int, pktid: int, packet: asyncssh.packet.SSHPacket) -> None:
        ignored.append(packet.get_full_payload())
        original(conn, pkttype, pktid, packet)

    monkeypatch.setitem(handlers, MSG_IGNORE, count)
    data = os.urandom(300_000)

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            async with sftp.open("/ignore.bin", "wb") as f:
                await f.write(data)
            async with sftp.open("/ignore.bin", "rb") as f:
                assert await f.read() == data
            assert (await sftp.stat("/ignore.bin")).size == len(data)

    run(body)
    assert ignored == []


# -- renames ----------------------------------------------------------------------------------


def test_rename_folders(server: Server) -> None:
    """v3 rename of a folder onto an existing (even empty) folder fails; posix-rename
    replaces an empty folder and refuses a file onto a folder."""
    for name in ("d1", "d2", "d3"):
        (server.root / name).mkdir()
    (server.root / "d1" / "inner.txt").write_text("1")
    (server.root / "f.txt").write_text("f")

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            with pytest.raises(asyncssh.SFTPError):
                await sftp.rename("/d1", "/d2")
            assert (server.root / "d1" / "inner.txt").exists() and (server.root / "d2").is_dir()
            await sftp.posix_rename("/d1", "/d2")
            assert (server.root / "d2" / "inner.txt").read_text() == "1"
            with pytest.raises(asyncssh.SFTPError):
                await sftp.posix_rename("/f.txt", "/d3")
            with pytest.raises(asyncssh.SFTPError):  # a folder into itself
                await sftp.posix_rename("/d2", "/d2/sub")

    run(body)
    assert not (server.root / "d1").exists()
    assert (server.root / "f.txt").read_text() == "f"
    assert (server.root / "d3").is_dir()


def test_paramiko_client(server: Server) -> None:
    """paramiko (OpenSSH's SYMLINK argument order, plain v3 RENAME) works as expected."""
    (server.root / "a.txt").write_text("A")
    (server.root / "b.txt").write_text("B")
    transport = paramiko.Transport(("127.0.0.1", server.port))
    transport.banner_timeout = TIMEOUT
    transport.auth_timeout = TIMEOUT
    try:
        transport.connect(
            username="root", pkey=paramiko.Ed25519Key.from_private_key_file(str(server.key))
        )
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        channel = sftp.get_channel()
        assert channel is not None
        channel.settimeout(TIMEOUT)
        sftp.symlink("a.txt", "/lnk")
        assert os.readlink(server.root / "lnk") == "a.txt"
        with pytest.raises(OSError):
            sftp.rename("/a.txt", "/b.txt")  # SSH_FXP_RENAME: never replaces
        assert (server.root / "a.txt").read_text() == "A"
        assert (server.root / "b.txt").read_text() == "B"
        sftp.posix_rename("/a.txt", "/b.txt")
        assert (server.root / "b.txt").read_text() == "A"
        with sftp.open("/b.txt", "rb") as f:
            assert f.read() == b"A"
        assert sorted(sftp.listdir("/")) == sorted(os.listdir(server.root))
        sftp.close()
    finally:
        transport.close()


# -- statvfs ------------------------------------------------------------------------------------


def test_statvfs_matches_disk(server: Server) -> None:
    """statvfs@openssh.com and fstatvfs@openssh.com report the real filesystem of the root."""
    (server.root / "f.txt").write_text("x")

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            vfs = await sftp.statvfs("/")
            disk = os.statvfs(server.root)
            assert vfs.bsize == disk.f_bsize
            assert vfs.frsize == disk.f_frsize
            assert vfs.blocks == disk.f_blocks
            assert vfs.namemax == disk.f_namemax
            # Other writers on the same disk may move free space a little meanwhile.
            tolerance = max(disk.f_blocks // 100, 1024)
            assert abs(vfs.bavail - disk.f_bavail) <= tolerance
            assert abs(vfs.bfree - disk.f_bfree) <= tolerance
            assert vfs.flags & ST_RDONLY == disk.f_flag & ST_RDONLY
            async with sftp.open("/f.txt", "rb") as f:
                fvfs = await f.statvfs()
            assert fvfs.blocks == disk.f_blocks
            assert fvfs.bsize == disk.f_bsize

    run(body)


def test_statvfs_flags_use_openssh_bits(server: Server) -> None:
    """The flag field carries only SSH2_FXE_STATVFS_ST_RDONLY (1) and ST_NOSUID (2).

    OpenSSH's sftp-server maps the host's f_flag onto these two protocol bits; Linux-only
    bits such as ST_RELATIME (0x1000) have no meaning in the protocol.
    """

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            vfs = await sftp.statvfs("/")
            disk = os.statvfs(server.root)
            assert vfs.flags & ~(ST_RDONLY | ST_NOSUID) == 0, hex(vfs.flags)
            assert vfs.flags & ST_NOSUID == disk.f_flag & ST_NOSUID

    run(body)


def test_statvfs_read_only_user_has_rdonly_flag(server: Server) -> None:
    """For the read-only user, statvfs sets ST_RDONLY (1) while the root user's does not."""

    async def body() -> None:
        async with await connect(server, "reader") as conn, conn.start_sftp_client() as sftp:
            vfs = await sftp.statvfs("/")
            assert vfs.flags & ST_RDONLY
            assert vfs.blocks == os.statvfs(server.root).f_blocks
            async with sftp.open("/docs/readme.txt", "rb") as f:
                assert (await f.statvfs()).flags & ST_RDONLY
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            vfs = await sftp.statvfs("/")
            assert vfs.flags & ST_RDONLY == os.statvfs(server.root).f_flag & ST_RDONLY

    run(body)


# -- links, fsync, attributes -----------------------------------------------------------------


def test_hardlink(server: Server) -> None:
    """hardlink@openssh.com makes a second name for the same inode."""
    (server.root / "a.txt").write_text("A")

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            await sftp.link("/a.txt", "/b.txt")
            with pytest.raises(asyncssh.SFTPError):  # never replaces an existing name
                await sftp.link("/a.txt", "/b.txt")

    run(body)
    a, b = os.stat(server.root / "a.txt"), os.stat(server.root / "b.txt")
    assert a.st_nlink == 2
    assert (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def test_fsync(server: Server) -> None:
    """fsync@openssh.com on a written handle answers OK and the data is there."""

    async def body() -> None:
        async with (
            await connect(server) as conn,
            conn.start_sftp_client() as sftp,
            sftp.open("/f.txt", "wb") as f,
        ):
            await f.write(b"synced")
            await f.fsync()

    run(body)
    assert (server.root / "f.txt").read_bytes() == b"synced"


def test_lsetstat_changes_link_not_target(server: Server) -> None:
    """lsetstat@openssh.com sets the times of a symlink itself; setstat follows it."""
    target = server.root / "target.txt"
    target.write_text("T")
    link = server.root / "link"
    link.symlink_to("target.txt")
    before = os.stat(target).st_mtime_ns

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            attrs = asyncssh.SFTPAttrs(atime=1_000_000_000, mtime=1_000_000_000)
            await sftp.setstat("/link", attrs, follow_symlinks=False)

    run(body)
    assert os.lstat(link).st_mtime == 1_000_000_000
    assert os.stat(target).st_mtime_ns == before
    assert link.is_symlink()

    async def follow() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            attrs = asyncssh.SFTPAttrs(atime=1_100_000_000, mtime=1_100_000_000)
            await sftp.setstat("/link", attrs)

    run(follow)
    assert os.stat(target).st_mtime == 1_100_000_000
    assert os.lstat(link).st_mtime == 1_000_000_000


def test_setstat_size_truncates(server: Server) -> None:
    """SETSTAT with a size truncates (and extends) the file; FSETSTAT does too."""
    (server.root / "f.txt").write_bytes(b"0123456789")

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            await sftp.setstat("/f.txt", asyncssh.SFTPAttrs(size=4))
            assert (server.root / "f.txt").read_bytes() == b"0123"
            await sftp.truncate("/f.txt", 6)
            assert (server.root / "f.txt").read_bytes() == b"0123\0\0"
            async with sftp.open("/f.txt", "r+b") as f:
                await f.truncate(2)
            assert (server.root / "f.txt").read_bytes() == b"01"

    run(body)


# -- names -------------------------------------------------------------------------------------


def test_expand_path(server: Server) -> None:
    """expand-path@openssh.com expands ``~``, ``~/x``, ``~user/x`` and normalises ``..``."""
    (server.root / "a").mkdir()

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            cases = {b"~": b"/", b"~/x": b"/x", b"~root/x": b"/x", b"a/../b": b"/b"}
            for path, expected in cases.items():
                rtype, buf = await raw.extended(b"expand-path@openssh.com", sstr(path))
                assert names_of(rtype, buf) == [expected], path
            rtype, buf = await raw.extended(b"expand-path@openssh.com", sstr(b"~nosuchuser/x"))
            assert status(rtype, buf) != FX_OK
        async with await connect(server, "jailed") as conn:
            raw = await RawSFTP.start(conn)
            for path, expected in {b"~": b"/", b"~/x/../y": b"/y"}.items():
                rtype, buf = await raw.extended(b"expand-path@openssh.com", sstr(path))
                assert names_of(rtype, buf) == [expected], path

    run(body)


def test_home_directory(server: Server) -> None:
    """home-directory answers the user's start folder (inside the jail) and refuses others."""

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            rtype, buf = await raw.extended(b"home-directory", sstr(b"root"))
            assert names_of(rtype, buf) == [b"/"]
            rtype, buf = await raw.extended(b"home-directory", sstr(b"nosuchuser"))
            assert status(rtype, buf) != FX_OK
        async with await connect(server, "jailed") as conn:
            raw = await RawSFTP.start(conn)
            rtype, buf = await raw.extended(b"home-directory", sstr(b"jailed"))
            assert names_of(rtype, buf) == [b"/"]

    run(body)


def _host_ids(path: str, served: set[int]) -> int:
    """An id the host's account file names but the served root's does not."""
    with open(path) as handle:
        for line in handle:
            fields = line.split(":")
            if len(fields) >= 3 and fields[2].isdigit() and int(fields[2]) not in served:
                return int(fields[2])
    raise AssertionError(f"{path} has no id missing from the served root's file")


def test_users_groups_by_id_from_served_root(server: Server) -> None:
    """users-groups-by-id@openssh.com reads the served root's etc/passwd and etc/group."""
    host_uid = _host_ids("/etc/passwd", {0, 1000})
    host_gid = _host_ids("/etc/group", {0, 1000})

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            uids = b"".join(u32(i) for i in (1000, 0, 4242, host_uid))
            gids = b"".join(u32(i) for i in (1000, 0, 4343, host_gid))
            rtype, buf = await raw.extended(
                b"users-groups-by-id@openssh.com", sstr(uids) + sstr(gids)
            )
            assert rtype == FXP_EXTENDED_REPLY
            users, groups = strings(buf.string()), strings(buf.string())
            assert buf.at_end()
            assert users == [b"alice", b"root", b"", b""]
            assert groups == [b"staff", b"root", b"", b""]
            # A uid list that is not whole uint32s is a bad message, not a crash.
            rtype, buf = await raw.extended(
                b"users-groups-by-id@openssh.com", sstr(b"\0\0\0") + sstr(b"")
            )
            assert status(rtype, buf) != FX_OK

    run(body)


def test_listing_owner_names_from_served_root(server: Server) -> None:
    """``ls -l`` long names show owners named by the served root's files, not the host's."""
    uid, gid = os.getuid(), os.getgid()
    (server.root / "etc" / "passwd").write_text(f"served-owner:x:{uid}:{gid}::/:\n")
    (server.root / "etc" / "group").write_text(f"served-group:x:{gid}:\n")

    async def body() -> None:
        async with await connect(server, "reader") as conn, conn.start_sftp_client() as sftp:
            # The server re-reads the files every few seconds: wait out a cached copy.
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                entries = {e.filename: e for e in await sftp.readdir("/docs")}
                fields = entries["readme.txt"].longname.split()
                if fields[2:4] == ["served-owner", "served-group"]:
                    break
                assert asyncio.get_running_loop().time() < deadline, fields
                await asyncio.sleep(0.5)

    run(body)


def test_names_from_a_fifo_passwd_do_not_hang(server: Server) -> None:
    """An etc/passwd that is a FIFO is never opened: names are empty and nothing blocks."""
    (server.root / "etc" / "passwd").unlink()
    os.mkfifo(server.root / "etc" / "passwd")

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            rtype, buf = await asyncio.wait_for(
                raw.extended(b"users-groups-by-id@openssh.com", sstr(u32(1000)) + sstr(u32(1000))),
                10,
            )
            assert rtype == FXP_EXTENDED_REPLY
            assert (strings(buf.string()), strings(buf.string())) == ([b""], [b"staff"])
            rtype, buf = await asyncio.wait_for(raw.request(FXP_OPENDIR, sstr(b"/etc")), 10)
            assert rtype == FXP_HANDLE

    run(body)


def test_large_folder_listing(server: Server) -> None:
    """A folder of 3000 names lists every name exactly once (READDIR in batches)."""
    folder = server.root / "many"
    folder.mkdir()
    expected = {f"file-{i:05d}-{'x' * 40}" for i in range(3000)}
    for name in expected:
        (folder / name).touch()

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            names = [n for n in await sftp.listdir("/many") if n not in (".", "..")]
            assert len(names) == len(expected)
            assert set(names) == expected

    run(body)


# -- copy-data -----------------------------------------------------------------------------------


def test_copy_data_between_files(server: Server) -> None:
    """copy-data copies between two handles, whole file (length 0) and a range."""
    data = os.urandom(3 << 20)
    (server.root / "src.bin").write_bytes(data)

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            await sftp.remote_copy("/src.bin", "/dst.bin")
            async with sftp.open("/src.bin", "rb") as src, sftp.open("/part.bin", "wb") as dst:
                await sftp.remote_copy(src, dst, src_offset=10, src_length=1000, dst_offset=5)

    run(body)
    assert (server.root / "dst.bin").read_bytes() == data
    assert (server.root / "part.bin").read_bytes() == b"\0" * 5 + data[10:1010]


def test_copy_data_onto_same_file_refused(server: Server) -> None:
    """copy-data from a file onto itself (same handle, two handles, a hard link) is refused.

    The server's file size limit is lowered first, so a server that did copy a file onto
    its own end would stop at 64 MiB instead of filling the disk.
    """
    data = os.urandom(64 << 10)
    path = server.root / "self.bin"
    path.write_bytes(data)
    os.link(path, server.root / "alias.bin")
    cap = 64 << 20
    resource.prlimit(server.process.pid, resource.RLIMIT_FSIZE, (cap, cap))

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            handler = sftp._handler
            async with (
                sftp.open("/self.bin", "rb") as src,
                sftp.open("/self.bin", "r+b") as dst,
                sftp.open("/alias.bin", "r+b") as alias,
            ):
                for target in (dst, alias):
                    with pytest.raises(asyncssh.SFTPError):
                        await handler.copy_data(src.handle, 0, 0, target.handle, len(data))
                    with pytest.raises(asyncssh.SFTPError):
                        await handler.copy_data(src.handle, 0, len(data), target.handle, 0)
                with pytest.raises(asyncssh.SFTPError):
                    await handler.copy_data(dst.handle, 0, 0, dst.handle, len(data))

    run(body)
    assert path.read_bytes() == data


# -- handles and sessions ------------------------------------------------------------------------


def test_handle_limit(server: Server) -> None:
    """More than max_handles open handles fail cleanly; closing one frees a slot."""
    for i in range(MAX_HANDLES + 2):
        (server.root / f"f{i}.txt").write_text(str(i))

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            files = [await sftp.open(f"/f{i}.txt", "rb") for i in range(MAX_HANDLES - 1)]
            folder = await sftp._handler.opendir(b"/")  # a folder handle counts too
            with pytest.raises(asyncssh.SFTPError):
                await sftp.open(f"/f{MAX_HANDLES}.txt", "rb")
            with pytest.raises(asyncssh.SFTPError):
                await sftp._handler.opendir(b"/")
            with pytest.raises(asyncssh.SFTPError):
                await sftp.open("/new.txt", "wb")
            assert not (server.root / "new.txt").exists()
            # The session still answers, and a freed slot can be used again.
            assert (await sftp.stat("/f0.txt")).size == 1
            await files.pop().close()
            extra = await sftp.open(f"/f{MAX_HANDLES}.txt", "rb")
            content: object = await extra.read()
            assert content == str(MAX_HANDLES).encode()
            with pytest.raises(asyncssh.SFTPError):
                await sftp.open(f"/f{MAX_HANDLES + 1}.txt", "rb")
            await sftp._handler.close(folder)
            listing = await sftp.listdir("/")
            assert "f0.txt" in listing
            for f in [*files, extra]:
                await f.close()
            more = [await sftp.open(f"/f{i}.txt", "rb") for i in range(MAX_HANDLES)]
            for f in more:
                await f.close()

    run(body)


def _open_fds(pid: int) -> int:
    """How many fds the process ``pid`` holds."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_handles_released_on_disconnect(server: Server) -> None:
    """Handles a client leaves open (files and folders) are closed when it goes away."""
    for i in range(8):
        (server.root / f"f{i}.txt").write_text(str(i))
    big = server.root / "big"  # more names than one batch: its listing stays open
    big.mkdir()
    for i in range(LISTING_BATCH + 1):
        (big / f"n{i}").touch()
    pid = server.process.pid

    async def settle(limit: int) -> int:
        deadline = asyncio.get_running_loop().time() + 15
        while (count := _open_fds(pid)) > limit:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        return count

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            await sftp.listdir("/")
        baseline = _open_fds(pid)
        for _ in range(20):  # let the first connection's teardown finish
            await asyncio.sleep(0.1)
            baseline = min(baseline, _open_fds(pid))
        for round_ in range(4):
            conn = await connect(server)
            sftp = await conn.start_sftp_client()
            for i in range(MAX_HANDLES // 2):
                await sftp.open(f"/f{i % 8}.txt", "rb")
            for _ in range(MAX_HANDLES // 2):
                await sftp._handler.opendir(b"/big")
            assert _open_fds(pid) >= baseline + MAX_HANDLES
            if round_ % 2:
                conn.abort()  # drop the TCP connection without a goodbye
            else:
                sftp.exit()
                conn.close()
            await conn.wait_closed()
            count = await settle(baseline + 4)
            assert count <= baseline + 4, f"round {round_}: {count} fds, baseline {baseline}"

    run(body)


def test_session_limit(server: Server) -> None:
    """A fifth SFTP session on one connection is refused while four are open."""

    async def body() -> None:
        async with await connect(server) as conn:
            clients = [await conn.start_sftp_client() for _ in range(MAX_SESSIONS)]
            for c in clients:
                assert await c.listdir("/")
            with pytest.raises((asyncssh.Error, OSError)):
                extra = await asyncio.wait_for(conn.start_sftp_client(), TIMEOUT)
                await asyncio.wait_for(extra.listdir("/"), TIMEOUT)
            # The four open sessions are unaffected.
            for c in clients:
                assert "share" in await c.listdir("/")
            # Closing one lets a new one in (the server notices the close asynchronously).
            clients[0].exit()
            await clients[0].wait_closed()
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                try:
                    fresh = await asyncio.wait_for(conn.start_sftp_client(), TIMEOUT)
                    assert "share" in await fresh.listdir("/")
                    break
                except (asyncssh.Error, OSError):
                    if asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.1)
            fresh.exit()
            for c in clients[1:]:
                c.exit()

    run(body)


def test_oversized_packet_closes_channel_only(server: Server) -> None:
    """A packet longer than max_packet closes that channel; the connection and server live on."""

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            other = await conn.start_sftp_client()
            # Announce a packet just over the limit and start sending it.
            raw.writer.write(u32(MAX_PACKET + 1) + bytes([FXP_WRITE]) + b"\0" * 65536)
            rest = await asyncio.wait_for(raw.reader.read(), TIMEOUT)  # EOF: channel closed
            assert rest == b""
            assert "share" in await asyncio.wait_for(other.listdir("/"), TIMEOUT)
            other.exit()
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            assert "share" in await sftp.listdir("/")
        # A huge announced length (4 GiB - 1) is refused the same way, without allocating it.
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            raw.writer.write(u32(0xFFFFFFFF) + bytes([FXP_WRITE]))
            assert await asyncio.wait_for(raw.reader.read(), TIMEOUT) == b""
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            assert "share" in await sftp.listdir("/")

    run(body)
    assert server.process.poll() is None


# -- odd files -----------------------------------------------------------------------------------


def test_fifo_listed_and_open_fails_fast(server: Server) -> None:
    """A FIFO is listed with its type; opening it (read or write) fails at once.

    A unix socket is treated the same way: listed, never opened.
    """
    os.mkfifo(server.root / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(server.root / "sock"))

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            entries = {e.filename: e for e in await sftp.readdir("/")}
            assert "pipe" in entries
            perms = entries["pipe"].attrs.permissions
            assert perms is not None and stat.S_ISFIFO(perms)
            assert str(entries["pipe"].longname).startswith("p")
            assert stat.S_ISFIFO((await sftp.lstat("/pipe")).permissions or 0)
            for mode in ("rb", "wb", "ab", "r+b"):
                with pytest.raises(asyncssh.SFTPError):
                    await asyncio.wait_for(sftp.open("/pipe", mode), 10)
            with pytest.raises(asyncssh.SFTPError):
                await asyncio.wait_for(sftp.truncate("/pipe", 0), 10)
            sock_perms = entries["sock"].attrs.permissions
            assert sock_perms is not None and stat.S_ISSOCK(sock_perms)
            for mode in ("rb", "wb"):
                with pytest.raises(asyncssh.SFTPError):
                    await asyncio.wait_for(sftp.open("/sock", mode), 10)
            # The session still works.
            assert "pipe" in await sftp.listdir("/")

    try:
        run(body)
    finally:
        sock.close()
    assert stat.S_ISFIFO(os.lstat(server.root / "pipe").st_mode)


def test_opendir_missing_fails_at_opendir(server: Server) -> None:
    """OPENDIR of a missing folder or a file fails at OPENDIR, not at the first READDIR."""
    (server.root / "file.txt").write_text("x")

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            rtype, buf = await raw.request(FXP_OPENDIR, sstr(b"/no/such/folder"))
            assert status(rtype, buf) == FX_NO_SUCH_FILE
            rtype, buf = await raw.request(FXP_OPENDIR, sstr(b"/nosuch"))
            assert status(rtype, buf) == FX_NO_SUCH_FILE
            rtype, buf = await raw.request(FXP_OPENDIR, sstr(b"/file.txt"))
            assert status(rtype, buf) != FX_OK
            rtype, buf = await raw.request(FXP_OPENDIR, sstr(b"/share"))
            assert rtype == FXP_HANDLE
            await raw.close(buf.string())

    run(body)


def test_non_utf8_names_round_trip(server: Server) -> None:
    """File names that are not UTF-8 are listed, stat-ed, read and created byte for byte."""
    name = b"caf\xe9-\xff.txt"
    with open(os.path.join(os.fsencode(server.root), name), "wb") as handle:
        handle.write(b"latin-1 name")

    async def body() -> None:
        async with await connect(server) as conn:
            sftp = await conn.start_sftp_client(path_encoding=None)
            names = [e.filename for e in await sftp.readdir(b"/")]
            assert name in names
            attrs = await sftp.stat(b"/" + name)
            assert attrs.size == len(b"latin-1 name")
            async with sftp.open(b"/" + name, "rb") as f:
                content: object = await f.read()
            assert content == b"latin-1 name"
            new = b"new-\x80\xfe"
            async with sftp.open(b"/" + new, "wb") as f:
                await f.write(b"made remotely")
            await sftp.rename(b"/" + new, b"/" + new + b"\xc0")
            sftp.exit()

    run(body)
    on_disk = os.listdir(os.fsencode(server.root))
    assert b"new-\x80\xfe\xc0" in on_disk
    assert (server.root / os.fsdecode(b"new-\x80\xfe\xc0")).read_bytes() == b"made remotely"


def test_server_still_serving_after_bad_requests(server: Server) -> None:
    """Malformed requests get an error status (or close the channel), never crash the server."""

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            # An unknown extended request is OP_UNSUPPORTED.
            rtype, buf = await raw.extended(b"no-such-extension@example.com", b"junk")
            assert status(rtype, buf) == 8
            # A READ on a handle that was never issued.
            rtype, buf = await raw.request(FXP_READ, sstr(b"bogus") + u64(0) + u32(10))
            assert status(rtype, buf) != FX_OK
            # A truncated OPEN (no pflags) is a bad message, not a crash.
            rtype, buf = await raw.request(FXP_OPEN, sstr(b"/x"))
            assert status(rtype, buf) != FX_OK
            # A string length running past the end of the packet.
            rtype, buf = await raw.request(FXP_OPENDIR, u32(0x7FFFFFFF) + b"/share")
            assert status(rtype, buf) != FX_OK
            # Huge offsets: errors, not crashes.
            handle = await raw.open(b"/share/docs/readme.txt", FXF_READ)
            rtype, buf = await raw.request(FXP_READ, sstr(handle) + u64(2**64 - 1) + u32(10))
            assert rtype == FXP_STATUS
            await raw.close(handle)
            handle = await raw.open(b"/huge.bin", FXF_WRITE | FXF_CREAT)
            rtype, buf = await raw.request(FXP_WRITE, sstr(handle) + u64(2**64 - 2) + sstr(b"x"))
            assert status(rtype, buf) != FX_OK
            await raw.close(handle)
        # A packet too short to hold a type and an id.
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            raw.writer.write(u32(0))
            raw.writer.write(u32(2) + b"\x05\x00")
            await asyncio.wait_for(raw.reader.read(), TIMEOUT)  # the channel ends
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            assert "share" in await sftp.listdir("/")

    run(body)
    assert server.process.poll() is None


# -- the channel: order, flow and the end ---------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_first_packet_must_be_init(server: Server) -> None:
    """A channel whose first packet is not INIT is closed; the connection lives on."""

    async def body() -> None:
        async with await connect(server) as conn:
            writer, reader, _ = await conn.open_session(subsystem="sftp", encoding=None)
            writer.write(u32(9) + bytes([FXP_OPENDIR]) + u32(1) + sstr(b"/"))
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed, no reply
            raw = await RawSFTP.start(conn)
            rtype, buf = await raw.request(FXP_OPENDIR, sstr(b"/share"))
            assert rtype == FXP_HANDLE

    run(body)


def test_unknown_request_type_is_unsupported(server: Server) -> None:
    """A request type outside version 3 gets OP_UNSUPPORTED with its id."""

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            rtype, buf = await raw.request(99, b"whatever")
            assert status(rtype, buf) == 8
            assert b"99" in buf.string()

    run(body)


def test_replies_not_read_pause_the_channel(server: Server) -> None:
    """A client that sends requests and reads no replies makes the server stop reading
    (memory stays bounded); once it reads, every request is answered, in full."""
    data = os.urandom(8 << 20)
    (server.root / "eight.bin").write_bytes(data)
    pid = server.process.pid
    count, size = 600, MAX_READ  # about 150 MB of replies

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            handle = await raw.open(b"/eight.bin", FXF_READ)
            before = _rss_kib(pid)
            offsets = {}
            for i in range(count):
                offset = (i * size) % (len(data) - size)
                offsets[raw.next_id] = offset
                raw.send(
                    bytes([FXP_READ]) + u32(raw.next_id) + sstr(handle) + u64(offset) + u32(size)
                )
                raw.next_id += 1
            await asyncio.sleep(2)
            grown = _rss_kib(pid) - before
            assert grown < 64 * 1024, f"the server grew by {grown} KiB while replies waited"
            for _ in range(count):
                rtype, body = await raw.recv()
                assert rtype == FXP_DATA
                buf = Buf(body)
                offset = offsets.pop(buf.u32())
                assert buf.string() == data[offset : offset + size]
            assert not offsets
            await raw.close(handle)

    run(body)


def test_disconnect_while_requests_run(server: Server) -> None:
    """A client that vanishes with OPENs and WRITEs in flight leaves no fd behind and no
    half-written surprise: the server goes on serving others."""
    pid = server.process.pid

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            await sftp.listdir("/")
        await asyncio.sleep(1)
        baseline = _open_fds(pid)
        for round_ in range(3):
            conn = await connect(server)
            raw = await RawSFTP.start(conn)
            handle = await raw.open(f"/gone{round_}.bin".encode(), FXF_WRITE | FXF_CREAT)
            for i in range(64):
                raw.send(bytes([FXP_WRITE]) + u32(raw.next_id) + sstr(handle)
                         + u64(i * 65536) + sstr(b"x" * 65536))  # fmt: skip
                raw.next_id += 1
            for i in range(16):
                name = f"/gone{round_}-{i}.txt".encode()
                raw.send(bytes([FXP_OPEN]) + u32(raw.next_id) + sstr(name)
                         + u32(FXF_WRITE | FXF_CREAT) + u32(0))  # fmt: skip
                raw.next_id += 1
            conn.abort()
            await conn.wait_closed()
        deadline = asyncio.get_running_loop().time() + 15
        while _open_fds(pid) > baseline + 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        assert _open_fds(pid) <= baseline + 2
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            assert "share" in await sftp.listdir("/")

    run(body)
    assert server.process.poll() is None


def test_write_data_is_exactly_what_its_length_says(server: Server) -> None:
    """Bytes after a WRITE's data are ignored (rclone 1.60 pads its last chunk, and
    OpenSSH's sftp-server ignores them); data running past the packet is a bad message
    and writes nothing."""

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            handle = await raw.open(b"/padded.bin", FXF_WRITE | FXF_CREAT | FXF_TRUNC)
            padded = sstr(handle) + u64(0) + sstr(b"payload") + b"\0" * 100
            rtype, buf = await raw.request(FXP_WRITE, padded)
            assert status(rtype, buf) == FX_OK
            short = sstr(handle) + u64(7) + u32(50) + b"only ten b"
            rtype, buf = await raw.request(FXP_WRITE, short)
            assert status(rtype, buf) == 5  # BAD_MESSAGE
            await raw.close(handle)

    run(body)
    assert (server.root / "padded.bin").read_bytes() == b"payload"


def test_channel_closed_while_replies_wait(server: Server) -> None:
    """A client that stops reading replies and then closes the channel (not the
    connection) ends that session: its files are closed and its session slot is free."""
    (server.root / "eight.bin").write_bytes(os.urandom(8 << 20))
    pid = server.process.pid

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            await raw.close(await raw.open(b"/eight.bin", FXF_READ))
            baseline = _open_fds(pid)
            for _ in range(MAX_SESSIONS + 2):  # more than the sessions one connection may hold
                raw = await RawSFTP.start(conn)
                handle = await raw.open(b"/eight.bin", FXF_READ)
                for i in range(300):  # far more replies than the channel's window takes
                    raw.send(bytes([FXP_READ]) + u32(raw.next_id) + sstr(handle)
                             + u64(i * 4096) + u32(MAX_READ))  # fmt: skip
                    raw.next_id += 1
                await asyncio.sleep(0.5)
                raw.writer.channel.close()
                await raw.writer.channel.wait_closed()
            deadline = asyncio.get_running_loop().time() + 15
            while _open_fds(pid) > baseline and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
            assert _open_fds(pid) <= baseline
            raw = await RawSFTP.start(conn)  # a session slot is free
            rtype, _ = await raw.request(FXP_OPENDIR, sstr(b"/share"))
            assert rtype == FXP_HANDLE

    run(body)


@pytest.mark.parametrize(
    ("software", "target_first"),
    [
        ("OpenSSH_9.2p1", True),
        ("paramiko_3.4.0", True),
        ("libssh2_1.10.0", True),
        ("rclone/v1.60.1", True),
        ("Go", True),
        ("PuTTY_Release_0.78", False),
    ],
)
def test_symlink_argument_order_follows_the_client(
    server: Server, software: str, target_first: bool
) -> None:
    """OpenSSH and the clients that follow it (paramiko, libssh2 under curl, rclone, Go's
    pkg/sftp) send SYMLINK's target first; others send the draft's order."""
    (server.root / "target.txt").write_bytes(b"t")

    async def body() -> None:
        async with await connect(server, client_version=software) as conn:
            raw = await RawSFTP.start(conn)
            pair = (b"/target.txt", b"/link") if target_first else (b"/link", b"/target.txt")
            rtype, buf = await raw.request(FXP_SYMLINK, sstr(pair[0]) + sstr(pair[1]))
            assert status(rtype, buf) == FX_OK

    run(body)
    assert os.readlink(server.root / "link") == "/target.txt"


def test_offsets_and_sizes_beyond_off_t_are_plain_errors(server: Server) -> None:
    """READ, WRITE and FSETSTAT at 2**63 or more get a STATUS that says what is wrong,
    and the server logs no unexpected failure."""
    (server.root / "f.bin").write_bytes(b"data")

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            handle = await raw.open(b"/f.bin", FXF_READ | FXF_WRITE)
            for offset in (2**63, 2**64 - 1):
                rtype, buf = await raw.request(FXP_READ, sstr(handle) + u64(offset) + u32(10))
                assert status(rtype, buf) == FX_FAILURE and b"offset" in buf.string()
                payload = sstr(handle) + u64(offset) + sstr(b"x")
                rtype, buf = await raw.request(FXP_WRITE, payload)
                assert status(rtype, buf) == FX_FAILURE and b"offset" in buf.string()
            payload = sstr(handle) + u32(0x1) + u64(2**63)
            rtype, buf = await raw.request(FXP_FSETSTAT, payload)
            assert status(rtype, buf) == FX_FAILURE and b"too large" in buf.string()
            await raw.close(handle)

    run(body)
    assert (server.root / "f.bin").read_bytes() == b"data"
    assert "unexpectedly" not in server.log.read_text(errors="replace")


def test_fstatvfs_follows_the_open_file(server: Server) -> None:
    """fstatvfs@openssh.com asks the open file's descriptor, so it answers after the file
    was renamed."""
    (server.root / "moving.txt").write_bytes(b"x")

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            handle = await raw.open(b"/moving.txt", FXF_READ)
            os.rename(server.root / "moving.txt", server.root / "moved.txt")
            rtype, buf = await raw.extended(b"fstatvfs@openssh.com", sstr(handle))
            assert rtype == FXP_EXTENDED_REPLY
            bsize, frsize, blocks = buf.u64(), buf.u64(), buf.u64()
            disk = os.statvfs(server.root)
            assert (frsize, blocks) == (disk.f_frsize, disk.f_blocks) and bsize > 0
            await raw.close(handle)

    run(body)


def _copy_request(raw: RawSFTP, rid: int, src: bytes, dst: bytes) -> None:
    """Send copy-data of all of ``src`` onto ``dst`` (both handles) without waiting."""
    body = sstr(b"copy-data") + sstr(src) + u64(0) + u64(0) + sstr(dst) + u64(0)
    raw.send(bytes([FXP_EXTENDED]) + u32(rid) + body)


def test_copy_data_stops_when_the_client_leaves(server: Server) -> None:
    """A copy-data of a 4 GiB sparse file onto a 4 GiB target stops soon after its client
    disconnects, instead of writing all of it for nobody. (The target is already that
    long, all hole, so the copy writes the source's zeros: a hole copied past a target's
    end stays a hole and costs nothing, and such a copy ends at once.) Progress shows in
    the blocks the target takes."""
    with open(server.root / "huge.bin", "wb") as sparse:
        sparse.truncate(4 << 30)
    target = server.root / "copy.bin"
    with open(target, "wb") as sparse:
        sparse.truncate(4 << 30)

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            src = await raw.open(b"/huge.bin", FXF_READ)
            dst = await raw.open(b"/copy.bin", FXF_WRITE)
            _copy_request(raw, 999, src, dst)
            deadline = asyncio.get_running_loop().time() + 10
            while target.stat().st_blocks == 0 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            assert target.stat().st_blocks > 0, "the copy started"

    run(body)
    blocks = [target.stat().st_blocks]
    for _ in range(3):
        time.sleep(0.5)
        blocks.append(target.stat().st_blocks)
    target.unlink()
    (server.root / "huge.bin").unlink()
    assert blocks[-1] == blocks[-2] < (4 << 30) // 512, f"the copy went on: {blocks}"


def test_copy_data_of_a_hole_past_the_targets_end_ends_at_once(server: Server) -> None:
    """A 4 GiB hole copied past the end of the target costs nothing: the copy ends with
    the target 4 GiB long and holding no blocks (it took one step per MiB before)."""
    with open(server.root / "huge.bin", "wb") as sparse:
        sparse.truncate(4 << 30)

    async def body() -> None:
        async with await connect(server) as conn:
            raw = await RawSFTP.start(conn)
            src = await raw.open(b"/huge.bin", FXF_READ)
            dst = await raw.open(b"/copy.bin", FXF_WRITE | FXF_CREAT | FXF_TRUNC)
            _copy_request(raw, 7, src, dst)
            rtype, body = await raw.recv()
            buf = Buf(body)
            assert buf.u32() == 7
            assert status(rtype, buf) == FX_OK

    run(body)
    st = (server.root / "copy.bin").stat()
    assert (st.st_size, st.st_blocks) == (4 << 30, 0)


def test_copies_never_hold_the_workers_that_others_need(server: Server) -> None:
    """Eight long copy-data requests at once run on the long jobs' threads, never on
    the shared workers (which could otherwise all be copying): a MKDIR on another
    connection is answered meanwhile. They run in slices served in turn, so after a
    moment each has begun and none has finished (before slices, four ran whole and
    four waited). Each target is already 1 GiB long, all hole, so that the copies write
    (a hole copied past a target's end stays a hole and costs nothing): progress shows
    in the blocks the targets take."""
    with open(server.root / "big.bin", "wb") as sparse:
        sparse.truncate(1 << 30)
    copies = [f"c{n}.bin" for n in range(8)]
    for name in copies:
        with open(server.root / name, "wb") as target:
            target.truncate(1 << 30)

    async def body() -> None:
        async with await connect(server) as one, await connect(server) as two:
            copiers = [await RawSFTP.start(conn) for conn in (one, two) for _ in range(4)]
            for n, raw in enumerate(copiers):
                src = await raw.open(b"/big.bin", FXF_READ)
                dst = await raw.open(f"/{copies[n]}".encode(), FXF_WRITE)
                _copy_request(raw, 1000 + n, src, dst)
            async with await connect(server) as three:
                other = await RawSFTP.start(three)
                rtype, buf = await other.request(FXP_MKDIR, sstr(b"/made") + u32(0))
                assert status(rtype, buf) == FX_OK
                await asyncio.sleep(0.3)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 60
                sizes = [0]
                while not all(sizes) and loop.time() < deadline:
                    await asyncio.sleep(0.1)
                    sizes = [(server.root / name).stat().st_blocks * 512 for name in copies]
                assert all(size > 0 for size in sizes), sizes  # each has begun
                assert all(size < 1 << 30 for size in sizes), "one ran to its end alone"

    try:
        run(body)
    finally:
        for name in ("big.bin", *copies):
            (server.root / name).unlink(missing_ok=True)
    assert (server.root / "made").is_dir()


def test_a_chown_that_changes_nothing_is_answered_at_once_and_rights_still_hold(
    server: Server,
) -> None:
    """tar as root sets each file's owner to the one it already has: that SETSTAT is
    answered without a worker (issue 24), and only when the user may setstat at all and
    the owner really is unchanged."""
    readme = server.root / "share" / "docs" / "readme.txt"
    before = readme.stat()

    async def body() -> None:
        async with await connect(server) as conn, conn.start_sftp_client() as sftp:
            path = "/share/docs/readme.txt"
            await sftp.chown(path, before.st_uid, before.st_gid)  # unchanged: OK
            await sftp.setstat(path, asyncssh.SFTPAttrs(uid=before.st_uid, gid=before.st_gid))
            await sftp.chown(path, 4321, 4321)  # a real change: done on a worker
            assert (readme.stat().st_uid, readme.stat().st_gid) == (4321, 4321)
            await sftp.chown(path, before.st_uid, before.st_gid)
        async with await connect(server, "reader") as conn, conn.start_sftp_client() as sftp:
            with pytest.raises(asyncssh.SFTPPermissionDenied):  # (read-only: even a no-op)
                await sftp.chown("/docs/readme.txt", before.st_uid, before.st_gid)

    run(body)
    after = readme.stat()
    assert (after.st_uid, after.st_gid, after.st_mode) == (
        before.st_uid, before.st_gid, before.st_mode,
    )  # fmt: skip
