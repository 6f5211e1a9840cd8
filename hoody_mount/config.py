"""Configuration: a TOML file (or the embedded default) turned into frozen dataclasses.

Every key is checked; a mistake becomes one ``ConfigError`` line that names the file and
the key, which the command line prints before exiting with status 2. The file holds the
users and their password hashes, so it must be trusted (``core.trusted_files``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .core import paths, trusted_files
from .core.reserved import is_inside
from .core.shares import PREFIX as SHARE_PREFIX
from .core.users import ACCESS_MODES, PROTOCOLS, User, is_password_hash
from .mount_commands import typed_host
from .proxy_protocol import Network, networks

USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}")


class ConfigError(Exception):
    """A configuration mistake, worded for the person who made it."""


@dataclass(frozen=True)
class Listen:
    """A host and port to listen on (port 0: any free port)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


MAX_BUSY_POLL_US = 10_000


@dataclass(frozen=True)
class SSHLimits:
    """Bounds of the SSH server, each with a sane default."""

    max_packet: int = 256 * 1024
    max_read: int = 255 * 1024
    max_handles: int = 512
    max_sessions: int = 10
    max_connections: int = 256
    max_connections_per_address: int = 64
    max_connections_per_user: int = 64  # logged in, from any number of addresses
    max_unauthenticated: int = 100  # connections still logging in (as OpenSSH's MaxStartups)
    # below a third of max_unauthenticated: one address alone never starts the random
    # refusals; above what one busy client opens at once (rclone: 12 by default)
    max_unauthenticated_per_address: int = 24
    login_timeout: float = 30.0
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 4
    busy_poll_us: int = 200  # the event loop polls this long before it sleeps (0: never)


@dataclass(frozen=True)
class HTTPOptions:
    """The web listener: TLS, when Basic credentials may travel over plain HTTP, and
    its bounds (see http_transport/intake.py)."""

    tls: bool = False
    cert: Path | None = None
    key: Path | None = None
    allow_basic_over_http: bool = False
    threads: int = 32
    max_connections: int = 4096
    max_connections_per_address: int = 64
    uploads_per_user: int = 8  # uploads (PUT, POST) at once (a quarter of the threads)
    head_timeout: float = 10.0  # seconds for a whole request head, from its first byte
    body_timeout: float = 30.0  # a body must bring 16 KiB in each such period
    metrics_public: bool = False  # GET /metrics without credentials
    login_hours: float = 12.0  # how long a login of the web page lasts (its cookie)


@dataclass(frozen=True)
class Alerts:
    """``[alerts]``: tell someone when a watched filesystem crosses ``used_percent``,
    by a POST to ``webhook`` and/or running ``command`` with the event on stdin; the
    filesystems are looked at every ``interval`` seconds."""

    used_percent: float
    webhook: str | None = None
    command: tuple[str, ...] = ()
    interval: float = 60.0


@dataclass(frozen=True)
class Config:
    """Everything the server needs to start."""

    root: Path
    state_dir: Path
    log_dir: Path | None
    ssh: Listen
    http: Listen
    users: Mapping[str, User]
    default_user: str = "root"
    ssh_limits: SSHLimits = field(default_factory=SSHLimits)
    http_options: HTTPOptions = field(default_factory=HTTPOptions)
    source: str = "embedded default"
    access_log: bool = True  # downloads and logins in the log (changes always are)
    log_format: str = "text"  # "text": one line per event; "json": one object per line
    log_level: str = "info"  # the least level logged: debug, info, warning or error
    shutdown_grace: float = 30.0  # seconds a stop lets transfers in flight finish
    # peers whose connections start with a PROXY header naming the client (both listeners)
    trusted_proxies: tuple[Network, ...] = ()
    du_seconds: float = 10.0  # a du's time budget (storage API, the du built-in)
    alerts: Alerts | None = None
    public_host: str | None = None  # the host name users type (the page's Mount panel)
    # "state_dir", "log_dir": those the file sets inside its root, which --root moves
    in_root: frozenset[str] = frozenset()


