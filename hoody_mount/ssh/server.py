"""The SSH server: authentication, connection limits and the SFTP and scp channels.

Authentication uses the core's users (scrypt password hashes and authorized keys).
Agent, X11 and port forwarding are refused. Each SFTP or scp channel gets a Session
over the user's jail, opened when the channel starts.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import asyncssh
from asyncssh.constants import EXTENDED_DATA_STDERR
from asyncssh.kex import get_kex_algs
from asyncssh.scp import run_scp_server
from asyncssh.stream import SSHReader, SSHWriter

from ..config import Listen, SSHLimits
from ..core import logs, permissions
from ..core.addresses import client_of
from ..core.counters import COUNTERS
from ..core.guard import LoginGuard
from ..core.live import SHUTTING_DOWN, Entry, Live
from ..core.log_limit import Throttled
from ..core.operations import OPERATIONS, result_of_errno
from ..core.session import Session
from ..core.sessions import Sessions
from ..core.shares import PREFIX as SHARE_PREFIX
from ..core.users import (
    UNKNOWN_SECRET,
    User,
    read_authorized_keys,
    stored_for,
    verify_password,
)
from ..fair_share import FairShare
from ..proxy_protocol import Network
from ..workers import Workers
from . import commands, patches, proxied, shell, words
from .handle_budget import HandleBudget
from .send_away import send_away
from .sftp import SFTPAdapter
from .sftp_channel import SFTPChannel

log = logging.getLogger("hoody_mount.ssh")
access = logging.getLogger("hoody_mount.access")
refusals = Throttled(log, "SSH connections refused")

# AES only (GCM, then CTR with an encrypt-then-MAC). A client picks the first cipher of
# its own list that the server offers: OpenSSH's list starts with chacha20-poly1305,
# which asyncssh runs several times slower than AES (21 us against 6-11 us for a 32 KiB
# packet here), then aes128-ctr, so OpenSSH clients get aes128-ctr with umac-64-etm;
# clients that list GCM first get GCM. CTR stays for the clients that have no GCM.
CIPHERS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
]
# What a current OpenSSH server offers, minus SHA-1 (ssh-audit: fail): no
# diffie-hellman-group14-sha1, hmac-sha1 or hmac-sha1-etm, group exchange only with
# groups of 2048 bits or more (dh_groups), and none of asyncssh's extras (NIST-curve
# ML-KEM hybrids, secp256k1, curve448, the @ssh.com groups, RSA key exchange).
# asyncssh adds kex-strict-s-v00@openssh.com (the Terrapin fix) and ext-info-s itself.
# The post-quantum ones are offered when this asyncssh build has them.
KEX_ALGS = [
    "mlkem768x25519-sha256",
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
]
MACS = [
    "umac-64-etm@openssh.com",
    "umac-128-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "umac-64@openssh.com",
    "umac-128@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
]
T = TypeVar("T")
DROP_FROM = 0.3  # of max_unauthenticated: from there new logins are refused at random
DROP_RATE = 0.3  # the chance of a refusal there, rising to 1 when every slot is taken
BACKLOG = 4096  # connections the kernel queues before they are accepted
LONG_CALL_THREADS = 4  # long jobs (copy-data, hashes) run at once; more wait their turn
LONG_CALLS_PER_USER = 2  # of those, one user's at once (hashes, copy-data); the rest wait


@dataclass
class SSHContext:
    """What every connection shares: users, their sessions, the worker pool, limits, counters."""

    users: Mapping[str, User]
    sessions: Sessions
    pool: Workers
    limits: SSHLimits
    guard: LoginGuard = field(default_factory=LoginGuard)
    connections: collections.Counter[str] = field(default_factory=collections.Counter)
    unauthenticated: int = 0
    unauthenticated_by_address: collections.Counter[str] = field(
        default_factory=collections.Counter
    )
    connections_by_user: collections.Counter[str] = field(default_factory=collections.Counter)
    live: Live = field(default_factory=Live)  # the logged-in connections, for the operator
    draining: bool = False  # a stop has begun: no new logins
    handles: HandleBudget = field(default_factory=HandleBudget.for_this_process)
    # copy-data may run for minutes: on threads of its own, so it never holds the pool
    long_calls: Workers = field(default_factory=lambda: Workers(LONG_CALL_THREADS, "hoody-copy"))
    long_share: FairShare = field(
        default_factory=lambda: FairShare(LONG_CALLS_PER_USER, LONG_CALL_THREADS)
    )
    du_seconds: float = 10.0  # the du built-in's time budget

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call in the worker pool."""
        return await self.pool.call(asyncio.get_running_loop(), fn, *args)

    async def run_long(self, user: str, fn: Callable[..., T], *args: Any) -> T:
        """Run one slice of a long job (a part of a hash) on the long jobs' threads, in
        ``user``'s turn (see ``fair_share``)."""
        async with self.long_share.slot(user):
            return await self.long_calls.call(asyncio.get_running_loop(), fn, *args)


