"""A fix for asyncssh's receive window while a channel's reading is paused.

When a slow reader pauses a channel, asyncssh keeps later data in the channel's buffer.
On resume it delivers the first buffered chunk and, if the window is below half, grants
the peer a whole window again, although most of what was received still sits in that
buffer. A client that writes faster than the disk (sshfs uploading 1 GiB) then makes
the buffer grow by up to a window per pause: 470 MB of RSS in the benchmark.

Counting the still-buffered bytes as part of the window when deciding on an adjustment
keeps what the peer may send, plus what is buffered, within one window. They are
counted only when an adjustment is due (the window below half), not for every chunk
delivered from a long buffer.
"""

from __future__ import annotations

from typing import Any

from asyncssh.channel import SSHChannel

_original = SSHChannel._deliver_data


def _deliver_data(self: Any, data: bytes, datatype: Any) -> None:
    if not self._recv_buf or self._recv_window >= self._init_recv_window / 2:
        _original(self, data, datatype)  # no adjustment due: nothing to count
        return
    pending = sum(len(chunk) for chunk, _ in self._recv_buf)
    self._recv_window += pending  # buffered data has not been handed over yet
    try:
        _original(self, data, datatype)
    finally:
        self._recv_window -= pending


def install() -> None:
    """Patch asyncssh's channels (idempotent)."""
    SSHChannel._deliver_data = _deliver_data  # type: ignore[method-assign]
