"""Command line: ``hoody-mount serve``, ``hoody-mount user add|list|remove|passwd``,
``hoody-mount token create|list|revoke``, ``hoody-mount share create|list|revoke``,
``hoody-mount connections [kill ID]``, ``hoody-mount locks [release ID]`` and
``hoody-mount health``."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomlkit

from . import config as config_module
from . import control, health_probe, share_command, users_file
from .config import ConfigError
from .core import paths, trusted_files
from .core.logs import escape
from .core.reserved import is_inside
from .core.sessions import folder_refusal
from .core.tokens import TokenFileError, TokenStore, parse_duration
from .core.users import PROTOCOLS, hash_password
from .health import versions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hoody-mount",
        description="Serve a container's filesystem over SFTP, scp, WebDAV and an HTTP file API.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # (--version on one line)
    )
    parser.add_argument(
        "--version", action="version", version=versions(), help="print the versions and exit"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--config", type=Path, help="TOML file (default: the embedded default)")
    serve.add_argument("--root", help="folder to serve")
    serve.add_argument("--state-dir", help="folder for host keys and other state")
    serve.add_argument("--log-dir", help="folder for the log file (default: stderr only)")
    serve.add_argument("--ssh", metavar="HOST:PORT", help="SSH listen address (port 0: any)")
    serve.add_argument("--http", metavar="HOST:PORT", help="HTTP listen address (port 0: any)")
    serve.add_argument("--authorized-keys", metavar="FILE", help="keys of the default user")
    serve.add_argument("--tls", action="store_true", help="serve HTTPS (self-signed if no cert)")
    serve.add_argument("--log-format", help="text (default) or json: one object per line")
    serve.add_argument("--log-level", help="debug, info (default), warning or error")
    serve.add_argument(
        "--shell", action="store_true", help="give the default user a login shell and exec"
    )

    user = commands.add_parser("user", help="edit the users of a configuration file")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    for name, text in (
        ("add", "add a user"),
        ("list", "list the users"),
        ("remove", "remove a user"),
        ("passwd", "set a user's password"),
    ):
        sub = user_commands.add_parser(name, help=text)
        sub.add_argument("--config", type=Path, required=True, help="the TOML file to edit")
        if name != "list":
            sub.add_argument("name")
        if name in ("add", "passwd"):
            sub.add_argument(
                "--password-stdin", action="store_true", help="read the password from stdin"
            )
        if name == "add":
            sub.add_argument("--root", default="/", help="jail folder (virtual path)")
            sub.add_argument("--home", help="start folder (virtual path, default: /)")
            sub.add_argument("--ro", action="store_true", help="read-only access")
            sub.add_argument("--key", action="append", default=[], help="an authorized key")
            sub.add_argument("--keys-file", action="append", default=[], help="authorized_keys")
            sub.add_argument(
                "--protocols", help=f"comma-separated, from {','.join(sorted(PROTOCOLS))}"
            )
    token = commands.add_parser("token", help="API tokens (Bearer) of the users")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    for name, text in (("create", "make a token"), ("list", "list tokens"), ("revoke", "revoke")):
        sub = token_commands.add_parser(name, help=text)
        sub.add_argument("--config", type=Path, help="TOML file (default: the embedded default)")
        sub.add_argument("--root", help="the served folder, if serve was given --root")
        sub.add_argument("--state-dir", help="state folder holding tokens.json")
        if name == "create":
            sub.add_argument("user")
            sub.add_argument("--ro", action="store_true", help="read-only token")
            sub.add_argument("--expires", metavar="DURATION", help="e.g. 30m, 12h, 90d, 2w")
        if name == "revoke":
            sub.add_argument("id", help="the token id (second part of hm_<id>_…)")
    share_command.add_parser(commands)
    probe = commands.add_parser(
        "health", help="ask the running server's /healthz (exit 0 while it serves)"
    )
    probe.add_argument("--config", type=Path, help="TOML file (default: the embedded default)")
    probe.add_argument("--http", metavar="HOST:PORT", help="the HTTP listener, if not the config's")
    probe.add_argument("--tls", action="store_true", help="the listener serves HTTPS (as serve's)")
    live = commands.add_parser(
        "connections", help="list the running server's sessions, or end one (kill ID)"
    )
    _connections_options(live, None)
    live_commands = live.add_subparsers(dest="connections_command")
    listing = live_commands.add_parser("list", help="list the open sessions (the default)")
    kill = live_commands.add_parser("kill", help="end a session")
    kill.add_argument("id", type=int, help="the session's id, from the list")
    for sub in (listing, kill):  # (the options go before or after the subcommand)
        _connections_options(sub, argparse.SUPPRESS)
    held = commands.add_parser(
        "locks", help="list the running server's locks (every protocol's), or release one"
    )
    _connections_options(held, None)
    lock_commands = held.add_subparsers(dest="locks_command")
    lock_list = lock_commands.add_parser("list", help="list the locks (the default)")
    release = lock_commands.add_parser("release", help="release a lock")
    release.add_argument("id", help="the lock's id, from the list")
    for sub in (lock_list, release):
        _connections_options(sub, argparse.SUPPRESS)
    return parser


def _connections_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """``connections``' options; a subcommand's leave the parent's value alone
    unless given (``default`` SUPPRESS)."""
    parser.add_argument(
        "--config", type=Path, default=default, help="TOML file (default: the embedded default)"
    )
    parser.add_argument(
        "--root", default=default, help="the served folder, if serve was given --root"
    )
    parser.add_argument("--state-dir", default=default, help="the running server's state folder")
    parser.add_argument(
        "--json", action="store_true", default=default or False, help="print the rows as JSON"
    )


def _ask(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any]:
    """The running server's answer over its control socket (its state folder found as
    ``serve`` finds it)."""
    cfg = _config_of(args.config, root=args.root, state_dir=args.state_dir)
    try:
        return control.ask(cfg.state_dir, request)
    except control.ControlError as exc:
        raise ConfigError(str(exc)) from None


def _table(
    args: argparse.Namespace,
    header: str,
    rows: list[dict[str, Any]],
    fields: Callable[[dict[str, Any]], tuple[object, ...]],
    none: str,
) -> None:
    """Print ``rows`` as JSON (``--json``) or as a table of ``fields(row)``, each field
    escaped as in the log: a name cannot forge a row or reach the terminal with control
    characters, and one that is not UTF-8 prints."""
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(header)
    for row in rows:
        print("\t".join(escape(str(field)) for field in fields(row)))
    if not rows:
        print(none, file=sys.stderr)


def _when(seconds: object) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(str(seconds))))


def _connections_command(args: argparse.Namespace) -> None:
    """``connections [list]`` and ``connections kill ID``, over the control socket."""
    if args.connections_command == "kill":
        _ask(args, {"command": "kill", "id": args.id})
        print(f"ended session {args.id}")
        return
    _table(
        args,
        "ID\tUSER\tPROTOCOL\tADDRESS\tSTARTED\tRECEIVED\tSENT\tDOING",
        _ask(args, {"command": "list"})["sessions"],
        lambda row: (row["id"], row["user"], row["protocol"], row["address"],
                     _when(row["started"]), row["received"], row["sent"], row["doing"] or "-"),
        "(no open sessions)",
    )  # fmt: skip


def _locks_command(args: argparse.Namespace) -> None:
    """``locks [list]`` and ``locks release ID``, over the control socket."""
    if args.locks_command == "release":
        _ask(args, {"command": "release-lock", "id": args.id})
        print(f"released lock {args.id}")
        return
    _table(
        args,
        "ID\tPATH\tUSER\tOWNER\tDEPTH\tSCOPE\tEXPIRES",
        _ask(args, {"command": "locks"})["locks"],
        lambda row: (row["id"], row["path"], row["user"], row["owner"] or "-", row["depth"],
                     row["scope"], _when(row["expires"])),
        "(no locks)",
    )  # fmt: skip


def _token_command(args: argparse.Namespace) -> None:
    """``token create|list|revoke``; an untrusted state folder or tokens file is refused."""
    try:
        _tokens(args)
    except (TokenFileError, trusted_files.UntrustedFile) as exc:
        raise ConfigError(str(exc)) from None


def _tokens(args: argparse.Namespace) -> None:
    cfg = _config_of(args.config, root=args.root, state_dir=args.state_dir)
    store = TokenStore(cfg.state_dir)
    if cfg.state_dir.is_dir():
        trusted_files.check_folder(cfg.state_dir)
    if args.token_command == "create":
        if args.user not in cfg.users:
            raise ConfigError(f"{cfg.source}: users.{args.user}: no such user")
        try:
            expires = parse_duration(args.expires) if args.expires else None
        except ValueError as exc:
            raise ConfigError(f"--expires: {exc}") from None
        cfg.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        text, record = store.create(args.user, args.ro, expires)
        print(text)
        print(
            f"token {record.id} for {record.user}"
            f"{' (read-only)' if record.read_only else ''}: shown only this once; kept in "
            f"{store.path} (the server must use the state folder {cfg.state_dir})",
            file=sys.stderr,
        )
    elif args.token_command == "list":
        for t in store.list():
            state = "expired" if t.expired() else "valid"
            until = time.strftime("%Y-%m-%d %H:%M", time.localtime(t.expires)) if t.expires else "-"
            access = "ro" if t.read_only else "rw"
            print(f"{t.id}\t{t.user}\t{access}\texpires={until}\t{state}")
    elif not store.revoke(args.id):
        raise ConfigError(f"token {args.id}: no such token")
    else:
        print(f"revoked {args.id}")


def _password(args: argparse.Namespace, required: bool) -> str | None:
    if args.password_stdin:
        text = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        text = getpass.getpass("Password (empty: keys only): ")
    else:
        text = ""
    if not text and required:
        raise ConfigError("passwd: an empty password is not accepted")
    return text or None


def _check_jail(path: Path, jail: str) -> None:
    """ConfigError when ``jail`` cannot be a user's jail in the configuration at
    ``path`` (its logins would all fail); a configuration that does not load is left
    for the edit to report."""
    try:
        cfg = config_module.load(path)
    except ConfigError:
        return
    if is_inside(cfg.root / jail.lstrip("/"), cfg.state_dir):
        return  # (the edit's check says why, in the words the start uses)
    why = folder_refusal(cfg.root, cfg.state_dir, paths.normalize(jail))
    if why is not None:
        where = cfg.root.absolute()
        raise ConfigError(f"--root {jail}: {why} in the served root {where} (make it first)")


def _user_command(args: argparse.Namespace) -> None:
    path: Path = args.config
    if args.user_command == "list":
        print("\n".join(users_file.list_users(path)))
        return
    name: str = args.name
    users_file.must_exist(path)
    if args.user_command == "add":
        config_module.check_user_name(str(path), name)
    if args.user_command == "add" and args.root.startswith("/") and args.root != "/":
        _check_jail(path, args.root)  # (a relative one is the configuration's mistake)

    def add(users: Any) -> None:
        if name in users:
            raise ConfigError(f"{path}: users.{name}: already exists")
        table = tomlkit.table()
        password = _password(args, required=False)
        if password:
            table["password_hash"] = hash_password(password)
        if args.key:
            table["authorized_keys"] = args.key
        if args.keys_file:
            table["authorized_keys_file"] = args.keys_file
        table["root"] = args.root
        if args.home:
            table["home"] = args.home
        table["access"] = "ro" if args.ro else "rw"
        if args.protocols:
            table["protocols"] = [p.strip() for p in args.protocols.split(",") if p.strip()]
        users[name] = table

    def can_log_in(loaded: config_module.Config) -> None:
        # (the default user's password is made at the first start)
        if name != loaded.default_user and not loaded.users[name].has_credentials():
            raise ConfigError(
                f"{path}: users.{name}: no password and no key, so no login: give "
                "--password-stdin (or type one when asked), --key KEY or --keys-file FILE"
            )

    def remove(users: Any) -> None:
        if name not in users:
            raise ConfigError(f"{path}: users.{name}: no such user")
        del users[name]

    def passwd(users: Any) -> None:
        if name not in users:
            raise ConfigError(f"{path}: users.{name}: no such user")
        users[name]["password_hash"] = hash_password(_password(args, required=True) or "")

    change = {"add": add, "remove": remove, "passwd": passwd}[args.user_command]
    users_file.edit(path, change, can_log_in if args.user_command == "add" else lambda c: None)
    print(
        f"{args.user_command}: {name}: saved to {path} "
        "(a running server takes it on SIGHUP: kill -HUP, or systemctl reload)"
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hoody-mount`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "user":
            _user_command(args)
            return
        if args.command == "token":
            _token_command(args)
            return
        if args.command == "share":
            cfg = _config_of(args.config, root=args.root, state_dir=args.state_dir)
            share_command.run(args, cfg)
            return
        if args.command == "connections":
            _connections_command(args)
            return
        if args.command == "locks":
            _locks_command(args)
            return
        if args.command == "health":
            cfg = _config_of(args.config, http=args.http, tls=args.tls)
            listen, tls = cfg.http, cfg.http_options.tls
            if listen.port == 0:  # (the running server picked its port)
                bound = health_probe.bound_listener(cfg.state_dir)
                if bound is None:
                    raise SystemExit(1)
                listen, tls = bound[0], tls or bound[1]
            raise SystemExit(health_probe.probe(listen, tls, cfg.trusted_proxies))
        cfg = _serve_config(args)
    except ConfigError as exc:
        print(f"hoody-mount: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    from . import app

    os.umask(0o022)
    app.serve(cfg, loader=lambda: _serve_config(args))


def _config_of(path: Path | None, **flags: Any) -> config_module.Config:
    """The configuration file at ``path`` (or the embedded default) with ``flags``."""
    base = config_module.load(path) if path else config_module.embedded_default()
    return config_module.with_overrides(base, **flags)


def _serve_config(args: argparse.Namespace) -> config_module.Config:
    """The configuration ``serve`` runs with: the file (or the embedded default) and
    the flags over it; read again on SIGHUP."""
    return _config_of(
        args.config,
        root=args.root,
        state_dir=args.state_dir,
        log_dir=args.log_dir,
        ssh=args.ssh,
        http=args.http,
        authorized_keys=args.authorized_keys,
        tls=args.tls,
        shell=args.shell,
        log_format=args.log_format,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
