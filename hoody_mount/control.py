"""The control socket: how ``hoody-mount connections`` and ``share`` talk to the running server.

A Unix socket in the state folder (``control.sock``, mode 0600, in a folder of mode
0700), never a network port; a peer must also run as the server's user or as root
(``SO_PEERCRED``). One JSON request per connection, one JSON line back:

- ``{"command": "list"}`` -> ``{"sessions": [{id, user, protocol, address, started,
  received, sent, doing}, ...]}``
- ``{"command": "kill", "id": N}`` -> ``{"ended": N}`` or ``{"error": "..."}``
- ``{"command": "end-user", "user": NAME, "reason": TEXT}`` -> ``{"ended": COUNT}``: every
  session of a user (a revoked share's)
- ``{"command": "usage", "user": NAME}`` -> ``{"last_used", "bytes_served"}`` of a share
- ``{"command": "locks"}`` -> ``{"locks": [{id, path, user, owner, depth, scope, expires},
  ...]}``: the lock table (``core/locks.py``), every protocol's locks
- ``{"command": "release-lock", "id": ID}`` -> ``{"released": ID}`` or ``{"error": "..."}``
- ``{"command": "listeners"}`` -> ``{"ssh": {host, port}, "http": {host, port, tls}}``: the
  addresses the server is bound to (the real ports where the configuration says 0)

A path too long for a socket address (108 bytes) is reached through the folder's
file descriptor (``/proc/self/fd/N/control.sock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .config import Listen
from .core.live import Live
from .core.locks import LockTable

log = logging.getLogger("hoody_mount.control")
SOCKET_NAME = "control.sock"
MAX_REQUEST = 4096  # bytes of one request
TIMEOUT = 5.0  # seconds for a request to arrive, or for an answer
KILL_REASON = "ended by the administrator (hoody-mount connections kill)"


class ControlError(Exception):
    """The server cannot be reached, or refused the request; worded for the operator."""


@contextlib.contextmanager
def _address(state_dir: Path) -> Iterator[str]:
    """The socket's address: its path, or a short one through the folder's descriptor."""
    path = str(state_dir / SOCKET_NAME)
    if len(path.encode()) < 100:
        yield path
        return
    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET_NAME}"
    finally:
        os.close(fd)


def _peer_allowed(sock: socket.socket) -> bool:
    """Whether the peer runs as root or as this process's user."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (0, os.getuid())


class ControlServer:
    """Answers the control socket's requests from the event loop."""

    def __init__(
        self,
        state_dir: Path,
        live: Live,
        usage: Callable[[str], dict[str, Any]] | None = None,
        locks: LockTable | None = None,
        listeners: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self._state_dir = state_dir
        self._listeners = listeners or {}
        self._locks = locks if locks is not None else LockTable(None)
        self._live = live
        self._usage = usage
        self._server: asyncio.Server | None = None
        self._bound = -1  # the inode of the socket this server bound

    async def start(self) -> None:
        """Bind the socket (a stale one a stopped server left is replaced)."""
        with _address(self._state_dir) as address:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(address)  # (in the state folder, 0700: no one else may reach it)
            os.chmod(address, 0o600)
            self._bound = os.stat(address).st_ino
        self._server = await asyncio.start_unix_server(self._serve, sock=sock)

    def close(self) -> None:
        """Stop answering and remove the socket (only this server's own)."""
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(OSError), _address(self._state_dir) as address:
            if os.stat(address).st_ino == self._bound:
                os.unlink(address)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            if sock is None or not _peer_allowed(sock):
                answer: dict[str, Any] = {"error": "only root or the server's user may ask"}
            else:
                line = await asyncio.wait_for(reader.readline(), TIMEOUT)
                answer = self._answer(line[:MAX_REQUEST])
            writer.write(json.dumps(answer).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), TIMEOUT)
        except ValueError:  # (a request line past the reader's limit)
            with contextlib.suppress(OSError):
                writer.write(b'{"error": "the request is too long"}\n')
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"error": "the request is not JSON"}
        command = request.get("command") if isinstance(request, dict) else None
        if command == "list":
            return {"sessions": self._live.rows()}
        if command == "kill":
            target = request.get("id")
            if not isinstance(target, int) or isinstance(target, bool):
                return {"error": "kill needs a session id (a number)"}
            entry = self._live.end(target, KILL_REASON)
            if entry is None:
                return {"error": f"no session {target} (list them with: hoody-mount connections)"}
            log.warning(
                "session %d of %s (%s from %s) ended by the administrator",
                entry.id, entry.user, entry.protocol, entry.address,
            )  # fmt: skip
            return {"ended": target}
        if command in ("end-user", "usage"):
            user, reason = request.get("user"), request.get("reason") or KILL_REASON
            if not isinstance(user, str) or not isinstance(reason, str):
                return {"error": f"{command} needs a user name"}
            if command == "usage":
                return self._usage(user) if self._usage else {}
            ended = self._live.end_where(lambda entry: entry.user == user, reason[:200])
            if ended:
                log.warning("%d sessions of %s ended: %s", ended, user, reason[:200])
            return {"ended": ended}
        if command == "locks":
            return {"locks": [lock.row() for lock in self._locks.locks()]}
        if command == "release-lock":
            lock_id = request.get("id")
            lock = self._locks.by_id(lock_id) if isinstance(lock_id, str) else None
            if lock is None or not self._locks.delete(lock.token):
                return {"error": f"no lock {lock_id} (list them with: hoody-mount locks)"}
            log.warning(
                "lock %s of %s on %s released by the administrator",
                lock.id, lock.principal, lock.path,
            )  # fmt: skip
            return {"released": lock.id}
        if command == "listeners":
            return dict(self._listeners)
        return {
            "error": f"unknown command {command!r}: list, kill, end-user, usage, locks, "
            "release-lock or listeners"
        }


def answering(state_dir: Path) -> bool:
    """Whether a server answers on the state folder's control socket now (another
    server on the same state folder would take over its socket, uploads and locks)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        try:
            with _address(state_dir) as address:
                sock.connect(address)
        except OSError:
            return False
    return True


def ask(state_dir: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Send ``request`` to the server using ``state_dir``; its answer (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        try:
            with _address(state_dir) as address:
                sock.connect(address)
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                piece = sock.recv(65536)
                if not piece:
                    break
                data += piece
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(
                f"no server is running with the state folder {state_dir} "
                f"(no one answers on {state_dir / SOCKET_NAME})"
            ) from None
        except OSError as exc:
            raise ControlError(f"{state_dir / SOCKET_NAME}: {exc.strerror or exc}") from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError("the server's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise ControlError("the server's answer is not a JSON object")
    if "error" in answer:
        raise ControlError(str(answer["error"]))
    return answer


def listeners(state_dir: Path) -> tuple[Listen, Listen, bool]:
    """The running server's bound SSH and HTTP listeners, and whether HTTP serves TLS
    (blocking); ``ControlError`` when no server answers."""
    answer = ask(state_dir, {"command": "listeners"})
    try:
        ssh, http = answer["ssh"], answer["http"]
        return (
            Listen(str(ssh["host"]), int(ssh["port"])),
            Listen(str(http["host"]), int(http["port"])),
            bool(http["tls"]),
        )
    except (KeyError, TypeError, ValueError):
        raise ControlError("the server did not say where it listens") from None
