"""Ready-to-paste commands that mount a user's files on Linux, macOS and Windows, for
the file page's Mount panel.

They name the host people type (``public_host``, or the host the browser reached),
the ports the server really listens on, and only the protocols the user may use.
Passwords are never in them: where a client takes one on its command line, the
command says ``PASSWORD`` for the user to replace.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")


def typed_host(text: str) -> str | None:
    """``text`` as a host people type (a DNS name, or an IP address without brackets),
    or None when it is neither: nothing else ever goes into a command, which people
    paste into a shell."""
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    return text if len(text) <= 253 and _HOST_NAME.fullmatch(text) else None


@dataclass(frozen=True)
class Where:
    """How clients reach the server: the host they type, and the listeners' ports."""

    host: str  # a name or an address, without brackets or port
    ssh_port: int | None  # None: no SSH listener
    web_scheme: str  # "http" or "https"
    web_port: int


@dataclass(frozen=True)
class Command:
    """One way to mount: what it is (``label``) and the text to paste or type."""

    label: str
    text: str


@dataclass(frozen=True)
class System:
    """The commands for one operating system."""

    name: str
    commands: tuple[Command, ...]


def _host(host: str) -> str:
    """A host as it goes in a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def _port_suffix(scheme: str, port: int) -> str:
    return "" if (scheme, port) in (("http", 80), ("https", 443)) else f":{port}"


def dav_url(where: Where) -> str:
    """The WebDAV share's URL."""
    port = _port_suffix(where.web_scheme, where.web_port)
    return f"{where.web_scheme}://{_host(where.host)}{port}/dav/"


def systems(where: Where, user: str, protocols: frozenset[str]) -> list[System]:
    """The mount commands for ``user``, who may use ``protocols``."""
    sftp = where.ssh_port is not None and "sftp" in protocols
    dav = "webdav" in protocols
    url = dav_url(where)
    tls = where.web_scheme == "https"
    host = where.host
    port = where.ssh_port
    target = f"{user}@{_host(host)}"
    sshfs = (
        f"mkdir -p ~/hoody && sshfs -p {port} {target}:/ ~/hoody "
        "-o reconnect,ServerAliveInterval=15,ServerAliveCountMax=3"
    )
    check = " --no-check-certificate" if tls else ""
    rclone_dav = (
        f"rclone config create hoody-dav webdav url {url} vendor owncloud user {user} "
        "pass \"$(rclone obscure -- 'PASSWORD')\""
    )
    linux: list[Command] = []
    mac: list[Command] = []
    windows: list[Command] = []
    if sftp:
        linux.append(Command("sshfs (SFTP; asks for the password)", sshfs))
        mac.append(Command("sshfs with macFUSE (SFTP; asks for the password)", sshfs))
    if dav:
        linux.append(
            Command(
                "rclone mount (WebDAV)",
                f"{rclone_dav} && mkdir -p ~/hoody && "
                f"rclone mount hoody-dav: ~/hoody --vfs-cache-mode writes --daemon{check}",
            )
        )
        linux.append(
            Command(
                "davfs2 (asks for the user and password)",
                f"sudo mkdir -p /mnt/hoody && sudo mount -t davfs {url} /mnt/hoody "
                "-o uid=$(id -u),gid=$(id -g)",
            )
        )
        mac.append(Command("Finder: Go ▸ Connect to Server (⌘K), then this address", url))
        unc_port = "@SSL" if tls else ""
        unc_port += f"@{where.web_port}" if _port_suffix(where.web_scheme, where.web_port) else ""
        windows.append(
            Command(
                "Explorer: This PC ▸ Map network drive, Folder"
                + ("" if tls else " (Windows sends passwords only over HTTPS by default)"),
                f"\\\\{host}{unc_port}\\dav",
            )
        )
        windows.append(
            Command(
                "rclone mount (WebDAV, in PowerShell)",
                f"rclone config create hoody-dav webdav url {url} vendor owncloud user {user} "
                f"pass (rclone obscure -- 'PASSWORD'); "
                f"rclone mount hoody-dav: X: --vfs-cache-mode writes{check}",
            )
        )
    if sftp:
        windows.append(Command("WinSCP (SFTP)", f"winscp.exe sftp://{target}:{port}/"))
    found = [System("Linux", tuple(linux)), System("macOS", tuple(mac))]
    found.append(System("Windows", tuple(windows)))
    return [system for system in found if system.commands]