def _refusal(ctx: SSHContext, peer: str) -> str | None:
    """Why a new connection from ``peer`` is refused, if it is.

    Beyond the caps on connections, unauthenticated ones are bounded per address (one
    address holding every pre-login slot kept everyone else out until the login
    timeout) and, as with OpenSSH's MaxStartups, refused at random once a third of
    the slots are taken: 30% of new ones then, rising to all of them when full, so
    that a flood from many addresses still lets some logins through.
    """
    limits = ctx.limits
    if sum(ctx.connections.values()) >= limits.max_connections:
        return "too many connections"
    if ctx.connections[peer] >= limits.max_connections_per_address:
        return "too many connections from this address"
    if ctx.unauthenticated_by_address[peer] >= limits.max_unauthenticated_per_address:
        return "too many connections from this address still logging in"
    full = limits.max_unauthenticated
    start = full * DROP_FROM
    if ctx.unauthenticated >= full:
        return "too many connections still logging in"
    if ctx.unauthenticated >= start:
        chance = DROP_RATE + (1 - DROP_RATE) * (ctx.unauthenticated - start) / (full - start)
        if random.random() < chance:
            return "too many connections still logging in (try again)"
    return None


class SSHServer(asyncssh.SSHServer):
    """One SSH connection's authentication and limits; ``forwarded`` is the client a
    trusted proxy's PROXY header named (its address then stands for the peer's)."""

    def __init__(self, ctx: SSHContext, forwarded: tuple[str, int] | None = None) -> None:
        self.ctx = ctx
        self.forwarded = forwarded
        self.peer = "?"
        self.client = "?"
        self.counted = False
        self.authenticated = False
        self.user = "?"
        self.since = 0.0  # when authentication completed
        self.method = "publickey"  # unless a password check succeeds
        self.sessions = 0
        self.over_user_cap = False  # logged in past the user's cap: sent away at once
        self.conn: asyncssh.SSHServerConnection | None = None
        self.entry: Entry | None = None  # in ``ctx.live`` once logged in
        self.channels: set[_Channel] = set()  # the session channels open

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = self.forwarded or conn.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "?"
        self.client = client_of(self.peer)  # (an IPv6 host counts by its /64)
        ctx = self.ctx
        refusals.flush()
        reason = _refusal(ctx, self.client)
        if reason:
            refusals.note(self.peer, reason)
            send_away(conn, asyncssh.DISC_TOO_MANY_CONNECTIONS, reason)
            return
        self.counted = True
        ctx.connections[self.client] += 1
        ctx.unauthenticated += 1
        ctx.unauthenticated_by_address[self.client] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.counted:
            return
        self.ctx.connections[self.client] -= 1
        if self.ctx.connections[self.client] <= 0:
            del self.ctx.connections[self.client]
        if not self.authenticated:
            self._authenticated_or_gone()
            return
        self.ctx.connections_by_user[self.user] -= 1
        if self.ctx.connections_by_user[self.user] <= 0:
            del self.ctx.connections_by_user[self.user]
        entry, self.entry = self.entry, None
        if self.over_user_cap or entry is None:
            return
        self.ctx.live.remove(entry)
        took = time.monotonic() - self.since
        line = "logout %s from %s over ssh after %.1f s (%s) received=%d sent=%d"
        values = [self.user, self.peer, took, entry.protocol, entry.received, entry.sent]
        if entry.ended:  # (sent away by a stop, a kill or a reload: say so)
            line, values = line + ' ended="%s"', [*values, entry.ended]
        logs.later(access, line, *values)

    async def begin_auth(self, username: str) -> bool:
        user = await self.ctx.run(self.ctx.users.get, username)  # (shares: a file's stamp)
        if user is not None and self.conn is not None and user.admits(self.peer):
            keys = await self.ctx.run(read_authorized_keys, user)
            if keys.strip():
                try:
                    self.conn.set_authorized_keys(asyncssh.import_authorized_keys(keys))
                except (ValueError, asyncssh.KeyImportError) as exc:
                    log.warning("authorized keys of %s are unusable: %s", username, exc)
        ban = self.ctx.guard.banned(self.peer, username)
        if ban is not None and self.conn is not None:
            # keys are still accepted; a password attempt ends the connection
            self.conn.send_auth_banner(f"hoody-mount: {ban.message}; keys are accepted\n")
        return True

    def busy(self) -> bool:
        """Whether a transfer is in flight: an SFTP channel with a file open or a
        request running, or an scp, command or shell channel open."""
        return any(channel.busy() for channel in self.channels)

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        """Check a password (scrypt, also for unknown users); a banned client is told why
        and disconnected, also right after the failure that bans it."""
        guard = self.ctx.guard
        ban = await guard.reserve_soon(self.peer, username)  # (parallel guesses: see reserve)
        if ban is None:
            try:
                user = await self.ctx.run(self.ctx.users.get, username)
                stored = stored_for(user, username, SHARE_PREFIX)
                refusal = user.address_refusal(self.peer) if user else None
                if refusal is not None:
                    log.warning("refused login for %s from %s: %s", username, self.peer, refusal)
                elif await self.ctx.run(verify_password, password, stored):
                    guard.succeeded(self.peer, username)
                    self.method = "password"
                    return True
                COUNTERS.add("logins", ("ssh", "password", "failed"))
                if stored == UNKNOWN_SECRET:  # (a share not in force: no guess, see auth)
                    refusals.note(self.peer, f"{username} is revoked or expired (or never was)")
                else:
                    ban = guard.failed(self.peer, username, "ssh")
            finally:
                guard.release(self.peer)
            if ban is None:
                return False
        COUNTERS.add("logins", ("ssh", "password", "banned"))
        log.warning("refused login for %s from %s: %s", username, self.peer, ban.message)
        raise asyncssh.PermissionDenied(ban.message)

    def _forwarding(self) -> bool:
        name = self.conn.get_extra_info("username") if self.conn else None
        user = self.ctx.users.get(name) if name else None
        return bool(user and permissions.may(user, "forward-port"))

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:  # fmt: skip
        """Local port forwarding (ssh -L): only for users whose config enables it."""
        return self._forwarding()

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        """Remote port forwarding (ssh -R): only for users whose config enables it."""
        return self._forwarding()

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        return _Channel(functools.partial(_serve_channel, self.ctx), None, 0, False)

    def _authenticated_or_gone(self) -> None:
        """The connection no longer counts as unauthenticated."""
        ctx = self.ctx
        ctx.unauthenticated -= 1
        ctx.unauthenticated_by_address[self.client] -= 1
        if ctx.unauthenticated_by_address[self.client] <= 0:
            del ctx.unauthenticated_by_address[self.client]

    def auth_completed(self) -> None:
        self.authenticated = True
        self.since = time.monotonic()
        COUNTERS.add("logins", ("ssh", self.method, "ok"))
        self._authenticated_or_gone()
        self.user = str(self.conn.get_extra_info("username")) if self.conn else "?"
        ctx = self.ctx
        ctx.connections_by_user[self.user] += 1
        if ctx.draining:
            self.over_user_cap = True  # (never served: no logout line)
            if self.conn is not None:
                send_away(self.conn, asyncssh.DISC_BY_APPLICATION, SHUTTING_DOWN)
            return
        if ctx.connections_by_user[self.user] > ctx.limits.max_connections_per_user:
            # (one user from several addresses took every connection: no one else got in)
            reason = f"too many connections of user {self.user}"
            refusals.note(self.peer, reason)
            self.over_user_cap = True
            if self.conn is not None:
                self.conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, reason)
            return
        conn, loop = self.conn, asyncio.get_running_loop()

        def end(reason: str) -> None:
            if conn is not None:  # (so that the client reads why, see ``send_away``)
                loop.call_soon_threadsafe(send_away, conn, asyncssh.DISC_BY_APPLICATION, reason)

        self.entry = ctx.live.add(Entry(self.user, "ssh", self.peer, end, busy=self.busy))
        logs.later(access, "login %s from %s over ssh (%s)", self.user, self.peer, self.method)


