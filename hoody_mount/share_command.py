"""`hoody-mount share create|list|revoke`: shares of a folder, in the server's state folder."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import control
from .config import Config, ConfigError, Listen
from .core import paths, trusted_files
from .core.logs import escape
from .core.record_files import RecordFileError
from .core.sessions import folder_refusal
from .core.shares import ShareStore, check_allow, created
from .core.tokens import parse_duration

REVOKED = "the share was revoked"


def add_parser(commands: Any) -> None:
    """The ``share`` subcommands, on the main parser's subparsers."""
    share = commands.add_parser("share", help="shares of a folder: a login of their own")
    subs = share.add_subparsers(dest="share_command", required=True)
    for name, text in (("create", "share a folder"), ("list", "list shares"), ("revoke", "end")):
        sub = subs.add_parser(name, help=text)
        sub.add_argument("--config", type=Path, help="TOML file (default: the embedded default)")
        sub.add_argument("--root", help="the served folder, if serve was given --root")
        sub.add_argument("--state-dir", help="the server's state folder")
        if name == "create":
            sub.add_argument("path", help="the folder to share (a path of the served root)")
            sub.add_argument("--rw", action="store_true", help="let the share write")
            sub.add_argument("--expires", metavar="DURATION", help="e.g. 30m, 12h, 90d, 2w")
            sub.add_argument(
                "--password-stdin", action="store_true", help="a password the link asks for"
            )
            sub.add_argument("--allow", metavar="CIDR", action="append", default=[],
                             help="log in only from this range (repeatable)")  # fmt: skip
        if name in ("create", "list"):
            sub.add_argument("--json", action="store_true", help="print JSON")
        if name == "revoke":
            sub.add_argument("id", help="the share's id")


def web_base(listen: Listen, tls: bool) -> str:
    """The HTTP listener's base URL as clients on this host reach it."""
    host = "127.0.0.1" if listen.host in ("0.0.0.0", "::", "") else listen.host
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{listen.port}"


def run(args: argparse.Namespace, cfg: Config) -> None:
    """Run a ``share`` subcommand; ``ConfigError`` for what the operator must fix."""
    try:
        _run(args, cfg)
    except (RecordFileError, trusted_files.UntrustedFile) as exc:
        raise ConfigError(str(exc)) from None


def _run(args: argparse.Namespace, cfg: Config) -> None:
    store = ShareStore(cfg.state_dir)
    if cfg.state_dir.is_dir():
        trusted_files.check_folder(cfg.state_dir)
    if args.share_command == "create":
        _create(args, cfg, store)
    elif args.share_command == "list":
        _list(args, cfg, store)
    else:
        share = store.revoke(args.id)
        if share is None:
            raise ConfigError(f"share {args.id}: no such share")
        try:
            ended = control.ask(
                cfg.state_dir, {"command": "end-user", "user": share.name, "reason": REVOKED}
            )["ended"]
            print(f"revoked {share.id}; {ended} open sessions ended")
        except control.ControlError as exc:
            print(f"revoked {share.id} (no running server told: {exc})")


def _jail_refusal(cfg: Config, path: str) -> str | None:
    """Why ``path`` cannot be a share's folder, judged as the server will open it."""
    return folder_refusal(cfg.root, cfg.state_dir, path)


def _create(args: argparse.Namespace, cfg: Config, store: ShareStore) -> None:
    if not args.path.startswith("/"):
        raise ConfigError(f"{args.path}: name the folder by its path in the served root (/…)")
    path = paths.normalize(args.path)
    why = _jail_refusal(cfg, path)
    if why is not None:
        raise ConfigError(f"{args.path}: cannot be shared from the served root {cfg.root}: {why}")
    try:
        expires = parse_duration(args.expires) if args.expires else None
    except ValueError as exc:
        raise ConfigError(f"--expires: {exc}") from None
    try:
        allow = check_allow(args.allow)
    except ValueError as exc:
        raise ConfigError(f"--allow: {exc}") from None
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    if args.password_stdin and not password:
        raise ConfigError("--password-stdin: an empty password is not accepted")
    cfg.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret, share = store.create(path, not args.rw, expires, allow, password)
    ssh, http, tls = _listeners(cfg)
    base = web_base(http, tls)
    answer = created(share, secret, base)
    if args.json:
        print(json.dumps(answer))
        return
    host = "127.0.0.1" if ssh.host in ("0.0.0.0", "::", "") else ssh.host
    port, user = ssh.port, share.name
    until = time.strftime("%Y-%m-%d %H:%M", time.localtime(share.expires or 0))
    print(
        f"share {share.id} of {path} ({'read-write' if args.rw else 'read-only'}"
        f"{', until ' + until if expires else ''})\n"
        f"user {user}, secret (shown only this once): {secret}\n"
        f"link: {answer['url']}{'  (asks for the password)' if password else ''}\n"
        f"Connect with:\n"
        f"  sftp -P {port} {user}@{host}\n"
        f"  mkdir -p ~/{user} && sshfs -p {port} {user}@{host}:/ ~/{user} -o reconnect\n"
        f"  rclone config create {user} webdav url {base}/dav/ vendor owncloud user {user} "
        f"pass $(rclone obscure -- '{secret}')\n"
        f"  curl -H 'Authorization: Bearer {secret}' '{base}/api/v1/files/?json'"
    )
    print(f"kept in {store.path} (the server must use the state folder {cfg.state_dir})",
          file=sys.stderr)  # fmt: skip


def _listeners(cfg: Config) -> tuple[Listen, Listen, bool]:
    """Where clients reach the server: the running server's bound listeners (a port 0
    of the configuration is the one it picked), else the configuration's."""
    try:
        return control.listeners(cfg.state_dir)
    except control.ControlError as exc:
        if cfg.ssh.port == 0 or cfg.http.port == 0:
            print(f"hoody-mount: the configuration's port 0 is picked when the server starts, "
                  f"and no running server said which ({exc}): the ports below are 0",
                  file=sys.stderr)  # fmt: skip
        return cfg.ssh, cfg.http, cfg.http_options.tls


def _list(args: argparse.Namespace, cfg: Config, store: ShareStore) -> None:
    rows = [share.row() for share in store.list()]
    for row in rows:
        row["expired"] = row["expires"] is not None and row["expires"] <= time.time()
        try:
            row.update(control.ask(cfg.state_dir, {"command": "usage", "user": row["user"]}))
        except control.ControlError:
            row.update(last_used=None, bytes_served=None)  # (no server running)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("ID\tPATH\tMODE\tEXPIRES\tALLOW\tLINK PASSWORD\tLAST USE\tBYTES SERVED")

    def when(stamp: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"

    for row in rows:
        expiry = when(row["expires"]) + (" (expired)" if row["expired"] else "")
        served = "-" if row["bytes_served"] is None else str(row["bytes_served"])
        allow = ",".join(row["allow"]) or "anywhere"
        asks = "yes" if row["link_password"] else "no"
        print(f"{row['id']}\t{escape(row['path'])}\t{row['mode']}\t{expiry}\t{allow}\t"
              f"{asks}\t{when(row['last_used'])}\t{served}")  # fmt: skip
    if not rows:
        print("(no shares)", file=sys.stderr)
