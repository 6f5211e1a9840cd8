"""Login shells and commands for shell users (administrators, never jailed).

A shell or command runs as the OS user the configuration names, in the user's start
folder, with a clean environment (HOME, SHELL, USER, LOGNAME, TERM, PATH, LANG). With a
PTY it gets a new session with the PTY as its controlling terminal, so Ctrl-C reaches
the foreground program and window changes reach ``stty size``; without one, stdin,
stdout and stderr are plain pipes. The exit status (or signal) goes back to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import os
import pty
import pwd
import signal
import struct
import termios
from pathlib import Path
from typing import Any

from asyncssh.misc import BreakReceived, SignalReceived, TerminalSizeChanged

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BLOCK = 64 * 1024
HANG_UP_GRACE = 5.0  # seconds between SIGHUP and SIGKILL for a command left behind


def _account(os_user: str | None) -> pwd.struct_passwd:
    return pwd.getpwnam(os_user) if os_user else pwd.getpwuid(os.getuid())


def environment(
    account: pwd.struct_passwd, term: str | None, client: dict[str, str]
) -> dict[str, str]:
    """The environment of a session: the account's, plus the client's locale."""
    env = {
        "HOME": account.pw_dir,
        "SHELL": account.pw_shell or "/bin/sh",
        "USER": account.pw_name,
        "LOGNAME": account.pw_name,
        "PATH": PATH,
        "LANG": client.get("LANG", "C.UTF-8"),
    }
    for key, value in client.items():
        if key.startswith("LC_"):
            env[key] = value
    if term:
        env["TERM"] = term
    return env


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


async def _read_pty(master: int, size: int) -> bytes:
    """Read the PTY master; EIO (the child side closed) is the end of the output."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(master, size)
        except BlockingIOError:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(master, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(master)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise


def _set_size(fd: int, size: tuple[int, int, int, int]) -> None:
    width, height, pixwidth, pixheight = size
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, pixwidth, pixheight))


async def _pump_out(read: Any, write: Any) -> None:
    """Copy a child's output to the channel until EOF (EIO from a PTY master is EOF)."""
    while True:
        try:
            data = await read(BLOCK)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return
            raise
        if not data:
            return
        write.write(data)
        await write.drain()


async def _pump_in(process: Any, child: asyncio.subprocess.Process, tty: Any) -> None:
    """Copy the channel's input to the child; apply window changes and signals.

    ``tty`` is the write transport of the PTY master, or None for plain pipes.
    """
    while True:
        try:
            data = await process.stdin.read(BLOCK)
        except TerminalSizeChanged as change:
            if tty is not None:
                _set_size(tty.get_extra_info("pipe").fileno(), change.term_size)
            continue
        except (SignalReceived, BreakReceived) as event:
            name = getattr(event, "signal", "INT")
            with contextlib.suppress(AttributeError, ProcessLookupError):
                os.killpg(child.pid, getattr(signal, f"SIG{name}"))
            continue
        except (OSError, EOFError):
            data = b""
        if not data:
            break
        if tty is not None:
            tty.write(data)
        elif child.stdin is not None:
            child.stdin.write(data)
            await child.stdin.drain()
    if tty is not None:
        tty.write(b"\x04")  # end of input for a terminal in canonical mode
    elif child.stdin is not None:
        child.stdin.close()


def _hang_up(child: asyncio.subprocess.Process) -> None:
    """End a command whose channel closed: SIGHUP to its process group, as a terminal
    that goes away sends, and SIGKILL to what is left ``HANG_UP_GRACE`` seconds later."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGHUP)

    def kill() -> None:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)

    asyncio.get_running_loop().call_later(HANG_UP_GRACE, kill)


async def run(process: Any, os_user: str | None, start: Path) -> int:
    """Run the client's shell or command and report how it ended (its exit status, or
    minus the signal that ended it, is returned too)."""
    account = _account(os_user)
    shell = account.pw_shell or "/bin/sh"
    command = process.command
    argv = [shell, "-l"] if command is None else [shell, "-c", command]
    env = environment(account, process.term_type, dict(process.env))
    cwd = str(start) if start.is_dir() else account.pw_dir
    as_other = account.pw_uid != os.getuid()
    identity: dict[str, Any] = (
        {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": os.getgrouplist(
            account.pw_name, account.pw_gid)}
        if as_other else {}
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    if process.term_type is not None:
        master, slave = pty.openpty()
        _set_size(master, process.term_size)
        try:
            child = await asyncio.create_subprocess_exec(
                "setsid", "--ctty", *argv,
                stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, **identity,
            )  # fmt: skip
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        master_out = os.fdopen(os.dup(master), "wb", buffering=0)
        tty, _ = await loop.connect_write_pipe(asyncio.Protocol, master_out)
        outputs = [_pump_out(functools.partial(_read_pty, master), process.stdout)]
        feeder = asyncio.ensure_future(_pump_in(process, child, tty))
    else:
        master, tty = None, None
        child = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=cwd, env=env, start_new_session=True,
            **identity,
        )  # fmt: skip
        assert child.stdout is not None and child.stderr is not None
        outputs = [
            _pump_out(child.stdout.read, process.stdout),
            _pump_out(child.stderr.read, process.stderr),
        ]
        feeder = asyncio.ensure_future(_pump_in(process, child, None))
    try:
        copied = asyncio.ensure_future(asyncio.gather(*outputs))
        gone = asyncio.ensure_future(process.channel.wait_closed())
        await asyncio.wait({copied, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not copied.done():  # the client went, or was sent away: so does the command
            _hang_up(child)
        gone.cancel()
        with contextlib.suppress(OSError):
            await copied
        status = await child.wait()
    finally:
        feeder.cancel()
        if tty is not None:
            tty.close()
        if master is not None:
            os.close(master)
    if process.channel.is_closing():
        return status  # (no one to tell)
    if status < 0:
        process.exit_with_signal(signal.Signals(-status).name.removeprefix("SIG"))
    else:
        process.exit(status)
    return status
