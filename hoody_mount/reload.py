"""SIGHUP: the configuration read again, its users and certificate put in place
without dropping a session.

What a reload changes: the users (added, changed, removed: a removed user's sessions
are ended; every other open session keeps the rights it had, new logins and requests
get the new ones) and the TLS certificate (new connections use it). Authorized-keys
files and the tokens file are read when they are used, so they are always current. A
configuration or a certificate that does not load changes nothing: one log line says
why (a missing jail is warned about, as at start). Settings that only a start can
change (listen addresses, root, state folder, limits, logging) are named in the log
when they differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

from .config import Config
from .core.users import User

RESTART_ONLY = tuple(
    item.name for item in fields(Config) if item.name not in ("users", "source", "http_options")
)


@dataclass(frozen=True)
class UserChanges:
    """What a reload did to the users, by name."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    def __str__(self) -> str:
        parts = [
            f"{what} {', '.join(names)}"
            for what, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            if names
        ]
        return "; ".join(parts) or "no user changed"


def put_users(users: dict[str, User], new: Mapping[str, User]) -> UserChanges:
    """Make ``users`` (the mapping every front reads) hold ``new``, in steps that each
    leave it whole: new and changed users first, then the removed ones go."""
    added = tuple(sorted(set(new) - set(users)))
    removed = tuple(sorted(set(users) - set(new)))
    changed = tuple(sorted(name for name in set(new) & set(users) if new[name] != users[name]))
    users.update(new)
    for name in removed:
        del users[name]
    return UserChanges(added, removed, changed)


def needs_restart(old: Config, new: Config) -> list[str]:
    """The settings that differ and that only a start can change."""
    changed = [name for name in RESTART_ONLY if getattr(old, name) != getattr(new, name)]
    old_http, new_http = old.http_options, new.http_options
    for item in fields(old_http):
        if item.name not in ("cert", "key") and getattr(old_http, item.name) != getattr(
            new_http, item.name
        ):
            changed.append(f"http.{item.name}")
    return changed


Loader = Callable[[], Config]