def public_host_of(text: str, where: str) -> str:
    """A host name or an IP address clients type, without scheme, port or brackets."""
    host = typed_host(text)
    if host is None:
        raise ConfigError(
            f"{where}: {text!r} is not a host name or an IP address "
            "(no scheme, no port: e.g. files.example.com)"
        )
    return host


MAX_LOGIN_HOURS = 720  # a month: a stolen cookie must not last for ever
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _one_of(value: str, allowed: tuple[str, ...], where: str) -> str:
    """``value`` if it is one of ``allowed``, else ConfigError naming ``where``."""
    if value not in allowed:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
    return value


def parse_listen(text: str, where: str) -> Listen:
    """Parse ``HOST:PORT`` (``[v6]:PORT`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{where}: expected HOST:PORT (port 0-65535), got {text!r}")
    return Listen(host, int(port))


def embedded_default(base: Path | None = None) -> Config:
    """The configuration used when no file is given: a local data folder on loopback."""
    base = base or Path.cwd()
    home = Path(os.path.expanduser("~"))
    root = User(
        name="root",
        authorized_keys_files=(str(home / ".ssh" / "authorized_keys"),),
    )
    return Config(
        root=base / "data",
        state_dir=base / ".hoody-mount",
        log_dir=None,
        ssh=Listen("127.0.0.1", 2222),
        http=Listen("127.0.0.1", 8080),
        users={"root": root},
    )


class _Reader:
    """Reads typed keys out of one TOML table, naming the file and key in every error."""

    def __init__(self, source: str, prefix: str, table: Mapping[str, Any]) -> None:
        self.source, self.prefix, self.table = source, prefix, table
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.source}: {self.prefix}{key}"

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise ConfigError(f"{self.where(key)}: expected a number, got {value!r}")
        if not isinstance(value, kind):
            name = kind.__name__ if isinstance(kind, type) else "number"
            raise ConfigError(f"{self.where(key)}: expected {name}, got {value!r}")
        return value

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(key, (str, list), default)
        if isinstance(value, str):
            return (value,)
        if not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{self.where(key)}: expected a list of strings")
        return tuple(value)

    def virtual(self, key: str, default: str) -> str:
        value = self.get(key, str, default)
        if not value.startswith("/"):
            raise ConfigError(f"{self.where(key)}: expected an absolute path, got {value!r}")
        try:
            return paths.normalize(value)
        except OSError as exc:
            raise ConfigError(f"{self.where(key)}: {exc.strerror}") from None

    def positive(self, key: str, default: int) -> int:
        value = self.get(key, int, default)
        if value <= 0:
            raise ConfigError(f"{self.where(key)}: must be a positive whole number, got {value}")
        return int(value)

    def seconds(self, key: str, default: float) -> float:
        value = float(self.get(key, (int, float), default))
        if not 0 < value <= 3600:
            raise ConfigError(f"{self.where(key)}: must be seconds above 0 (at most 3600)")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise ConfigError(f"{self.where(unknown[0])}: unknown key")


def check_user_name(source: str, name: str) -> None:
    """ConfigError unless ``name`` can be a user's name: one SSH and HTTP Basic (no
    ':') both carry as it is, that no command line takes for a flag, not a share's."""
    if not USER_NAME.fullmatch(name):
        raise ConfigError(
            f"{source}: users.{name}: a user name is 1-64 letters, digits, '.', '_', '-' or "
            "'@', and starts with a letter, a digit or '_'"
        )
    if name.startswith(SHARE_PREFIX):
        raise ConfigError(f"{source}: users.{name}: names starting {SHARE_PREFIX} are for shares")


