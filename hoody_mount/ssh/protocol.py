"""SFTP v3 protocol handling on top of asyncssh's, with the extensions real clients use.

asyncssh decodes and encodes the packets; this subclass adds what it lacks: the
configured packet and READ limits (advertised with limits@openssh.com), a cap on open
handles, folders opened at OPENDIR (so errors come back there and the fd is released at
CLOSE), copy-data refusing the same file, expand-path@openssh.com, home-directory and
users-groups-by-id@openssh.com.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
from typing import Any, cast

from asyncssh.constants import (
    FXP_CLOSE,
    FXP_DATA,
    FXP_EXTENDED_REPLY,
    FXP_NAME,
    FXP_OPENDIR,
    FXP_READ,
    FXP_WRITE,
)
from asyncssh.misc import Error
from asyncssh.packet import Byte, PacketDecodeError, SSHPacket, String, UInt32
from asyncssh.sftp import (
    SFTPBadMessage,
    SFTPInvalidHandle,
    SFTPLimits,
    SFTPName,
    SFTPNoConnection,
    SFTPServerHandler,
)

from .pipeline import READ, Pipeline, Span, classify
from .sftp import NameStream, SFTPAdapter

SFTP_VERSION = 3
FLUSH_AT = 256 * 1024  # queued reply bytes that are handed over without waiting


class _RawReply:
    """An EXTENDED_REPLY body that is already encoded."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def encode(self, _version: int) -> bytes:
        return self.data


def _uint32s(blob: bytes) -> list[int]:
    if len(blob) % 4:
        raise SFTPBadMessage("id list length is not a multiple of 4")
    return [int.from_bytes(blob[i : i + 4], "big") for i in range(0, len(blob), 4)]