class _Channel(asyncssh.SSHServerProcess[bytes]):
    """A session channel: a process (shell, exec, scp) or the sftp subsystem.

    For sftp the channel's callbacks go straight to an ``SFTPChannel``, made as the
    session starts (before any of its data can arrive); ``_serve_channel`` checks the
    user and then lets it serve. Everything else uses asyncssh's process streams.
    """

    sftp: SFTPChannel | None = None
    entry: Entry | None = None  # the connection's, which counts the bytes
    owner: SSHServer | None = None

    def busy(self) -> bool:
        """Whether ending the channel now would cut a transfer short: an SFTP channel
        with a file open or a request running, an scp or any command; an interactive
        shell is not waited for (a person at a prompt would hold every stop)."""
        if self.sftp is not None:
            return self.sftp.busy()
        return self.command is not None or self.subsystem is not None

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == "sftp"

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.entry is not None:
            self.entry.received += len(data)
        if self.sftp is not None:
            self.sftp.data_received(data)
        else:
            super().data_received(data, datatype)

    def eof_received(self) -> bool:
        if self.sftp is not None:
            self.sftp.eof_received()
            return True  # the channel stays open until the last reply is sent
        return super().eof_received()

    def pause_writing(self) -> None:
        if self.sftp is not None:
            self.sftp.pause_writing()
        super().pause_writing()

    def resume_writing(self) -> None:
        if self.sftp is not None:
            self.sftp.resume_writing()
        super().resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner is not None:
            self.owner.channels.discard(self)
        if self.sftp is not None:
            self.sftp.connection_lost()
        super().connection_lost(exc)

    def session_started(self) -> None:
        chan = self._chan
        owner = cast(SSHServer, chan.get_connection().get_owner())
        self.owner, self.entry = owner, owner.entry
        owner.channels.add(self)
        if self.entry is not None:
            _count_writes(chan, self.entry)
        if self.subsystem == "sftp":
            ctx = owner.ctx
            self.sftp = SFTPChannel(
                chan, ctx.pool, ctx.limits.max_packet, ctx.handles, ctx.long_calls, ctx.long_share
            )
            self.sftp.entry = self.entry
        stdin = SSHReader[bytes](self, chan)
        stdout = SSHWriter[bytes](self, chan)
        stderr = SSHWriter[bytes](self, chan, EXTENDED_DATA_STDERR)
        handler = self._start_process(stdin, stdout, stderr)
        if handler is not None:
            chan.get_connection().create_task(handler, stdin.logger)


