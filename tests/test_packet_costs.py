"""The two per-packet savings in asyncssh: received bytes handed on in pieces, and UMAC
keyed once per direction. Each must leave the SSH stream exactly as it was."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from asyncssh import mac
from asyncssh.connection import SSHConnection
from asyncssh.crypto.umac import umac64, umac128
from conftest import Server, require

from hoody_mount.ssh.patches import keyed_umac, lazy_keepalive, receive_pieces

# -- receive_pieces ------------------------------------------------------------------------


class _Connection:
    """What ``_data_received`` looks at: the transport, None once the connection closed."""

    def __init__(self) -> None:
        self._transport: object | None = object()
        self.received: list[bytes] = []


def _recorder(close_after: int | None = None) -> Any:
    def record(conn: _Connection, data: Any, datatype: Any) -> None:
        assert datatype is None
        conn.received.append(bytes(data))
        if close_after is not None and len(conn.received) >= close_after:
            conn._transport = None

    return record


@pytest.mark.parametrize("size", [0, 1, receive_pieces.PIECE, receive_pieces.PIECE + 1, 262_144])
def test_pieces_cover_the_data_in_order(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the size of a read, asyncssh gets all of it, in order, in pieces of at
    most PIECE bytes; a read of at most PIECE bytes is passed on whole."""
    monkeypatch.setattr(receive_pieces, "_original", _recorder())
    conn = _Connection()
    data = os.urandom(size)
    receive_pieces._data_received(conn, data)
    assert b"".join(conn.received) == data
    assert all(len(piece) <= receive_pieces.PIECE for piece in conn.received)
    assert len(conn.received) == max(1, -(-size // receive_pieces.PIECE))


def test_pieces_stop_once_the_connection_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A piece that makes asyncssh close the connection (a bad MAC) ends the delivery."""
    monkeypatch.setattr(receive_pieces, "_original", _recorder(close_after=2))
    conn = _Connection()
    receive_pieces._data_received(conn, os.urandom(5 * receive_pieces.PIECE))
    assert len(conn.received) == 2


# -- keyed_umac ------------------------------------------------------------------------------


@pytest.mark.parametrize("size, umac_alg", [(8, umac64), (16, umac128)])
def test_keyed_umac_gives_asyncssh_tags(size: int, umac_alg: Any) -> None:
    """Packet after packet, of any length and sequence number (wrapping included), one
    keyed context gives the tags of a context keyed for each packet."""
    key = os.urandom(16)
    keyed = keyed_umac.KeyedUMAC(key, size, umac_alg)
    stock = mac._UMAC(key, size, umac_alg)
    runs = [range(0, 3), range(250, 260), range(65_534, 65_538), range(2**32 - 2, 2**32)]
    sequence = [seq for run in runs for seq in run] + [0, 1, 7, 7]  # wrapped, skipped, again
    for index, seq in enumerate(sequence):
        packet = os.urandom((0, 1, 31, 32_768, 100)[index % 5])
        tag = keyed.sign(seq, packet)
        assert tag == stock.sign(seq, packet), seq
        assert len(tag) == size
    for seq in (5, 6, 2**32 - 1, 0):
        packet = os.urandom(64)
        tag = stock.sign(seq, packet)
        assert keyed.verify(seq, packet, tag)
        assert not keyed.verify(seq + 1, packet, tag)
        assert not keyed.verify(seq, packet + b"x", tag)


def test_keyed_umac_sets_the_nonce_only_out_of_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consecutive sequence numbers set the nonce once; a jump sets it again."""
    keyed = keyed_umac.KeyedUMAC(os.urandom(16), 8, umac64)
    calls: list[bytes] = []
    set_nonce = keyed._context.set_nonce
    monkeypatch.setattr(keyed._context, "set_nonce", lambda n: (calls.append(n), set_nonce(n)))
    for seq in [*range(10, 20), 40, 41]:
        keyed.sign(seq, b"packet")
    assert calls == [(10).to_bytes(8, "big"), (40).to_bytes(8, "big")]


def test_install_replaces_only_umac(monkeypatch: pytest.MonkeyPatch) -> None:
    """After install, asyncssh builds KeyedUMAC for every UMAC algorithm and nothing else."""
    monkeypatch.setattr(mac, "_mac_handler", dict(mac._mac_handler))
    keyed_umac.install()
    keyed_umac.install()  # idempotent
    key = os.urandom(64)
    for name in (b"umac-64-etm@openssh.com", b"umac-128@openssh.com"):
        assert isinstance(mac.get_mac(name, key[:16]), keyed_umac.KeyedUMAC)
    for name in (b"hmac-sha2-256-etm@openssh.com", b"hmac-sha1"):
        assert not isinstance(mac.get_mac(name, key), keyed_umac.KeyedUMAC)


MACS = [
    "umac-64-etm@openssh.com",
    "umac-128-etm@openssh.com",
    "umac-64@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
]


@pytest.mark.parametrize("mac_name", MACS)
def test_openssh_transfers_with_each_mac(server: Server, tmp_path: Path, mac_name: str) -> None:
    """OpenSSH's sftp forced onto each MAC puts and gets 3 MiB: every packet both ways is
    signed and checked, and the upload arrives in reads larger than a piece."""
    require("sftp")
    data = os.urandom(3 * 1024 * 1024 + 17)
    local = tmp_path / "up.bin"
    local.write_bytes(data)
    back = tmp_path / "back.bin"
    result = subprocess.run(
        ["sftp", "-b", "-", "-P", str(server.port), *server.ssh_options(),
         "-o", f"MACs={mac_name}", "-o", "Ciphers=aes128-ctr", "root@127.0.0.1"],
        input=f"put {local} up.bin\nget up.bin {back}\n",
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (server.root / "up.bin").read_bytes() == data
    assert back.read_bytes() == data


# -- lazy_keepalive ------------------------------------------------------------------------


class _Keepalive:
    """What asyncssh's keepalive methods use, with its own methods."""

    _cancel_keepalive_timer = SSHConnection._cancel_keepalive_timer
    _set_keepalive_timer = SSHConnection._set_keepalive_timer
    _reset = lazy_keepalive._reset_keepalive_timer

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self._keepalive_interval = interval
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._auth_complete = True

    def _keepalive_timer_callback(self) -> None:
        pass


def test_reads_in_a_burst_arm_one_timer() -> None:
    """A hundred reads in a row leave the timer armed by the first; one that comes when
    the timer is older than the slack re-arms it; a shorter interval set meanwhile
    re-arms it at once."""

    async def body() -> None:
        conn = _Keepalive(asyncio.get_running_loop(), 15.0)
        conn._reset()
        first = conn._keepalive_timer
        assert first is not None
        for _ in range(100):
            conn._reset()
        assert conn._keepalive_timer is first
        first_when = first.when()
        conn._keepalive_timer = conn._loop.call_at(first_when - 1.5, conn._keepalive_timer_callback)
        first.cancel()
        aged = conn._keepalive_timer
        conn._reset()  # 1.5 s old: more than the 1 s slack
        assert conn._keepalive_timer is not aged and aged.cancelled()
        conn._keepalive_interval = 2.0
        conn._reset()
        timer = conn._keepalive_timer
        assert timer is not None and timer.when() - conn._loop.time() <= 2.0
        timer.cancel()

    asyncio.run(body())
