"""Shares: a folder given to someone else as a login of its own, read-only unless writable.

A share is not a permission system of its own: it is a ``User`` named ``share-<id>``,
jailed to its folder, whose password is a random secret (only its SHA-256 is kept), that
may expire and may be limited to address ranges (``User.allow``). ``Logins`` puts the
shares in force beside the configured users, so every front finds them where it finds
users. Shares are kept in ``shares.json`` in the state folder (``core.record_files``:
re-read when it changes, so ``hoody-mount share …`` takes effect at once). A share link
(``/s/<secret>/``) may also ask for a password, kept as an scrypt hash.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import paths
from .live import Entry
from .record_files import RecordFile
from .users import PROTOCOLS, User, hash_password, hash_secret

FILE_NAME = "shares.json"
PREFIX = "share-"
_NAME = re.compile(PREFIX + r"([0-9a-f]{12})")
SECRET = re.compile(r"[A-Za-z0-9_-]{43}")  # what ``secrets.token_urlsafe(32)`` makes


@dataclass(frozen=True)
class Share:
    """A stored share (without its secret)."""

    id: str
    path: str  # the shared folder, a virtual path of the served root
    read_only: bool
    digest: str  # ``hash_secret`` of the secret
    created: float
    expires: float | None = None
    allow: tuple[str, ...] = ()  # CIDRs (empty: anywhere)
    password_hash: str | None = None  # what a link asks for, if anything

    @property
    def name(self) -> str:
        """The share's user name."""
        return PREFIX + self.id

    def expired(self, now: float | None = None) -> bool:
        """Whether the share is past its expiry time."""
        return self.expires is not None and (now or time.time()) >= self.expires

    def user(self) -> User:
        """The share as the user it logs in as: jailed, no shell, no forwarding."""
        return User(
            self.name, password_hash=self.digest, root=self.path, access="ro" if self.read_only
            else "rw", protocols=PROTOCOLS, allow=self.allow, share=self.id,
        )  # fmt: skip

    def row(self) -> dict[str, Any]:
        """What ``share list`` and ``GET /api/v1/shares`` show (no hash)."""
        return {
            "id": self.id, "user": self.name, "path": self.path,
            "mode": "ro" if self.read_only else "rw", "expires": self.expires,
            "allow": list(self.allow), "link_password": self.password_hash is not None,
            "created": self.created,
        }  # fmt: skip


def _make(record: dict[str, Any]) -> Share:
    share = Share(**{**record, "allow": tuple(record.get("allow", ()))})
    if not re.fullmatch(r"[0-9a-f]{12}", share.id) or paths.normalize(share.path) != share.path:
        raise ValueError(f"share {share.id!r}: not a valid id or path")
    return share


def check_allow(ranges: Iterable[str]) -> tuple[str, ...]:
    """Address ranges, each a CIDR or an address (ValueError naming a bad one)."""
    result = []
    for text in ranges:
        try:
            result.append(str(ipaddress.ip_network(text.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"not an address range: {text!r} (use e.g. 10.0.0.0/8)") from None
    return tuple(result)


def created(share: Share, secret: str, base: str) -> dict[str, Any]:
    """What ``share create`` and ``POST /api/v1/shares`` answer: the secret (once) and
    the link under the HTTP listener's ``base`` URL."""
    url = f"{base}/s/{secret}/"
    return {"id": share.id, "user": share.name, "secret": secret, "url": url,
            "expires": share.expires}  # fmt: skip


class ShareStore:
    """The shares of one state folder."""

    def __init__(self, state_dir: Path) -> None:
        self._file = RecordFile(state_dir / FILE_NAME, "share", _make, asdict)
        self.path = self._file.path

    def load(self) -> None:
        """Read the file now (``RecordFileError`` when it is not trusted or not valid)."""
        with self._file.lock:
            self._file.read()

    def create(
        self,
        path: str,
        read_only: bool = True,
        expires_in: float | None = None,
        allow: Iterable[str] = (),
        password: str | None = None,
    ) -> tuple[str, Share]:
        """Make a share of ``path``; its secret (shown once) and its record."""
        secret = secrets.token_urlsafe(32)
        now = time.time()
        share = Share(
            secrets.token_hex(6), paths.normalize(path), read_only, hash_secret(secret), now,
            now + expires_in if expires_in else None, check_allow(allow),
            hash_password(password) if password else None,
        )  # fmt: skip
        with self._file.lock:
            self._file.save({**self._file.read(), share.id: share})
        return secret, share

    def list(self) -> list[Share]:
        """All stored shares, expired ones too."""
        with self._file.lock:
            return sorted(self._file.read().values(), key=lambda s: s.created)

    def revoke(self, share_id: str) -> Share | None:
        """Delete a share by id; which it was (None: there is none)."""
        with self._file.lock:
            shares = dict(self._file.read())
            share = shares.pop(share_id, None)
            if share is not None:
                self._file.save(shares)
            return share

    def in_force(self) -> dict[str, Share]:
        """The shares that may log in now, by id."""
        with self._file.lock:
            shares = self._file.current()
        return {key: share for key, share in shares.items() if not share.expired()}

    def named(self, name: str) -> Share | None:
        """The share in force whose user is ``name``."""
        match = _NAME.fullmatch(name)
        return self.in_force().get(match.group(1)) if match else None

    def by_secret(self, secret: str) -> Share | None:
        """The share in force whose secret is ``secret``."""
        if not SECRET.fullmatch(secret):
            return None
        digest = hash_secret(secret)
        return next((s for s in self.in_force().values() if s.digest == digest), None)


class Logins(Mapping[str, User]):
    """Every name that may log in: the configured users (a mapping a reload updates in
    place) and the shares in force."""

    def __init__(self, users: Mapping[str, User], shares: ShareStore) -> None:
        self.users, self.shares = users, shares

    def __getitem__(self, name: str) -> User:
        user = self.users.get(name)
        if user is not None:
            return user
        share = self.shares.named(name) if name.startswith(PREFIX) else None
        if share is None:
            raise KeyError(name)
        return share.user()

    def __iter__(self) -> Iterator[str]:
        yield from self.users
        for share in self.shares.in_force().values():
            yield share.name

    def __len__(self) -> int:
        return len(self.users) + len(self.shares.in_force())


class Usage:
    """Each share's last use and bytes served, from the live sessions that end (kept
    in memory: a restart starts them afresh)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._sent: dict[str, int] = {}

    def seen(self, entry: Entry, ended: bool) -> None:
        """A session began or ended (``Live``'s watcher)."""
        if not entry.user.startswith(PREFIX):
            return
        self._last[entry.user] = time.time()
        if ended:
            sent = entry.row()["sent"]
            self._sent[entry.user] = self._sent.get(entry.user, 0) + int(str(sent))

    def of(self, name: str) -> dict[str, Any]:
        """``{"last_used", "bytes_served"}`` of the share user ``name``."""
        return {"last_used": self._last.get(name), "bytes_served": self._sent.get(name, 0)}