def _count_writes(chan: asyncssh.SSHServerChannel[bytes], entry: Entry) -> None:
    """Count in ``entry`` the bytes the channel sends: every writer of a channel
    (SFTP's replies, scp's and a command's output) calls its ``write``."""
    write = chan.write

    def counted(data: bytes, datatype: asyncssh.DataType = None) -> None:
        entry.sent += len(data)
        write(data, datatype)

    chan.write = counted  # type: ignore[method-assign]


def _shown(entry: Entry, kind: str, command: str) -> None:
    """Say in ``entry`` what a new channel of its connection does."""
    name = "exec" if kind == "command" or (kind == "shell" and command) else kind
    kinds = [] if entry.protocol == "ssh" else entry.protocol.split("+")
    if name not in kinds:
        entry.protocol = "+".join([*kinds, name])
    entry.doing = f"{name} {command[:80]}".strip()


def _kind(user: User, process: asyncssh.SSHServerProcess[bytes]) -> str:
    """What a channel asks for: sftp, scp, shell (a real one) or command (a built-in)."""
    command = process.command or ""
    if process.subsystem == "sftp":
        return "sftp"
    if permissions.may(user, "shell"):
        return "shell"
    if command.startswith("scp "):
        return "scp"
    return "command"


def _operation(kind: str, command: str) -> str:
    """A whole channel's name in the metrics: an scp transfer, a command, a shell."""
    if kind == "scp":
        return "scp-upload" if "-t" in command.split() else "scp-download"
    if kind == "command" and command.split()[:1] == ["sqlite-snapshot"]:
        return "snapshot"
    return "exec" if command else "shell"


def _refuse(process: asyncssh.SSHServerProcess[bytes], text: str) -> None:
    """Say why on stderr and end the channel; on a terminal a line ends with a
    carriage return too (the next line began mid-screen)."""
    end = "\r\n" if process.term_type is not None else "\n"
    process.stderr.write(f"hoody-mount: {text}{end}".encode())
    process.exit(1)


