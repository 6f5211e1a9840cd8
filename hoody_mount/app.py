"""Wires everything together: state, users, the root VFS, the worker pool and the servers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TextIO

from . import state
from .config import Config, Listen
from .core.names import NameMap
from .core.vfs import VFS
from .ssh import server as ssh_server

log = logging.getLogger("hoody_mount")
WORKER_THREADS = 64


def setup_logging(config: Config) -> None:
    """Log to stderr, and to a file in the log folder when one is configured."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if config.log_dir is not None:
        config.log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(config.log_dir / "hoody-mount.log"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


def _connect_help(listen: Listen, user: str, password: str | None) -> str:
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "::", "") else listen.host
    target = f"{user}@{host}"
    obscured = f"$(rclone obscure '{password}')" if password else "$(rclone obscure 'PASSWORD')"
    return "\n".join(
        [
            "Connect with:",
            f"  sftp -P {listen.port} {target}",
            f"  scp -P {listen.port} FILE {target}:",
            f"  mkdir -p ~/hoody && sshfs -p {listen.port} {target}:/ ~/hoody "
            "-o reconnect,ServerAliveInterval=15,ServerAliveCountMax=3",
            f"  rclone config create hoody sftp host {host} port {listen.port} user {user} "
            f"pass {obscured} && rclone lsd hoody:/",
        ]
    )


async def run(config: Config, out: TextIO = sys.stdout) -> None:
    """Serve until SIGTERM or SIGINT."""
    state.prepare(config.state_dir)
    if config.source == "embedded default":
        config.root.mkdir(parents=True, exist_ok=True)
    host_key, new_key = state.host_key(config.state_dir)
    password: str | None = None
    users = dict(config.users)
    default = users.get(config.default_user)
    if default is not None and default.password_hash is None:
        hashed, password = state.default_password_hash(
            config.state_dir, os.environ.get("HOODY_MOUNT_PASSWORD")
        )
        users[default.name] = replace(default, password_hash=hashed)

    vfs = VFS.open_root(str(config.root))
    names = NameMap(vfs)
    pool = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="hoody-io")
    ctx = ssh_server.SSHContext(users, vfs, names, pool, config.ssh_limits)
    acceptor = await ssh_server.start(ctx, config.ssh, host_key)
    bound = Listen(config.ssh.host, acceptor.get_port())

    fingerprint = host_key.get_fingerprint("sha256")
    lines = [
        f"hoody-mount serving {config.root} ({config.source})",
        f"SSH/SFTP listening on {bound}",
        f"HTTP {config.http}: WebDAV and the file API are not served yet",
        f"Host key {fingerprint}{' (new)' if new_key else ''}",
    ]
    if password:
        lines.append(f"Password of {config.default_user} (shown only this once): {password}")
    if default is not None:
        lines.append(_connect_help(bound, default.name, password))
    lines.append("Ready. Stop with Ctrl-C or SIGTERM.")
    print("\n".join(lines), file=out, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        acceptor.close()
        await acceptor.wait_closed()
        pool.shutdown(wait=False, cancel_futures=True)
        vfs.close()


def serve(config: Config) -> None:
    """Run the server in a fresh event loop."""
    setup_logging(config)
    try:
        asyncio.run(run(config))
    except state.StateError as exc:
        print(f"hoody-mount: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        print(f"hoody-mount: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
