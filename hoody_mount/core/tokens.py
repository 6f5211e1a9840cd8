"""API tokens: bearer credentials that belong to a user, may be read-only and may expire.

A token is ``hm_<id>_<secret>``; only the SHA-256 of the secret is stored (the secret is
random, so a fast hash is enough), in ``tokens.json`` in the state folder, mode 0600
(``core.record_files``: re-read when it changes, so ``hoody-mount token …`` takes effect
at once).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .record_files import RecordFile, RecordFileError

FILE_NAME = "tokens.json"
_TOKEN = re.compile(r"hm_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Token:
    """A stored token (without its secret)."""

    id: str
    user: str
    digest: str
    read_only: bool
    created: float
    expires: float | None

    def expired(self, now: float | None = None) -> bool:
        """Whether the token is past its expiry time."""
        return self.expires is not None and (now or time.time()) >= self.expires


def parse_duration(text: str) -> float:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` → seconds (ValueError otherwise)."""
    match = re.fullmatch(r"(\d{1,12})([smhdw])", text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 12h, 90d, 2w)")
    return checked_duration(int(match.group(1)) * _UNITS[match.group(2)])


MAX_DURATION = 100 * 365 * 86400  # seconds: a lifetime longer is a mistake


def checked_duration(seconds: float) -> float:
    """``seconds`` if it is a lifetime a clock can hold (ValueError otherwise: an
    infinite or huge one broke every listing of the shares or tokens)."""
    if not 0 < seconds <= MAX_DURATION:  # (NaN fails too)
        raise ValueError(f"a duration of at most 100 years, got {seconds:g} s")
    return seconds


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


TokenFileError = RecordFileError  # ``tokens.json`` is not trusted or cannot be parsed


class TokenStore:
    """The tokens of one state folder."""

    def __init__(self, state_dir: Path) -> None:
        self._file = RecordFile(state_dir / FILE_NAME, "token", lambda r: Token(**r), asdict)
        self.path = self._file.path
        self._lock = self._file.lock

    def load(self) -> None:
        """Read the file now (``TokenFileError`` when it is not trusted or not valid)."""
        with self._lock:
            self._file.read()

    def _load(self) -> dict[str, Token]:
        return self._file.read()

    def _save(self, tokens: dict[str, Token]) -> None:
        self._file.save(tokens)

    def create(self, user: str, read_only: bool, expires_in: float | None) -> tuple[str, Token]:
        """Make a token; return its text (shown once) and its record."""
        with self._lock:
            tokens = dict(self._load())
            token_id = secrets.token_hex(6)
            secret = secrets.token_urlsafe(32)
            now = time.time()
            record = Token(
                token_id, user, _digest(secret), read_only, now,
                now + expires_in if expires_in else None,
            )  # fmt: skip
            tokens[token_id] = record
            self._save(tokens)
            return f"hm_{token_id}_{secret}", record

    def list(self) -> list[Token]:
        """All stored tokens."""
        with self._lock:
            return sorted(self._load().values(), key=lambda t: t.created)

    def revoke(self, token_id: str) -> bool:
        """Delete a token by id; whether it existed."""
        with self._lock:
            tokens = dict(self._load())
            if tokens.pop(token_id, None) is None:
                return False
            self._save(tokens)
            return True

    def revoke_user(self, user: str) -> int:
        """Revoke every token of ``user`` (a user who was removed: its tokens must not
        come back with a new user of the same name); how many."""
        return sum(self.revoke(token.id) for token in self.list() if token.user == user)

    def check(self, text: str) -> Token | None:
        """The valid, unexpired token for a bearer credential, or None."""
        match = _TOKEN.fullmatch(text)
        if not match:
            return None
        with self._lock:
            record = self._file.current().get(match.group(1))
        if record is None or record.expired():
            return None
        if not hmac.compare_digest(record.digest, _digest(match.group(2))):
            return None
        return record