async def _serve_channel(ctx: SSHContext, process: asyncssh.SSHServerProcess[bytes]) -> None:
    """Serve one session channel: SFTP, scp, a shell user's shell, or a built-in command."""
    conn = process.channel.get_connection()
    owner = conn.get_owner()
    assert isinstance(owner, SSHServer)
    user = await ctx.run(ctx.users.get, conn.get_extra_info("username"))
    if user is None:  # (removed, or a share revoked or expired, since the login)
        return _refuse(process, "this login is no longer valid")
    kind = _kind(user, process)
    protocol = kind if kind in ("sftp", "scp") else "ssh"
    refusal = permissions.protocol_refusal(user, protocol)
    if refusal is not None:
        return _refuse(process, refusal)
    if kind == "command" and not process.command:
        log.warning("refused a shell for %s", user.name)
        return _refuse(
            process,
            f"no shell for {user.name}: use SFTP, scp or sshfs (an administrator gives one "
            f"with shell = true in [users.{user.name}], or serve --shell for the default user)",
        )
    if owner.sessions >= ctx.limits.max_sessions:
        return _refuse(process, "too many sessions on this connection")
    owner.sessions += 1
    COUNTERS.add("connections", (kind,), 1)
    if owner.entry is not None:
        _shown(owner.entry, kind, process.command or "")
    session: Session | None = None
    began, op, result = time.perf_counter(), _operation(kind, process.command or ""), "error"
    try:
        if kind == "shell":
            log.info("%s for %s: %s", "exec" if process.command else "shell", user.name,
                     process.command or "")  # fmt: skip
            status = await shell.run(process, user.os_user, ctx.sessions.host_path(user.home))
            result = "ok" if status == 0 else "error"
            return
        session = await ctx.run(ctx.sessions.open, user, protocol)
        if kind == "command":
            jobs = commands.Jobs(
                ctx.run,
                functools.partial(ctx.run_long, user.name),
                process.channel.is_closing,
                ctx.du_seconds,
            )
            status = await commands.answer(process, process.command or "", session, jobs)
            result = "ok" if status == 0 else "error"
            return
        if kind == "sftp":
            assert isinstance(process, _Channel) and process.sftp is not None
            lim = ctx.limits
            await process.sftp.serve(session, (lim.max_packet, lim.max_read, lim.max_handles))
            return  # it reports the exit status itself when the client leaves
        try:  # (split as a shell would: asyncssh's shlex keeps the \ of "\$")
            line = words.requoted(process.command or "")
        except ValueError as exc:
            return _refuse(process, f"scp: {exc} in the command line (no shell runs here)")
        adapter = SFTPAdapter(process.channel, session, ctx.pool, ctx.limits.max_read)
        adapter.client_gone = process.stdin.at_eof  # an scp upload cut short is not kept
        scp = run_scp_server(adapter, line, process.stdin, process.stdout, process.stderr)
        if scp is not None:
            await scp
            error = adapter.error
            if error is None and op == "scp-download":  # (an upload's stats are probes)
                error = adapter.stat_error
            result = "ok" if error is None else result_of_errno(error.errno)
        process.exit(0)
    except OSError as exc:
        result = result_of_errno(exc.errno)
        _refuse(process, f"{exc.filename or user.root}: {exc.strerror}")
    finally:
        owner.sessions -= 1
        COUNTERS.add("connections", (kind,), -1)
        if session is not None:
            session.close()
        if kind != "sftp":  # (SFTP counts each request instead)
            OPERATIONS.record(kind, op, result, time.perf_counter() - began)


async def start(
    ctx: SSHContext, listen: Listen, host_key: asyncssh.SSHKey, trusted: tuple[Network, ...] = ()
) -> asyncssh.SSHAcceptor | proxied.ProxiedListener:
    """Start listening; the acceptor tells the bound port. With ``trusted`` proxies the
    listener is ``proxied``'s, which reads their PROXY headers first."""
    limits = ctx.limits
    patches.install(CIPHERS)
    available = {name.decode() for name in get_kex_algs()}
    options: dict[str, Any] = dict(
        server_host_keys=[host_key],
        encoding=None,
        agent_forwarding=False,
        x11_forwarding=False,
        allow_pty=True,
        line_editor=False,  # never active without an encoding; it only wrapped every call
        login_timeout=limits.login_timeout,
        keepalive_interval=limits.keepalive_interval,
        keepalive_count_max=limits.keepalive_count_max,
        encryption_algs=CIPHERS,
        server_version="hoody-mount",  # no library name or version in the banner
        kex_algs=[name for name in KEX_ALGS if name in available],
        mac_algs=MACS,
    )
    if not trusted:
        return await asyncssh.create_server(
            lambda: SSHServer(ctx),
            listen.host,
            listen.port,
            **options,
            reuse_address=True,
            backlog=BACKLOG,  # (asyncssh's default is 100: a burst of clients met resets)
        )
    shared = await asyncssh.SSHServerConnectionOptions.construct(**options)

    def serve(sock: socket.socket, client: tuple[str, int] | None) -> Awaitable[object]:
        factory = functools.partial(SSHServer, ctx, client)
        return asyncssh.run_server(sock, options=shared, server_factory=factory)

    return await proxied.listen(listen, BACKLOG, trusted, serve, limits.login_timeout)
