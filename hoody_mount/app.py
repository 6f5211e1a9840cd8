"""Wires everything together: state, users, the root VFS, the worker pool and the servers."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TextIO

import asyncssh

from . import reload, state
from .alerts import Alerter
from .api.app import FilesAPI
from .api.shares import SharesAPI
from .api.viewers import Place
from .config import Config, ConfigError, Listen, embedded_default
from .control import ControlServer, answering
from .core import sqlite_snapshots, upload_temps
from .core.digests import DigestCache
from .core.guard import LoginGuard
from .core.live import SHUTTING_DOWN, Entry, Live
from .core.locks import FILE_NAME as LOCKS_FILE
from .core.locks import LockTable
from .core.logs import DeferredHandler, JsonFormatter, OneLineFormatter, private_log
from .core.reserved import Reserved, is_inside
from .core.sessions import Sessions
from .core.shares import PREFIX as SHARE_PREFIX
from .core.shares import Logins, ShareStore, Usage
from .core.tokens import TokenStore
from .core.users import User
from .core.vfs import VFS
from .dav import app as dav_app
from .dav.gate import DavGate
from .health import Health, versions
from .http_transport import tls as tls_files
from .http_transport.auth import Authenticator, Grant
from .http_transport.server import WebFront, WebServer
from .metrics import Metrics
from .polling import PollingSelector
from .reload import Loader
from .ssh import server as ssh_server
from .ssh.proxied import ProxiedListener
from .unfit import UnfitLibrary
from .workers import Workers

log = logging.getLogger("hoody_mount")
WORKER_THREADS = 64
SWITCH_INTERVAL = 0.0005  # seconds a thread holds the GIL while another waits for it
PASSWORD_ENV = "HOODY_MOUNT_PASSWORD"  # the default user's password, when set
EXIT_GRACE = 10.0  # seconds from the stop to the end of a process that has not ended
DRAIN_CHECK = 0.1  # seconds between looks at the transfers in flight during a stop


def log_file(log_dir: Path) -> Path:
    """The server's log file in the log folder."""
    return log_dir / "hoody-mount.log"


