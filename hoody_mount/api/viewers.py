"""Who looks at a file page, and the Mount panel's commands for them: the host people
type (``public_host``, else the one the browser reached) and the real ports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..core import permissions
from ..core.users import User
from ..http_names import LOGGED_IN
from ..mount_commands import Where, systems, typed_host
from .page import Viewer

READ_ONLY_NOTE = (
    "Replace PASSWORD with the account's password: a mount has the account's own rights, "
    "which may be more than this page's (a read-only token's). The others ask for it."
)


@dataclass(frozen=True)
class Place:
    """What the page cannot learn from a request: the host name clients should use
    (None: the one in the request) and the SSH listener's port (None: none)."""

    public_host: str | None = None
    ssh_port: int | None = None
    listener_host: str | None = None  # the HTTP listener's address (None: all of them)


def _reached(environ: dict[str, Any], place: Place) -> tuple[str, str, int]:
    """The scheme, host and port the request was sent to."""
    scheme = "https" if environ.get("wsgi.url_scheme") == "https" else "http"
    host_header = str(environ.get("HTTP_HOST") or "")
    try:
        parts = urlsplit(f"{scheme}://{host_header}")
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    # (the Host header is the client's to say: only a plain name or address goes into
    # commands people paste into a shell, else the listener's own address)
    host = typed_host(host or "") or place.listener_host or "localhost"
    if port is None:
        server_port = str(environ.get("SERVER_PORT") or "")
        port = int(server_port) if server_port.isdigit() else (443 if scheme == "https" else 80)
    return scheme, host, port


def viewer_of(environ: dict[str, Any], user: User, place: Place) -> Viewer:
    """The page's viewer: ``user`` as the request's login grants it."""
    read_only = not permissions.may_write(user)
    if user.share is not None:  # (a share link's visitor: no account to mount with)
        return Viewer(user="", read_only=read_only)
    scheme, host, port = _reached(environ, place)
    if place.public_host:
        host = place.public_host
    where = Where(host=host, ssh_port=place.ssh_port, web_scheme=scheme, web_port=port)
    protocols = frozenset(p for p in ("sftp", "webdav") if user.allows(p))
    return Viewer(
        user=user.name,
        read_only=read_only,
        logged_in=bool(environ.get(LOGGED_IN)),
        mounts=systems(where, user.name, protocols),
        password_note=READ_ONLY_NOTE if read_only else Viewer.password_note,
    )
