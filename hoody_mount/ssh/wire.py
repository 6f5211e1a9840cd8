"""SFTP version 3 on the wire: replies encoded straight from core results, and errors
mapped to status codes (and to the results the metrics count).

Requests are decoded with asyncssh's ``SSHPacket`` (and ``SFTPAttrs`` for the attributes
of OPEN, MKDIR and SETSTAT); a malformed one raises ``PacketDecodeError``. Replies are
built here from ``os.stat_result`` without intermediate objects: a folder listing
encodes hundreds of them, and sshfs asks for attributes before nearly every operation.
"""

from __future__ import annotations

import errno
import stat
import struct
import time
from collections.abc import Iterable

from asyncssh.constants import (
    FX_BAD_MESSAGE,
    FX_EOF,
    FX_FAILURE,
    FX_INVALID_HANDLE,
    FX_NO_SUCH_FILE,
    FX_OK,
    FX_OP_UNSUPPORTED,
    FX_PERMISSION_DENIED,
    FX_V3_END,
    FXP_ATTRS,
    FXP_HANDLE,
    FXP_NAME,
    FXP_STATUS,
)
from asyncssh.packet import PacketDecodeError
from asyncssh.sftp import SFTPError

from ..core.operations import result_of_errno

_HEADER = struct.Struct(">IB")
_UINT32 = struct.Struct(">I")
_ATTRS = struct.Struct(">IQIIIII")
_ALL_ATTRS = 0x0F  # SIZE | UIDGID | PERMISSIONS | ACMODTIME
_UINT32_MAX = 0xFFFFFFFF
_HALF_YEAR = 365 * 24 * 3600 // 2

NO_ATTRS = _UINT32.pack(0)


def string(data: bytes) -> bytes:
    """An SSH string: its length, then its bytes."""
    return _UINT32.pack(len(data)) + data


def packet(kind: int, *parts: bytes | bytearray) -> bytes:
    """A whole SFTP packet: length, type and the already encoded fields."""
    size = sum(map(len, parts))
    return b"".join((_HEADER.pack(size + 1, kind), *parts))  # one copy of READ data


def _seconds(ns: int) -> int:
    """Whole seconds for a 32-bit time field, clamped to what it can hold."""
    return min(max(ns // 1_000_000_000, 0), _UINT32_MAX)


def attrs(st: object) -> bytes:
    """Size, owner, mode and times of a stat result, as version 3 encodes them."""
    return _ATTRS.pack(
        _ALL_ATTRS,
        st.st_size,  # type: ignore[attr-defined]
        st.st_uid & _UINT32_MAX,  # type: ignore[attr-defined]
        st.st_gid & _UINT32_MAX,  # type: ignore[attr-defined]
        st.st_mode,  # type: ignore[attr-defined]
        _seconds(st.st_atime_ns),  # type: ignore[attr-defined]
        _seconds(st.st_mtime_ns),  # type: ignore[attr-defined]
    )


def longname(filename: bytes, st: object, user: str, group: str, now: float) -> bytes:
    """The ``ls -l`` line that version 3 sends with each listed name (OpenSSH's layout)."""
    mtime = st.st_mtime  # type: ignore[attr-defined]
    when = time.localtime(mtime)
    recent = now - _HALF_YEAR < mtime <= now
    date = time.strftime("%b %e %H:%M" if recent else "%b %e  %Y", when)
    line = (
        f"{stat.filemode(st.st_mode):10s} {st.st_nlink:>4d} "  # type: ignore[attr-defined]
        f"{user:8s} {group:8s} {st.st_size:>8d} {date:12s} "  # type: ignore[attr-defined]
    )
    return line.encode() + filename


def ok(pktid: bytes) -> bytes:
    """STATUS OK."""
    return status(pktid, FX_OK, "")


def status(pktid: bytes, code: int, message: str) -> bytes:
    """A STATUS reply with an English message."""
    return packet(FXP_STATUS, pktid, _UINT32.pack(code), string(message.encode()), string(b"en"))


def handle(pktid: bytes, value: bytes) -> bytes:
    """A HANDLE reply."""
    return packet(FXP_HANDLE, pktid, string(value))


def attrs_reply(pktid: bytes, st: object) -> bytes:
    """An ATTRS reply."""
    return packet(FXP_ATTRS, pktid, attrs(st))


def names(pktid: bytes, entries: Iterable[tuple[bytes, bytes, bytes]]) -> bytes:
    """A NAME reply from (filename, longname, encoded attributes) triples."""
    parts = [string(f) + string(long) + a for f, long, a in entries]
    return packet(FXP_NAME, pktid, _UINT32.pack(len(parts)), *parts)


def one_name(pktid: bytes, filename: bytes) -> bytes:
    """A NAME reply with a single name and no attributes (REALPATH, READLINK)."""
    return names(pktid, [(filename, filename, NO_ATTRS)])


def error(pktid: bytes, exc: BaseException) -> bytes:
    """The STATUS reply for an error raised while serving a request.

    errno is mapped as asyncssh's server maps it, then narrowed to the codes version 3
    defines (a client of version 3 knows nothing above OP_UNSUPPORTED); the message is
    the error's text.
    """
    if isinstance(exc, SFTPError):
        code = exc.code if exc.code <= FX_V3_END else FX_FAILURE
        return status(pktid, code, str(exc.reason))
    if isinstance(exc, PacketDecodeError):
        return status(pktid, FX_BAD_MESSAGE, str(exc) or "Malformed request")
    if isinstance(exc, OSError):
        return status(pktid, _code(exc.errno), exc.strerror or str(exc))
    return status(pktid, FX_FAILURE, f"Internal error: {exc}")


def _code(number: int | None) -> int:
    if number in (errno.ENOENT, errno.ENOTDIR):
        return FX_NO_SUCH_FILE
    if number == errno.EACCES:
        return FX_PERMISSION_DENIED
    return FX_FAILURE


_CODE_RESULTS = {
    FX_EOF: "eof",
    FX_NO_SUCH_FILE: "not_found",
    FX_PERMISSION_DENIED: "denied",
    FX_BAD_MESSAGE: "invalid",
    FX_OP_UNSUPPORTED: "invalid",
    FX_INVALID_HANDLE: "invalid",
}


def result(exc: BaseException) -> str:
    """How a request that raised ``exc`` ended, in the metrics (the end of a file or
    of a folder's names is ``eof``, not an error)."""
    if isinstance(exc, SFTPError):
        return _CODE_RESULTS.get(exc.code, "error")
    if isinstance(exc, PacketDecodeError):
        return "invalid"
    if isinstance(exc, OSError):
        return result_of_errno(exc.errno)
    return "error"