def setup_logging(config: Config) -> None:
    """Log to stderr, and to a file in the log folder when one is configured; both are
    written by a background thread (see ``core.logs``)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if config.log_dir is not None:
        config.log_dir.mkdir(parents=True, exist_ok=True)
        path = private_log(log_file(config.log_dir))
        handlers.append(logging.FileHandler(path, encoding="utf-8", errors="backslashreplace"))
    formatter: logging.Formatter = OneLineFormatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if config.log_format == "json":
        formatter = JsonFormatter()
    for handler in handlers:
        handler.setFormatter(formatter)
    # No line shows the process or the thread: records need not look them up
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    level = getattr(logging, config.log_level.upper())
    logging.basicConfig(level=level, handlers=[DeferredHandler(handlers)], force=True)
    logging.getLogger("asyncssh").setLevel(max(level, logging.WARNING))
    access = level if config.access_log else max(level, logging.WARNING)
    logging.getLogger("hoody_mount.access").setLevel(access)
    # every change is written, whatever the level: the audit trail is not noise
    logging.getLogger("hoody_mount.audit").setLevel(min(level, logging.INFO))


def _connect_help(
    ssh: Listen, web_url: str, user: str, password: str | None, cert: Path | None = None
) -> str:
    """Ready-to-paste commands; with a certificate no client knows yet (self-signed),
    curl trusts that file and rclone is told to skip the check."""
    host = "127.0.0.1" if ssh.host in ("0.0.0.0", "::", "") else ssh.host
    target = f"{user}@{host}"
    secret = password or "PASSWORD"
    curl_tls = f"--cacert {cert} " if cert else ""
    rclone_tls = " --no-check-certificate" if cert else ""
    lines = [
        "Connect with:",
        f"  sftp -P {ssh.port} {target}",
        f"  scp -P {ssh.port} FILE {target}:",
        f"  mkdir -p ~/hoody && sshfs -p {ssh.port} {target}:/ ~/hoody "
        "-o reconnect,ServerAliveInterval=15,ServerAliveCountMax=3",
        f"  rclone config create hoody sftp host {host} port {ssh.port} user {user} "
        f"pass $(rclone obscure -- '{secret}') && rclone lsd hoody:/",
        f"  rclone config create hoody-dav webdav url {web_url}/dav/ vendor owncloud "
        f"user {user} pass $(rclone obscure -- '{secret}') && rclone lsd{rclone_tls} hoody-dav:",
        f"  curl {curl_tls}-u {user} '{web_url}/api/v1/files/?json'",
        f"  a browser: {web_url}/api/v1/files/",
    ]
    return "\n".join(lines)


def _password_hint(config: Config) -> str:
    """Where the default user's password comes from, when the start does not show it,
    and how to set a new one (the connect lines say PASSWORD)."""
    user = config.default_user
    configured = config.users.get(user)
    if configured is not None and configured.password_hash is not None:
        where = Path(config.source).absolute()
        return (
            f"PASSWORD: the password of {user} in {where} (a new one: "
            f"hoody-mount user passwd --config {where} {user}, then kill -HUP the server)"
        )
    if os.environ.get(PASSWORD_ENV):
        return f"PASSWORD: the password of {user} in {PASSWORD_ENV}"
    stored = (config.state_dir / state.PASSWORD_NAME).absolute()
    return (
        f"PASSWORD: the password of {user} shown at the first start (lost? remove {stored} "
        f"and start again for a new one, or start with {PASSWORD_ENV}=… set)"
    )


def _web_url(listen: Listen, port: int, tls: bool) -> str:
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "::", "") else listen.host
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}"


def _give_default_password(config: Config, users: dict[str, User]) -> str | None:
    """Give the default user (in ``users``) its password from the environment or the
    state folder, made now if there is none; the new password, to show once (blocking).
    Called once the listeners are bound: a start that failed before (a port in use)
    had stored a new password it never showed, and the next start showed none."""
    default = users.get(config.default_user)
    if default is None or default.password_hash is not None:
        return None
    hashed, password = state.default_password_hash(config.state_dir, os.environ.get(PASSWORD_ENV))
    users[default.name] = replace(default, password_hash=hashed)
    return password


async def run(
    config: Config, pool: Workers, out: TextIO = sys.stdout, loader: Loader | None = None
) -> None:
    """Serve SSH and HTTP until SIGTERM or SIGINT; SIGHUP reloads the configuration
    from ``loader`` (see ``reload``)."""
    state.prepare(config.state_dir)
    if answering(config.state_dir):  # (before anything in the folder is touched)
        raise state.StateError(
            f"another hoody-mount is serving with the state folder {config.state_dir}: "
            "stop it first, or give this one its own (--state-dir DIR)"
        )
    _served_root(config)
    journal = upload_temps.Journal(config.state_dir / "uploads")
    leftovers = await asyncio.get_running_loop().run_in_executor(pool, journal.sweep)
    if leftovers:
        log.info("removed %d temp files of uploads a stopped server left", leftovers)
    upload_temps.use_journal(journal)
    sqlite_snapshots.use_folder(config.state_dir / "snapshots")
    host_key, new_key = state.host_key(config.state_dir)
    tokens: TokenStore = state.tokens(config.state_dir)
    shares: ShareStore = state.shares(config.state_dir)
    users = dict(config.users)  # (the default user gets its password once all is bound)
    for user in users.values():
        if user.name != config.default_user and not user.has_credentials():
            log.warning(
                "user %s has no password and no key: only its API tokens log it in "
                "(hoody-mount user passwd --config %s %s)", user.name, config.source, user.name,
            )  # fmt: skip
    logins = Logins(users, shares)  # (what every front looks a login's name up in)
    health = Health()
    options = config.http_options
    tls: tuple[Path, Path] | None = None
    if options.tls:
        tls = (options.cert, options.key) if options.cert and options.key else None
        tls = tls or tls_files.self_signed(config.state_dir)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hung_up: list[bool] = []  # SIGHUPs before the server serves: one reload once it does
    loop.add_signal_handler(signal.SIGHUP, lambda: hung_up.append(True))
    reserved = _reserved(config)
    vfs = VFS.open_root(str(config.root), reserved=reserved)
    lock_table = LockTable(config.state_dir / LOCKS_FILE)
    await loop.run_in_executor(pool, lock_table.open)
    sessions = Sessions(vfs, config.root, lock_table)
    await loop.run_in_executor(pool, sessions.check_jails, users)
    guard = LoginGuard()
    live = Live()
    usage = Usage()
    live.watchers.append(usage.seen)

    ctx = ssh_server.SSHContext(
        logins, sessions, pool, config.ssh_limits, guard, live=live, du_seconds=config.du_seconds
    )
    try:
        acceptor = await ssh_server.start(ctx, config.ssh, host_key, config.trusted_proxies)
    except OSError as exc:
        raise _cannot_listen("SSH", config.ssh, "--ssh, or [ssh] listen", exc) from None
    ssh_bound = Listen(config.ssh.host, acceptor.get_port())

    def token_grant(text: str) -> Grant | None:
        token = tokens.check(text)
        user = users.get(token.user) if token else None
        if token and user:
            return Grant(user, token.read_only)
        share = shares.by_secret(text)  # (a share's secret is also its bearer token)
        return Grant(share.user()) if share else None

    auth = Authenticator(logins, guard, options.allow_basic_over_http, token_grant)
    wildcard = config.http.host in ("0.0.0.0", "::", "")
    place = Place(config.public_host, ssh_bound.port, None if wildcard else config.http.host)
    api = FilesAPI(DigestCache(), du_seconds=config.du_seconds, place=place)
    dav = dav_app.build(config.state_dir, lock_table)
    front = WebFront(
        auth,
        sessions,
        dav,
        api,
        options.uploads_per_user,
        options.threads,
        health,
        Metrics(
            guard,
            config.root,
            pool.load,
            public=options.metrics_public,
            filesystems=sessions.filesystems,
        ),  # fmt: skip
        live,
        SharesAPI(
            shares,
            usage.of,
            lambda name, why: live.end_where(lambda e: e.user == name, why),
            sessions.jail_refusal,
        ),
        shares.by_secret,
        options.login_hours,
    )
    web = WebServer(front, config.http, tls, options, config.trusted_proxies)
    try:
        await loop.run_in_executor(pool, web.start)
    except OSError as exc:
        acceptor.close()
        raise _cannot_listen("HTTP", config.http, "--http, or [http] listen", exc) from None
    web_url = _web_url(config.http, web.port, tls is not None)
    bound = {
        "ssh": {"host": ssh_bound.host, "port": ssh_bound.port},
        "http": {"host": config.http.host, "port": web.port, "tls": tls is not None},
    }
    control = ControlServer(config.state_dir, live, usage.of, lock_table, bound)
    await control.start()
    password = await loop.run_in_executor(pool, _give_default_password, config, users)

    lines = [
        f"hoody-mount serving {config.root} ({config.source})",
        f"SSH/SFTP listening on {ssh_bound}",
        f"HTTP listening on {web_url} (WebDAV at {web_url}/dav/, files at {web_url}/api/v1/files/)",
        f"Host key {host_key.get_fingerprint('sha256')}{' (new)' if new_key else ''}",
    ]
    if tls is not None:
        lines.append(f"TLS certificate SHA-256 {tls_files.fingerprint(tls[0])}")
    if password:
        lines.append(f"Password of {config.default_user} (shown only this once): {password}")
    if config.default_user in users:
        cert = tls[0] if tls is not None and not options.cert else None
        lines.append(_connect_help(ssh_bound, web_url, config.default_user, password, cert))
        if not password:
            lines.append(_password_hint(config))
    lines.append("Ready. Stop with Ctrl-C or SIGTERM.")
    log.info("serving %s: SSH on %s, HTTP on %s (%s)", config.root, ssh_bound, web_url, versions())
    alerter = Alerter(config.alerts, sessions.filesystems) if config.alerts else None
    if alerter is not None:
        alerter.start()
    health.serving()  # (before "Ready.": whoever waits for that line may probe at once)
    print("\n".join(lines), file=out, flush=True)
    reloads = _Reloads(config, loader or (lambda: config), users, sessions, live, web, pool)
    reloads.forget = [dav.forget_user, tokens.revoke_user, front.logins.sessions.end_user]
    loop.add_signal_handler(signal.SIGHUP, reloads.start)
    if hung_up:  # (a SIGHUP while starting: the configuration may have changed since)
        reloads.start()

    lapsed = loop.create_task(_end_lapsed_shares(logins, live, pool, dav))
    try:
        await stop.wait()
        await _drain(config.shutdown_grace, health, ctx, acceptor, web, live)
    finally:
        lapsed.cancel()
        health.draining()
        _exit_if_stuck()  # (whatever the stop below waits for)
        control.close()
        acceptor.close()
        await acceptor.wait_closed()
        await loop.run_in_executor(None, web.stop)
        pool.shutdown(wait=False, cancel_futures=True)
        ctx.long_calls.shutdown(wait=False, cancel_futures=True)
        vfs.close()
        lock_table.close()
        reserved.close()
        if alerter is not None:
            alerter.stop()
        upload_temps.use_journal(None)
        journal.close()
        log.info("stopped")


class _Reloads:
    """SIGHUP's work: one reload at a time, off the event loop (see ``reload``)."""

    def __init__(
        self,
        config: Config,
        loader: Loader,
        users: dict[str, User],
        sessions: Sessions,
        live: Live,
        web: WebServer,
        pool: Workers,
    ) -> None:
        self.config, self._loader, self._users = config, loader, users
        self._sessions, self._live, self._web, self._pool = sessions, live, web, pool
        self._task: asyncio.Task[None] | None = None
        self._again = False
        # a removed user's locks, tokens and page logins
        self.forget: list[Callable[[str], int]] = []

    def start(self) -> None:
        """Reload now, or once more after the reload running now."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._again = False
            try:
                await loop.run_in_executor(self._pool, self._reload)
            except Exception as exc:  # noqa: BLE001 - a failed reload keeps the server as it was
                log.error("reload failed, the configuration stays as it was: %s", exc)
            if not self._again:
                return

    def _reload(self) -> None:
        """Load, check and put in place the new configuration (blocking)."""
        try:
            new = self._loader()
        except ConfigError as exc:
            log.error("reload failed, the configuration stays as it was: %s", exc)
            return
        users = dict(new.users)
        default, current = users.get(new.default_user), self._users.get(new.default_user)
        if (
            default is not None and default.password_hash is None and os.environ.get(PASSWORD_ENV)
            and current is not None and current.password_hash is not None
        ):  # fmt: skip
            # (the environment cannot change: the same password, hashed with a new salt
            # each time, would name the user as changed at every reload)
            users[default.name] = replace(default, password_hash=current.password_hash)
        password = _give_default_password(new, users)
        options = new.http_options
        if self.config.http_options.tls and options.tls and options.cert and options.key:
            try:
                self._web.use_certificate(options.cert, options.key)
            except (OSError, ValueError) as exc:
                why = getattr(exc, "strerror", None) or exc
                log.error(
                    "reload failed, the configuration stays as it was: TLS certificate %s "
                    "with key %s: %s", options.cert, options.key, why,
                )  # fmt: skip
                return
        self._sessions.check_jails(users)
        changes = reload.put_users(self._users, users)
        removed = set(changes.removed)
        ended = self._live.end_where(
            lambda entry: entry.user in removed, "your user was removed by the administrator"
        )
        if ended:
            log.warning("reload: ended %d sessions of removed users", ended)
        for name in sorted(removed):
            left = sum(forget(name) for forget in self.forget)
            if left:
                log.warning("reload: released %d locks and tokens of the removed %s", left, name)
        later = reload.needs_restart(self.config, new)
        if later:
            log.warning("reload: a restart is needed for %s", ", ".join(later))
        running = self.config.http_options  # (what only a start changes stays as it runs)
        self.config = replace(
            self.config,
            users=users,
            http_options=replace(running, cert=options.cert, key=options.key),
        )
        log.info("reloaded %s: %s", new.source, changes)
        if password:
            print(f"Password of {new.default_user} (shown only this once): {password}", flush=True)


LAPSED_CHECK = 2.0  # seconds between looks for sessions of shares expired or revoked


async def _end_lapsed_shares(logins: Logins, live: Live, pool: Workers, dav: DavGate) -> None:
    """End the sessions of shares that expired or were revoked (within ``LAPSED_CHECK``
    when the control socket could not say so), and release their WebDAV locks, which
    would keep everyone, the administrator too, from writing those files for weeks."""
    loop = asyncio.get_running_loop()

    def lapsed(entry: Entry) -> bool:
        return entry.user.startswith(SHARE_PREFIX) and logins.get(entry.user) is None

    def release_locks() -> int:
        gone = [
            name for name in dav.lock_holders()
            if name.startswith(SHARE_PREFIX) and logins.get(name) is None
        ]  # fmt: skip
        return sum(dav.forget_user(name) for name in gone)

    while True:
        if any(entry.user.startswith(SHARE_PREFIX) for entry in live.entries()):
            reason = "the share has expired or was revoked"
            ended = await loop.run_in_executor(pool, live.end_where, lapsed, reason)
            if ended:
                log.warning("ended %d sessions of shares that expired or were revoked", ended)
        released = await loop.run_in_executor(pool, release_locks)
        if released:
            log.warning("released %d WebDAV locks of shares that expired or were revoked", released)
        await asyncio.sleep(LAPSED_CHECK)


async def _drain(
    grace: float,
    health: Health,
    ctx: ssh_server.SSHContext,
    acceptor: asyncssh.SSHAcceptor | ProxiedListener,
    web: WebServer,
    live: Live,
) -> None:
    """The first part of a stop: no new SSH connections or logins, 503 for new HTTP
    requests (health probes say ``draining``), the sessions that have no transfer in
    flight ended (SSH clients are told why), and the transfers in flight left to
    finish for up to ``grace`` seconds. A second SIGTERM or SIGINT, or the grace's
    end, then cuts what is left (an HTTP request cut before its answer is answered
    503, never a 4xx that blames the client)."""
    loop = asyncio.get_running_loop()
    again = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, again.set)
    health.draining()
    ctx.draining = True
    acceptor.close()
    await loop.run_in_executor(None, web.drain)
    busy = sum(entry.in_flight() for entry in live.entries())
    log.info("stopping: %d sessions with transfers in flight get up to %.0f s", busy, grace)
    deadline = loop.time() + grace
    ended: set[int] = set()
    while not again.is_set():
        for entry in live.entries():
            if entry.id not in ended and not entry.in_flight():
                ended.add(entry.id)
                entry.ended = SHUTTING_DOWN
                entry.end(SHUTTING_DOWN)
        left = deadline - loop.time()
        if left <= 0 or not live.any_in_flight():
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(again.wait(), min(DRAIN_CHECK, left))
    cut = live.end_where(lambda entry: entry.id not in ended, SHUTTING_DOWN)
    if cut:
        why = "a second signal" if again.is_set() else f"the end of the {grace:.0f} s grace"
        log.warning("stopping: %d sessions cut short by %s", cut, why)
    await asyncio.sleep(DRAIN_CHECK)  # (the disconnect messages and 503s leave)


def _cannot_listen(what: str, where: Listen, set_by: str, exc: OSError) -> state.StateError:
    """The one line for a listener that cannot be opened (a port in use, say), with
    its fix; ``set_by``: the flag, then the configuration key."""
    number = exc.errno
    if not number:  # (cheroot keeps only the text: "... [Errno 98] Address already in use)")
        found = re.findall(r"\[Errno (\d+)\]", str(exc))
        number = int(found[-1]) if found else None
    why = os.strerror(number) if number else str(exc)
    flag = set_by.split(",")[0]
    fixes = {
        errno.EADDRINUSE: f"another program listens there: give a free port ({flag} "
        f'{where.host}:0 takes any; make serve ARGS="{flag} {where.host}:0")',
        errno.EADDRNOTAVAIL: f"this host has no such address ({flag} 127.0.0.1:PORT)",
        errno.EACCES: f"a port below 1024 needs root or CAP_NET_BIND_SERVICE ({flag})",
    }
    fix = fixes.get(number or 0, f"give another address ({flag} HOST:PORT)")
    return state.StateError(f"cannot listen for {what} on {where} ({set_by}): {why}; {fix}")


def _served_root(config: Config) -> None:
    """The served folder must exist (only the embedded default's ``./data`` is made: a
    mistyped ``--root`` must not serve a new empty folder)."""
    if config.source == "embedded default" and config.root == embedded_default().root:
        config.root.mkdir(parents=True, exist_ok=True)
    if not config.root.is_dir():
        what = "no such folder" if not config.root.exists() else "not a folder"
        raise state.StateError(
            f"root {config.root}: {what}: serve a folder that exists (--root DIR, or root "
            "in the configuration)"
        )


def _reserved(config: Config) -> Reserved:
    """The server's own files, unreachable through every front (see ``core.reserved``);
    says once when they lie inside the served root."""
    files = [log_file(config.log_dir)] if config.log_dir is not None else []
    if is_inside(config.root, config.state_dir):
        raise state.StateError(
            f"{config.root}: the served root lies inside the state folder "
            f"{config.state_dir}, whose files no user may reach; serve another folder"
        )
    notices = (
        (config.state_dir, "no user can reach it over any protocol"),
        (config.log_dir, "users may read the server's log file there but never change it"),
    )
    for place, rule in notices:
        if place is not None and is_inside(place, config.root):
            log.warning(
                "the %s folder %s lies inside the served root %s: %s",
                "state" if place == config.state_dir else "log",
                place.resolve(),
                config.root.resolve(),
                rule,
            )
    return Reserved([config.state_dir], files)


def serve(config: Config, loader: Loader | None = None) -> None:
    """Run the server in a fresh event loop (``loader``: the configuration again, for
    a reload)."""
    # The event loop (all of SSH) shares the GIL with up to 32 HTTP worker threads; a
    # thread waiting for the GIL waits a switch interval before it may take it. With
    # CPython's 5 ms, SFTP under HTTP load ran 6 operations a second (330 alone); at
    # 0.5 ms, 35, with HTTP at 161 operations a second instead of 185 (docs/design.md).
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        setup_logging(config)
    except OSError as exc:
        why = "its log file is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        print(
            f"hoody-mount: log_dir {config.log_dir}: cannot write the log there: {why} "
            "(give --log-dir, or log_dir in the configuration, a folder the server may write)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    pool = Workers(WORKER_THREADS, "hoody-io")
    selector = PollingSelector(config.ssh_limits.busy_poll_us / 1e6, pool.quiet)
    try:
        with asyncio.Runner(loop_factory=lambda: asyncio.SelectorEventLoop(selector)) as runner:
            runner.run(run(config, pool, loader=loader))
    except state.StateError as exc:
        print(f"hoody-mount: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except UnfitLibrary as exc:
        print(f"hoody-mount: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as exc:
        print(f"hoody-mount: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # (idempotent) also when start failed
        _exit_if_stuck()


_exit_timer_started = False


def _exit_if_stuck() -> None:
    """Make sure the process ends soon: a thread still busy after the stop (a request
    hashing a huge file, a library's worker) would otherwise keep it alive, as Python
    waits for such threads at exit, and so would cheroot's stop, which waits for its
    workers without end. A daemon timer ends the process after EXIT_GRACE (once)."""
    global _exit_timer_started
    if _exit_timer_started:
        return
    _exit_timer_started = True

    def force() -> None:
        busy = [t.name for t in threading.enumerate() if not t.daemon and t.is_alive()]
        log.warning("still busy %.0f s after the stop (%s): exiting", EXIT_GRACE, ", ".join(busy))
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(EXIT_GRACE, force)
    timer.daemon = True
    timer.start()
