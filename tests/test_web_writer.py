"""The web listener's socket writer and reader: every byte of a chunk goes out, in order,
once; the worker's turn is given back only for a wait on the client."""

from __future__ import annotations

import os
import socket
import threading
import time

from conftest import wait_until

from hoody_mount.core.turns import Turns
from hoody_mount.http_transport.intake import Inbox
from hoody_mount.http_transport.server import SocketWriter


def test_a_chunk_larger_than_the_socket_buffer_goes_out_whole() -> None:
    """Sends to a lagging reader come back partial; the writer sends the rest of each."""
    writer_end, reader_end = socket.socketpair()
    writer_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024)
    reader_end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024)
    writer_end.settimeout(10)  # as cheroot does: a non-blocking fd, sends may be partial
    chunks = [os.urandom(3 << 20), bytearray(os.urandom(1 << 20)), memoryview(b"tail")]
    writer = SocketWriter(writer_end)
    written: list[int] = []

    def write_all() -> None:
        try:
            for chunk in chunks:
                written.append(writer.write(chunk))
        finally:
            writer_end.shutdown(socket.SHUT_WR)

    reader_end.settimeout(10)
    thread = threading.Thread(target=write_all)
    thread.start()
    try:
        time.sleep(0.3)  # the writer is now waiting on a full buffer
        received = bytearray()
        while piece := reader_end.recv(4096):
            received += piece
    finally:
        thread.join(10)
        writer_end.close()
        reader_end.close()
    assert not thread.is_alive()
    assert written == [len(chunk) for chunk in chunks]
    assert writer.bytes_written == sum(written)
    assert received == b"".join(bytes(chunk) for chunk in chunks)


def test_a_short_answer_keeps_the_turn_and_a_long_one_gives_way() -> None:
    """Bytes the socket takes at once (up to KEPT_SEND) go out with the worker's turn
    kept; a longer answer steps aside, so a waiting worker gets the turn meanwhile."""
    turns = Turns(1)
    writer_end, reader_end = socket.socketpair()
    writer_end.settimeout(10)
    reader_end.settimeout(10)
    writer = SocketWriter(writer_end)
    got_turn = threading.Event()

    def waiter() -> None:
        with turns.held():
            got_turn.set()

    received = bytearray()

    def read() -> None:
        while piece := reader_end.recv(65536):
            received.extend(piece)

    reader = threading.Thread(target=read)
    reader.start()
    other = threading.Thread(target=waiter)
    try:
        with turns.held():
            other.start()
            assert wait_until(lambda: turns.waiting() == 1, 30)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
            writer.write(b"hello")
            assert turns.waiting() == 1 and not got_turn.is_set()
            writer.write(os.urandom(4 << 20))  # (longer than KEPT_SEND: gives way)
            assert got_turn.is_set()
    finally:
        writer_end.shutdown(socket.SHUT_WR)
        other.join(30)
        reader.join(30)
        writer_end.close()
        reader_end.close()
    assert len(received) == 38 + 5 + (4 << 20)


def test_bytes_already_there_are_read_with_the_turn_kept_and_a_wait_gives_way() -> None:
    """A request's bytes that have arrived are read without a step aside; a read that
    must wait for the client steps aside, so a waiting worker gets the turn."""
    turns = Turns(1)
    reader_end, client_end = socket.socketpair()
    reader_end.settimeout(10)
    inbox = Inbox(reader_end, window=60)
    got_turn = threading.Event()

    def waiter() -> None:
        with turns.held():
            got_turn.set()
            client_end.sendall(b"late")

    other = threading.Thread(target=waiter)
    buffer = bytearray(64)
    try:
        client_end.sendall(b"early")
        with turns.held():
            other.start()
            assert wait_until(lambda: turns.waiting() == 1, 30)
            assert inbox.readinto(buffer) == 5 and buffer[:5] == b"early"
            assert turns.waiting() == 1 and not got_turn.is_set()
            assert inbox.readinto(buffer) == 4 and buffer[:4] == b"late"  # (it waited)
            assert got_turn.is_set()
    finally:
        other.join(30)
        reader_end.close()
        client_end.close()
