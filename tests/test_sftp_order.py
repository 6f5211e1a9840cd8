"""A SETSTAT behind running WRITEs: queued behind them at once, and run after them."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asyncssh.constants import (
    FX_OK,
    FXF_CREAT,
    FXF_TRUNC,
    FXF_WRITE,
    FXP_HANDLE,
    FXP_INIT,
    FXP_OPEN,
    FXP_SETSTAT,
    FXP_STATUS,
    FXP_WRITE,
)

from hoody_mount.core.names import NameMap
from hoody_mount.core.session import Session
from hoody_mount.core.users import User
from hoody_mount.core.vfs import VFS
from hoody_mount.fair_share import FairShare
from hoody_mount.ssh.batches import Batches, Write
from hoody_mount.ssh.handle_budget import HandleBudget
from hoody_mount.ssh.sftp_channel import SFTPChannel
from hoody_mount.workers import Workers

MTIME = 1_000_000_000


class _Channel:
    """The little of an asyncssh channel that SFTPChannel uses; replies go to ``out``."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return "SSH-2.0-test" if name == "client_version" else default

    def write(self, data: bytes) -> None:
        self.out += data

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def is_closing(self) -> bool:
        return self.closing

    def exit(self, _status: int) -> None:
        self.closing = True

    def close(self) -> None:
        self.closing = True


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _packet(kind: int, rid: int, body: bytes) -> bytes:
    payload = bytes([kind]) + rid.to_bytes(4, "big") + body
    return len(payload).to_bytes(4, "big") + payload


async def _replies(chan: _Channel, count: int) -> dict[int, tuple[int, bytes]]:
    """Wait for ``count`` replies (after VERSION): by request id, their type and body."""
    found: dict[int, tuple[int, bytes]] = {}
    for _ in range(500):
        data, at, found = bytes(chan.out), 0, {}
        while at + 4 <= len(data):
            size = int.from_bytes(data[at : at + 4], "big")
            body = data[at + 4 : at + 4 + size]
            if len(body) < size:
                break
            if body[0] != 2:  # not VERSION
                found[int.from_bytes(body[1:5], "big")] = (body[0], body[5:])
            at += 4 + size
        if len(found) >= count:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(found)} replies instead of {count}")


def test_setstat_is_queued_while_the_writes_before_it_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The WRITEs are held on their worker until the SETSTAT behind them has been queued:
    it is queued without waiting for their replies, and runs after them (the mtime it
    sets is the file's last)."""
    queued = threading.Event()
    held_until_queued: list[bool] = []
    post: Callable[..., None] = Batches.post
    write_many: Callable[..., None] = Session.write_many

    def spy_post(self: Batches, call: Callable[[], Any], done: Any) -> None:
        if not isinstance(call, Write):
            queued.set()
        post(self, call, done)

    def held_write_many(self: Session, *args: Any) -> None:
        held_until_queued.append(queued.wait(5))
        write_many(self, *args)

    monkeypatch.setattr(Batches, "post", spy_post)
    monkeypatch.setattr(Session, "write_many", held_write_many)
    # (the worker queue is what is tested: on a tmpfs temp folder WRITEs would be made
    # on the event loop, in order by construction)
    monkeypatch.setattr(Session, "loop_view", lambda self: None)
    chunks = [os.urandom(1000) for _ in range(4)]

    async def body() -> None:
        served = VFS.open_root(str(tmp_path))
        session = Session(User(name="u"), served.sub("/"), NameMap(served), "sftp")
        chan = _Channel()
        with Workers(4) as pool:
            channel = SFTPChannel(
                chan,
                pool,
                256 * 1024,
                HandleBudget(16, 16),
                pool,
                FairShare(2, 4),  # type: ignore[arg-type]
            )
            serving = asyncio.ensure_future(channel.serve(session, (256 * 1024, 65536, 16)))
            await asyncio.sleep(0)
            channel.data_received(
                (5).to_bytes(4, "big") + bytes([FXP_INIT]) + (3).to_bytes(4, "big")
            )
            flags = (FXF_WRITE | FXF_CREAT | FXF_TRUNC).to_bytes(4, "big")
            channel.data_received(_packet(FXP_OPEN, 1, _string(b"/f") + flags + bytes(4)))
            kind, reply = (await _replies(chan, 1))[1]
            assert kind == FXP_HANDLE
            handle = reply[4:]
            burst = b"".join(
                _packet(FXP_WRITE, 2 + i, _string(handle) + (i * 1000).to_bytes(8, "big")
                        + _string(chunk))
                for i, chunk in enumerate(chunks)
            )  # fmt: skip
            times = (8).to_bytes(4, "big") + MTIME.to_bytes(4, "big") * 2
            channel.data_received(burst + _packet(FXP_SETSTAT, 9, _string(b"/f") + times))
            found = await _replies(chan, 6)
            for rid in (2, 3, 4, 5, 9):
                assert found[rid][0] == FXP_STATUS
                assert int.from_bytes(found[rid][1][:4], "big") == FX_OK
            channel.eof_received()
            await asyncio.wait_for(serving, 10)
        session.close()
        served.close()

    asyncio.run(body())
    assert held_until_queued and all(held_until_queued), "SETSTAT waited for the WRITEs"
    assert (tmp_path / "f").read_bytes() == b"".join(chunks)
    assert (tmp_path / "f").stat().st_mtime == MTIME
