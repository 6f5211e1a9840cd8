"""The web listener's socket writer: every byte of a chunk goes out, in order, once."""

from __future__ import annotations

import os
import socket
import threading
import time

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
