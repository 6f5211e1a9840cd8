"""Users: who may log in, how, where they are jailed and whether they may write.

One model for every protocol. Passwords are kept only as scrypt hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .turns import stepped_aside

log = logging.getLogger(__name__)

PROTOCOLS = frozenset({"sftp", "scp", "ssh", "webdav", "http"})
ACCESS_MODES = ("ro", "rw")

_SCRYPT_LOG_N = 15
_SCRYPT_R = 8
_SCRYPT_P = 1
_NO_HASH_SALT = secrets.token_bytes(16)  # the dummy check for a user without a hash


@dataclass(frozen=True)
class User:
    """A user of every protocol. ``root`` and ``home`` are virtual paths."""

    name: str
    password_hash: str | None = None
    authorized_keys: tuple[str, ...] = ()
    authorized_keys_files: tuple[str, ...] = ()
    root: str = "/"
    home: str = "/"
    access: str = "rw"
    protocols: frozenset[str] = field(default=PROTOCOLS)
    shell: bool = False
    os_user: str | None = None
    port_forwarding: bool = False
    allow: tuple[str, ...] = ()  # CIDRs it may log in from (empty: anywhere)
    share: str | None = None  # the id of the share this login is (see ``core.shares``)

    @property
    def read_only(self) -> bool:
        """Whether every write is refused for this user."""
        return self.access == "ro"

    def has_credentials(self) -> bool:
        """Whether a password or a key can log this user in (else only its tokens)."""
        return bool(self.password_hash or any(self.authorized_keys) or self.authorized_keys_files)

    def allows(self, protocol: str) -> bool:
        """Whether the user may log in with ``protocol``."""
        return protocol in self.protocols

    def admits(self, address: str) -> bool:
        """Whether the user may log in from ``address`` (its ``allow`` ranges)."""
        if not self.allow:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in ipaddress.ip_network(cidr, strict=False) for cidr in self.allow)

    def address_refusal(self, address: str) -> str | None:
        """Why the user may not log in from ``address``, or None if it may."""
        return None if self.admits(address) else f"{self.name} may not log in from {address}"


def read_authorized_keys(user: User) -> str:
    """The user's authorized keys: inline ones and those in the listed files, which
    the administrator names on the host (blocking; a missing file is skipped)."""
    lines = list(user.authorized_keys)
    for name in user.authorized_keys_files:
        try:
            lines.append(Path(name).read_text())
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot read authorized keys %s: %s", name, exc.strerror)
    return "\n".join(lines)


def hash_password(password: str) -> str:
    """Hash a password with scrypt and a random salt, in the ``$scrypt$`` text form."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_LOG_N, _SCRYPT_R, _SCRYPT_P)
    return f"$scrypt$ln={_SCRYPT_LOG_N},r={_SCRYPT_R},p={_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def hash_secret(secret: str) -> str:
    """The stored form of a random secret (a share's): SHA-256 is enough for 256 random
    bits, and checking it costs nothing."""
    return SECRET_SCHEME + hashlib.sha256(secret.encode()).hexdigest()


SECRET_SCHEME = "$sha256$"
# what an unknown name's password is checked against when the name has the form of a
# random secret's login (a share's): as fast as a known one's, so that the time taken
# does not tell a share in force from one revoked, expired or never made
UNKNOWN_SECRET = SECRET_SCHEME + "0" * 64


def stored_for(user: User | None, name: str, secret_names: str) -> str | None:
    """The hash ``name``'s password is checked against: its user's, else one that costs
    what a real check of such a name would (a secret's for names starting with
    ``secret_names``, scrypt's for the others, see ``verify_password``)."""
    if user is not None:
        return user.password_hash
    return UNKNOWN_SECRET if name.startswith(secret_names) else None


def verify_password(password: str, stored: str | None) -> bool:
    """Check ``password`` against a stored ``$scrypt$`` hash (or a random secret's
    ``hash_secret``) in constant time.

    A missing or unusable hash fails after the same scrypt check as a wrong password,
    so that the time taken does not tell whether a user exists or has a password.
    """
    if stored is not None and stored.startswith(SECRET_SCHEME):
        return hmac.compare_digest(hash_secret(password), stored)
    parsed = _parse(stored) if stored else None
    if parsed is None:
        _scrypt(password, _NO_HASH_SALT, _SCRYPT_LOG_N, _SCRYPT_R, _SCRYPT_P)
        return False
    expected, salt, log_n, r, p = parsed
    return hmac.compare_digest(_scrypt(password, salt, log_n, r, p), expected)


def _parse(stored: str) -> tuple[bytes, bytes, int, int, int] | None:
    """Digest, salt and parameters of a ``$scrypt$`` hash, or None."""
    try:
        _, scheme, params, salt_text, digest_text = stored.split("$")
        values = dict(item.split("=") for item in params.split(","))
        log_n, r, p = int(values["ln"]), int(values["r"]), int(values["p"])
        salt, expected = _unb64(salt_text), _unb64(digest_text)
    except (ValueError, KeyError):
        return None
    if scheme != "scrypt" or not 10 <= log_n <= 20:
        return None
    return expected, salt, log_n, r, p


def is_password_hash(text: str) -> bool:
    """Whether ``text`` has the form of a hash made by ``hash_password``."""
    return text.startswith("$scrypt$") and text.count("$") == 4


# scrypt is memory-hard on purpose: 128 * r * n bytes per check, 32 MiB with our
# parameters. Unbounded, 24 clients logging in at once took the process to 770 MB.
SCRYPT_AT_ONCE = 2
_scrypt_slots = threading.BoundedSemaphore(SCRYPT_AT_ONCE)


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    """scrypt, at most ``SCRYPT_AT_ONCE`` at a time in the process (others wait)."""
    n = 1 << log_n
    with stepped_aside(), _scrypt_slots:  # (no Python runs while it waits or works)
        return _scrypt_now(password, salt, n, r, p)


def _scrypt_now(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))