def _user(source: str, name: str, table: Any) -> User:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: users.{name}: expected a table")
    check_user_name(source, name)
    r = _Reader(source, f"users.{name}.", table)
    password_hash = r.get("password_hash", str, None)
    if password_hash is not None and not is_password_hash(password_hash):
        raise ConfigError(f"{r.where('password_hash')}: not a hash made by 'hoody-mount user'")
    access = r.get("access", str, "rw")
    if access not in ACCESS_MODES:
        raise ConfigError(f"{r.where('access')}: must be 'ro' or 'rw', got {access!r}")
    protocols = frozenset(r.strings("protocols", tuple(sorted(PROTOCOLS))))
    if protocols - PROTOCOLS:
        bad = sorted(protocols - PROTOCOLS)[0]
        raise ConfigError(
            f"{r.where('protocols')}: unknown protocol {bad!r} "
            f"(known: {', '.join(sorted(PROTOCOLS))})"
        )
    user = User(
        name=name,
        password_hash=password_hash,
        authorized_keys=r.strings("authorized_keys", ()),
        authorized_keys_files=r.strings("authorized_keys_file", ()),
        root=r.virtual("root", "/"),
        home=r.virtual("home", "/"),
        access=access,
        protocols=protocols,
        shell=r.get("shell", bool, False),
        os_user=r.get("os_user", str, None),
        port_forwarding=r.get("port_forwarding", bool, False),
    )
    r.finish()
    if user.port_forwarding and not user.allows("ssh"):
        raise ConfigError(
            f"{r.where('port_forwarding')}: port forwarding is part of the ssh protocol: "
            'add "ssh" to protocols, or drop port_forwarding'
        )
    if user.shell and user.root != "/":
        raise ConfigError(f"{r.where('shell')}: a shell user cannot be jailed (root must be '/')")
    return user


def _alerts(a: _Reader) -> Alerts | None:
    """The ``[alerts]`` table, None when there is none."""
    if not a.table:
        return None
    if "used_percent" not in a.table:
        raise ConfigError(
            f"{a.where('used_percent')}: missing (the threshold: a percent above 0, at most 100)"
        )
    threshold = float(a.get("used_percent", (int, float), 0))
    if not 0 < threshold <= 100:
        raise ConfigError(f"{a.where('used_percent')}: must be above 0 and at most 100")
    webhook = a.get("webhook", str, None)
    if webhook is not None and not re.match(r"https?://[^/\s]+", webhook):
        raise ConfigError(f"{a.where('webhook')}: expected an http:// or https:// URL")
    command = a.strings("command", ())
    if "command" in a.table and (isinstance(a.table["command"], str) or not command):
        raise ConfigError(f"{a.where('command')}: expected a program and its arguments as a list")
    if webhook is None and not command:
        raise ConfigError(f"{a.where('webhook')}: give a webhook, a command or both")
    interval = a.seconds("interval", Alerts.interval)
    a.finish()
    return Alerts(threshold, webhook, command, interval)


