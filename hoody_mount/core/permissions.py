"""Who may do what: the one table every decision reads, whatever the front.

Each operation a client can ask for (the core's file operations, and what the fronts
offer besides: WebDAV locks and properties, shells, port forwarding) needs one right;
a user holds a right or not. The fronts name their protocol's verbs in terms of these
operations (WebDAV's methods in ``dav/gate.py``) and ask here, so a rule changes in one
place: read-only users, read-only tokens, shell and forwarding rights, and the protocols
a user may log in with.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from .users import User


class Right(enum.Enum):
    """What an operation needs."""

    READ = "read"  # every user who logged in
    WRITE = "write"  # users with access "rw" (a read-only token takes it away)
    SHELL = "shell"  # users with shell = true: a login shell and exec of any command
    FORWARD = "forward"  # port_forwarding = true and the ssh protocol: ssh -L and -R


OPERATIONS: Mapping[str, Right] = {
    # reading
    "read": Right.READ,
    "list": Right.READ,
    "stat": Right.READ,
    "readlink": Right.READ,
    "statvfs": Right.READ,
    "digest": Right.READ,
    "snapshot": Right.READ,  # a consistent copy of an SQLite database
    # changing files and folders
    "open-write": Right.WRITE,
    "write": Right.WRITE,
    "fsync": Right.WRITE,
    "upload": Right.WRITE,
    "copy-data": Right.WRITE,
    "copy": Right.WRITE,
    "mkdir": Right.WRITE,
    "rmdir": Right.WRITE,
    "remove": Right.WRITE,
    "remove-tree": Right.WRITE,
    "rename": Right.WRITE,
    "link": Right.WRITE,
    "symlink": Right.WRITE,
    "setstat": Right.WRITE,
    "fsetstat": Right.WRITE,
    "restore": Right.WRITE,  # an SQLite database's content replaced by an upload's
    # WebDAV's own state beside the files: a lock or a dead property changes what
    # other clients see, so both need the right to write
    "lock": Right.WRITE,
    "set-properties": Right.WRITE,
    # SSH beyond files
    "shell": Right.SHELL,
    "forward-port": Right.FORWARD,
}


def _holds(user: User, right: Right) -> bool:
    if right is Right.READ:
        return True
    if right is Right.WRITE:
        return not user.read_only
    if right is Right.SHELL:
        return user.shell
    return user.port_forwarding and user.allows("ssh")  # (forwarding is part of ssh)


def may(user: User, operation: str) -> bool:
    """Whether ``user`` may do ``operation`` (a name in ``OPERATIONS``; KeyError else)."""
    return _holds(user, OPERATIONS[operation])


def refusal(user: User, operation: str) -> str | None:
    """Why ``user`` may not do ``operation``, or None if they may."""
    right = OPERATIONS[operation]
    if _holds(user, right):
        return None
    if right is Right.WRITE:
        return "read-only access"
    if right is Right.SHELL:
        return f"no shell for {user.name}"
    return f"port forwarding is not enabled for {user.name}"


def may_write(user: User) -> bool:
    """Whether ``user`` may change anything (what listings and capacity report)."""
    return _holds(user, Right.WRITE)


def protocol_refusal(user: User, protocol: str) -> str | None:
    """Why ``user`` may not log in with ``protocol``, or None if they may."""
    return None if user.allows(protocol) else f"{protocol} is not allowed for {user.name}"


def granted(user: User, read_only_token: bool) -> User:
    """The user as a login grants them: a read-only token takes the right to write."""
    return dataclasses.replace(user, access="ro") if read_only_token else user
