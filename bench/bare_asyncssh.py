"""The floor for SFTP on asyncssh: asyncssh's own stock SFTP server.

Usage: ``python bench/bare_asyncssh.py ROOT HOST_KEY AUTHORIZED_KEYS [--patched]``.
Binds 127.0.0.1 on a free port, prints ``asyncssh listening on 127.0.0.1:PORT`` and
serves until SIGTERM. Any user name is accepted with a key from AUTHORIZED_KEYS; each
SFTP session is asyncssh's ``SFTPServer`` with its virtual chroot at ROOT.

asyncssh's server does every file call (open, write, stat, readdir, fsync) on the event
loop, blocking: the cheapest way there is, and one hoody-mount may not take. It has no
jail of ours, no permissions, no logs, no workers, no fsync unless the client asks
(``fsync@openssh.com``; it offers every extension sshfs uses: posix-rename, statvfs,
hardlink, fsync). It offers the same ciphers, MACs and key exchanges as hoody-mount, so
clients negotiate the same algorithms with both, and per packet both pay asyncssh's own
costs (framing, cipher and MAC calls, channel and SFTP parsing). ``--patched`` also
applies hoody-mount's changes to asyncssh's transport (``hoody_mount/ssh/patches``),
which make some of those costs smaller; without it the server is asyncssh as released.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import asyncssh
from asyncssh.kex import get_kex_algs

from hoody_mount.ssh import patches
from hoody_mount.ssh.server import CIPHERS, KEX_ALGS, MACS


async def serve(root: str, host_key: str, authorized_keys: str, patched: bool) -> None:
    """Serve SFTP rooted at ``root`` until SIGTERM or SIGINT."""
    if patched:
        patches.install(CIPHERS)
    available = {name.decode() for name in get_kex_algs()}

    def sftp(chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
        return asyncssh.SFTPServer(chan, chroot=root.encode())

    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        authorized_client_keys=authorized_keys,
        sftp_factory=sftp,
        encryption_algs=CIPHERS,
        mac_algs=MACS,
        kex_algs=[name for name in KEX_ALGS if name in available],
        agent_forwarding=False,
        x11_forwarding=False,
        allow_pty=False,
    )
    print(f"asyncssh listening on 127.0.0.1:{server.get_port()}", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    server.close()
    await server.wait_closed()


def main(argv: list[str]) -> None:
    """Serve ``ROOT`` until SIGTERM."""
    patched = "--patched" in argv
    root, host_key, authorized_keys = [arg for arg in argv if arg != "--patched"]
    asyncio.run(serve(root, host_key, authorized_keys, patched))


if __name__ == "__main__":
    main(sys.argv[1:])