def load(path: Path) -> Config:
    """Read and check a configuration file."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            trusted_files.check_fd(handle.fileno(), path)
            data = tomllib.load(handle)
    except trusted_files.UntrustedFile as exc:
        raise ConfigError(str(exc)) from None
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    base = path.absolute().parent.resolve()  # (the same folder from any working folder)
    top = _Reader(source, "", data)
    root = base / top.get("root", str, "/")
    state_dir = base / top.get("state_dir", str, ".hoody-mount")
    log_dir_text = top.get("log_dir", str, None)
    public_host_text = top.get("public_host", str, None)
    public_host = (
        public_host_of(public_host_text, top.where("public_host")) if public_host_text else None
    )
    default_user = top.get("default_user", str, "root")
    access_log = top.get("access_log", bool, True)
    log_format = _one_of(top.get("log_format", str, "text"), LOG_FORMATS, top.where("log_format"))
    log_level = _one_of(
        top.get("log_level", str, "info").lower(), LOG_LEVELS, top.where("log_level")
    )
    shutdown_grace = float(top.get("shutdown_grace", (int, float), Config.shutdown_grace))
    if not 0 <= shutdown_grace <= 3600:
        raise ConfigError(f"{top.where('shutdown_grace')}: must be 0 to 3600 seconds")
    try:
        trusted_proxies = networks(top.strings("trusted_proxies", ()))
    except ValueError as exc:
        raise ConfigError(f"{top.where('trusted_proxies')}: {exc} (expected CIDRs)") from None

    ssh_table = top.get("ssh", dict, {})
    s = _Reader(source, "ssh.", ssh_table)
    ssh_listen = parse_listen(s.get("listen", str, "127.0.0.1:2222"), s.where("listen"))
    d = SSHLimits()
    limits = SSHLimits(
        max_packet=s.positive("max_packet", d.max_packet),
        max_read=s.positive("max_read", d.max_read),
        max_handles=s.positive("max_handles", d.max_handles),
        max_sessions=s.positive("max_sessions", d.max_sessions),
        max_connections=s.positive("max_connections", d.max_connections),
        max_connections_per_address=s.positive(
            "max_connections_per_address", d.max_connections_per_address
        ),
        max_connections_per_user=s.positive("max_connections_per_user", d.max_connections_per_user),
        max_unauthenticated=s.positive("max_unauthenticated", d.max_unauthenticated),
        max_unauthenticated_per_address=s.positive(
            "max_unauthenticated_per_address", d.max_unauthenticated_per_address
        ),
        login_timeout=float(s.get("login_timeout", (int, float), d.login_timeout)),
        keepalive_interval=float(s.get("keepalive_interval", (int, float), d.keepalive_interval)),
        keepalive_count_max=s.positive("keepalive_count_max", d.keepalive_count_max),
        busy_poll_us=s.get("busy_poll_us", int, d.busy_poll_us),
    )
    if not 0 <= limits.busy_poll_us <= MAX_BUSY_POLL_US:
        raise ConfigError(
            f"{s.where('busy_poll_us')}: must be 0 to {MAX_BUSY_POLL_US} microseconds"
        )
    if limits.max_read + 1024 > limits.max_packet:
        raise ConfigError(f"{s.where('max_read')}: must be at least 1 KiB below ssh.max_packet")
    s.finish()

    http_table = top.get("http", dict, {})
    h = _Reader(source, "http.", http_table)
    http_listen = parse_listen(h.get("listen", str, "127.0.0.1:8080"), h.where("listen"))
    cert, key = h.get("cert", str, None), h.get("key", str, None)
    if bool(cert) != bool(key):
        raise ConfigError(f"{h.where('cert')}: cert and key go together")
    threads = h.positive("threads", HTTPOptions.threads)
    http_options = HTTPOptions(
        tls=h.get("tls", bool, False) or bool(cert),
        cert=base / cert if cert else None,
        key=base / key if key else None,
        allow_basic_over_http=h.get("allow_basic_over_http", bool, False),
        threads=threads,
        max_connections=h.positive("max_connections", HTTPOptions.max_connections),
        max_connections_per_address=h.positive(
            "max_connections_per_address", HTTPOptions.max_connections_per_address
        ),
        uploads_per_user=h.positive("uploads_per_user", max(4, threads // 4)),
        head_timeout=h.seconds("head_timeout", HTTPOptions.head_timeout),
        body_timeout=h.seconds("body_timeout", HTTPOptions.body_timeout),
        metrics_public=h.get("metrics_public", bool, False),
        login_hours=float(h.get("login_hours", (int, float), HTTPOptions.login_hours)),
    )
    if not 0 < http_options.login_hours <= MAX_LOGIN_HOURS:
        raise ConfigError(f"{h.where('login_hours')}: must be hours above 0 (at most 720)")
    h.finish()

    st = _Reader(source, "storage.", top.get("storage", dict, {}))
    du_seconds = st.seconds("du_seconds", Config.du_seconds)
    st.finish()
    alerts = _alerts(_Reader(source, "alerts.", top.get("alerts", dict, {})))

    users_table = top.get("users", dict, {})
    users = {name: _user(source, name, table) for name, table in users_table.items()}
    top.finish()
    if not users:
        raise ConfigError(f"{source}: users: at least one user is needed")
    if default_user not in users:
        raise ConfigError(
            f"{source}: default_user: no user {default_user!r} in [users]: add that user, "
            f"or set default_user to one of {', '.join(sorted(users))}"
        )
    check_jails(source, root, state_dir, users)
    log_dir = base / log_dir_text if log_dir_text else None
    placed = {"state_dir": state_dir if "state_dir" in data else None, "log_dir": log_dir}
    in_root = frozenset(
        key for key, place in placed.items() if place is not None and place.is_relative_to(root)
    )
    return Config(
        root=root,
        state_dir=state_dir,
        log_dir=log_dir,
        ssh=ssh_listen,
        http=http_listen,
        users=users,
        default_user=default_user,
        ssh_limits=limits,
        http_options=http_options,
        source=source,
        access_log=access_log,
        log_format=log_format,
        log_level=log_level,
        shutdown_grace=shutdown_grace,
        trusted_proxies=trusted_proxies,
        du_seconds=du_seconds,
        alerts=alerts,
        public_host=public_host,
        in_root=in_root,
    )


def _moved(place: Path, root: Path, new_root: Path) -> Path:
    """``place``, a folder inside ``root``, at the same place inside ``new_root``."""
    return new_root / place.relative_to(root)


def with_overrides(
    config: Config,
    *,
    root: str | None = None,
    state_dir: str | None = None,
    log_dir: str | None = None,
    ssh: str | None = None,
    http: str | None = None,
    authorized_keys: str | None = None,
    tls: bool = False,
    shell: bool = False,
    log_format: str | None = None,
    log_level: str | None = None,
) -> Config:
    """Apply command-line flags over a configuration. ``root`` also moves the state
    and log folders the file sets inside its own root (the container profile's
    /hoody/storage/files and /hoody/storage/logs) unless they are given too."""
    changes: dict[str, Any] = {}
    if log_format:
        changes["log_format"] = _one_of(log_format, LOG_FORMATS, "--log-format")
    if log_level:
        changes["log_level"] = _one_of(log_level.lower(), LOG_LEVELS, "--log-level")
    if root:
        new_root = changes["root"] = Path(root).absolute()
        if "state_dir" in config.in_root:
            changes["state_dir"] = _moved(config.state_dir, config.root, new_root)
        if "log_dir" in config.in_root and config.log_dir is not None:
            changes["log_dir"] = _moved(config.log_dir, config.root, new_root)
    if state_dir:
        changes["state_dir"] = Path(state_dir).absolute()
    if log_dir:
        changes["log_dir"] = Path(log_dir).absolute()
    if ssh:
        changes["ssh"] = parse_listen(ssh, "--ssh")
    if http:
        changes["http"] = parse_listen(http, "--http")
    if tls:
        changes["http_options"] = replace(config.http_options, tls=True)
    if shell or authorized_keys:
        name = config.default_user
        flag = "--shell" if shell else "--authorized-keys"
        default = config.users.get(name)
        if default is None:
            raise ConfigError(f"{flag}: the default user {name!r} is not configured")
        if shell and default.root != "/":
            raise ConfigError(
                f"--shell: {name} is jailed to {default.root}; a shell user cannot be"
            )
        if shell:
            default = replace(default, shell=True)
        if authorized_keys:
            default = replace(default, authorized_keys_files=(authorized_keys,))
        changes["users"] = {**config.users, name: default}
    if not changes:
        return config
    changed = replace(config, **changes)
    check_jails("--root/--state-dir", changed.root, changed.state_dir, changed.users)
    return changed


def check_jails(source: str, root: Path, state_dir: Path, users: Mapping[str, User]) -> None:
    """A user jailed in the state folder could never log in (its files are never served):
    say so now, naming the key. (The rule itself goes by identity, in ``core.reserved``.)"""
    for user in users.values():
        jail = root / user.root.lstrip("/")
        if is_inside(jail, state_dir):
            raise ConfigError(
                f"{source}: users.{user.name}.root: {user.root} lies inside the state folder "
                f"{state_dir}, which is never served"
            )