class SFTPHandler(SFTPServerHandler):
    """One SFTP channel: packets in, adapter calls, replies out."""

    _extensions = [
        (b"newline", b"\n"),
        (b"posix-rename@openssh.com", b"1"),
        (b"statvfs@openssh.com", b"2"),
        (b"fstatvfs@openssh.com", b"2"),
        (b"hardlink@openssh.com", b"1"),
        (b"fsync@openssh.com", b"1"),
        (b"lsetstat@openssh.com", b"1"),
        (b"limits@openssh.com", b"1"),
        (b"expand-path@openssh.com", b"1"),
        (b"copy-data", b"1"),
        (b"home-directory", b"1"),
        (b"users-groups-by-id@openssh.com", b"1"),
    ]

    _return_types = {
        **SFTPServerHandler._return_types,
        b"expand-path@openssh.com": FXP_NAME,
        b"home-directory": FXP_NAME,
        b"users-groups-by-id@openssh.com": FXP_EXTENDED_REPLY,
    }

    def __init__(self, adapter: SFTPAdapter, reader: Any, writer: Any, max_packet: int) -> None:
        super().__init__(adapter, reader, writer, SFTP_VERSION)
        self._adapter = adapter
        self._max_packet = max_packet
        self._outbox: list[bytes | bytearray] = []
        self._outbox_size = 0
        self._debug = self.logger.isEnabledFor(logging.DEBUG)

    def send_packet(self, pkttype: int, pktid: int | None, *args: bytes | bytearray) -> None:
        """Queue a reply; the replies of one turn of the event loop leave in one write.

        A burst of answers (32 WRITE statuses, or READ data whose 13-byte header would
        otherwise spill into an SSH packet of its own) then fills whole SSH packets, and
        each packet costs asyncssh one encryption and one socket write.
        """
        if not self._writer:
            raise SFTPNoConnection("Connection not open")
        if self._writer.channel.is_closing():
            return
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        size = 1 + sum(map(len, args))
        self._outbox += (UInt32(size), Byte(pkttype), *args)
        self._outbox_size += 4 + size
        if self._debug:
            self.log_sent_packet(pkttype, pktid, Byte(pkttype) + b"".join(args))
        if self._outbox_size >= FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        """Hand the queued replies to the channel."""
        if not self._outbox:
            return
        outbox, self._outbox, self._outbox_size = self._outbox, [], 0
        if self._writer is not None and not self._writer.channel.is_closing():
            self._writer.write(b"".join(outbox))

    def _read_now(self, payload: bytes, span: Span) -> bool:
        """Answer a READ on the spot if the page cache holds its bytes (no worker hop)."""
        file_obj = self._file_handles.get(span.handle)
        if file_obj is None:
            return False
        data = self._adapter.read_cached(file_obj, span.start, span.end - span.start)
        if data is None:
            return False
        pktid = payload[1:5]
        self.send_packet(FXP_DATA, int.from_bytes(pktid, "big"), pktid, UInt32(len(data)), data)
        return True

    async def _read_payload(self) -> bytes:
        """Read one packet's bytes, refusing any longer than the configured limit."""
        assert self._reader is not None
        length = int.from_bytes(await self._reader.readexactly(4), "big")
        if length > self._max_packet:
            raise SFTPBadMessage(f"Packet of {length} bytes exceeds the limit {self._max_packet}")
        return await self._reader.readexactly(length)

    async def recv_packet(self) -> SSHPacket:
        """Read one packet (the INIT exchange)."""
        return SSHPacket(await self._read_payload())

    async def recv_packets(self) -> None:
        """Serve requests until the client leaves; READs and WRITEs run concurrently."""
        pipeline = Pipeline()
        exc: Exception | None = None
        try:
            while self._reader:
                if self._writer is not None:
                    await self._writer.drain()  # answers not yet sent hold back new requests
                payload = await self._read_payload()
                kind, span = classify(payload, FXP_READ, FXP_WRITE)
                if kind == READ and span and not pipeline.writing and self._read_now(payload, span):
                    continue
                packet = SSHPacket(payload)
                pkttype = packet.get_byte()
                pktid = packet.get_uint32()
                if self._debug:
                    self.log_received_packet(pkttype, pktid, packet)
                run = functools.partial(self._process_packet, pkttype, pktid, packet)
                await pipeline.submit(kind, span, run)
        except PacketDecodeError as error:
            exc = SFTPBadMessage(str(error))
        except EOFError:
            exc = None
        except (OSError, Error) as error:
            exc = error
        await pipeline.drain()
        await self._cleanup(exc)

    async def _cleanup(self, exc: Exception | None) -> None:
        """Close what the client left open; report exit status 0 as OpenSSH's server does."""
        for stream in list(self._dir_handles.values()):
            await cast(NameStream, stream).close()
        self._dir_handles = {}
        self._flush()
        if self._writer is not None:
            cast(Any, self._writer.channel).exit(0)
        await super()._cleanup(exc)

    async def _process_opendir(self, packet: SSHPacket) -> bytes:
        path = packet.get_string()
        packet.check_end()
        stream = await self._adapter.open_listing(path)
        handle = self._get_next_handle()
        self._dir_handles[handle] = stream
        return handle

    async def _process_close(self, packet: SSHPacket) -> None:
        handle = packet.get_string()
        packet.check_end()
        stream = self._dir_handles.pop(handle, None)
        if stream is not None:
            await cast(NameStream, stream).close()
            return
        file_obj = self._file_handles.pop(handle, None)
        if file_obj is None:
            raise SFTPInvalidHandle("Invalid file handle")
        await self._adapter.close(file_obj)

    async def _process_write(self, packet: SSHPacket) -> int:
        """WRITE, ignoring bytes after the data as OpenSSH's sftp-server does.

        rclone 1.60 (Debian 12's, built on pkg/sftp 1.13.5) sends the last short chunk of
        a concurrent upload in a packet padded to the full chunk size.
        """
        handle = packet.get_string()
        offset = packet.get_uint64()
        data = packet.get_string()
        file_obj = self._file_handles.get(handle)
        if file_obj is None:
            raise SFTPInvalidHandle("Invalid file handle")
        return await self._adapter.write(file_obj, offset, data)

    async def _process_limits(self, packet: SSHPacket) -> SFTPLimits:
        packet.check_end()
        a = self._adapter
        return SFTPLimits(self._max_packet, a.max_read, a.max_read, a.max_handles)

    async def _process_copy_data(self, packet: SSHPacket) -> None:
        src_handle = packet.get_string()
        src_offset = packet.get_uint64()
        length = packet.get_uint64()
        dst_handle = packet.get_string()
        dst_offset = packet.get_uint64()
        packet.check_end()
        src = self._file_handles.get(src_handle)
        dst = self._file_handles.get(dst_handle)
        if src is None or dst is None:
            raise SFTPInvalidHandle("Invalid file handle")
        await self._adapter.copy_data(src, src_offset, length, dst, dst_offset)  # type: ignore[arg-type]

    async def _process_expand_path(self, packet: SSHPacket) -> tuple[list[SFTPName], bool]:
        path = packet.get_string()
        packet.check_end()
        home = self._adapter.home_directory()
        if path == b"~" or path.startswith(b"~/"):
            path = home + path[1:]
        elif path.startswith(b"~"):
            name, _, rest = path[1:].partition(b"/")
            if name.decode("utf-8", "replace") != self._adapter.session.user.name:
                raise OSError(errno.ENOENT, "No such user")
            path = home + b"/" + rest
        return [SFTPName(self._adapter.realpath(path))], False

    async def _process_home_directory(self, packet: SSHPacket) -> tuple[list[SFTPName], bool]:
        name = packet.get_string()
        packet.check_end()
        if name and name.decode("utf-8", "replace") != self._adapter.session.user.name:
            raise OSError(errno.ENOENT, "No such user")
        return [SFTPName(self._adapter.home_directory())], False

    async def _process_users_groups_by_id(self, packet: SSHPacket) -> _RawReply:
        uids = _uint32s(packet.get_string())
        gids = _uint32s(packet.get_string())
        packet.check_end()
        names = self._adapter.session.names
        await self._adapter.run(names.refresh)
        users = b"".join(String(names.user(uid) or "") for uid in uids)
        groups = b"".join(String(names.group(gid) or "") for gid in gids)
        return _RawReply(String(users) + String(groups))

    _packet_handlers: dict[int | bytes, Any] = {
        **SFTPServerHandler._packet_handlers,
        FXP_OPENDIR: _process_opendir,
        FXP_CLOSE: _process_close,
        FXP_WRITE: _process_write,
        b"limits@openssh.com": _process_limits,
        b"copy-data": _process_copy_data,
        b"expand-path@openssh.com": _process_expand_path,
        b"home-directory": _process_home_directory,
        b"users-groups-by-id@openssh.com": _process_users_groups_by_id,
    }
    _packet_handlers.pop(b"ranges@asyncssh.com", None)
