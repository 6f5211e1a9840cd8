"""Let an exec request carry a command line that is not UTF-8.

asyncssh refuses an exec request whose command is not UTF-8, so ``md5sum 'caf\xe9'``
for a file whose name is Latin-1 failed ("exec request failed on channel 0"). rclone's
SFTP backend checks every upload with such a command: it took the failure for a
corrupted transfer and deleted the file it had just uploaded. Linux names are bytes,
and OpenSSH passes the command's bytes on as they are; here the command is decoded with
``surrogateescape``, as Python decodes file names, so every byte reaches the built-in
commands (which encode names back the same way) or the shell user's shell unchanged.
"""

from __future__ import annotations

from typing import Any

from asyncssh.channel import SSHServerChannel


def _process_exec_request(self: Any, packet: Any) -> bool:
    command_bytes = packet.get_string()
    packet.check_end()
    command = command_bytes.decode("utf-8", "surrogateescape")
    self.logger.info("  Command: %s", command)
    return bool(self._start_session(command=command))


def install() -> None:
    """Patch asyncssh's server channels (idempotent; fails at start if asyncssh changed)."""
    if not callable(getattr(SSHServerChannel, "_start_session", None)):
        raise RuntimeError("asyncssh's SSHServerChannel has no _start_session")
    SSHServerChannel._process_exec_request = _process_exec_request  # type: ignore[method-assign]
