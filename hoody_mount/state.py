"""The server's own state in its state folder: host key and the default user's password hash.

Secret files are created with mode 0600 from the first byte (O_EXCL into a temp name,
fsync, rename into place, fsync the folder) and are never silently replaced: a corrupt
host key stops the server with a clear error instead of changing its identity. The folder
and every file the server reads there must be trusted (``core.trusted_files``): owned by
the server's uid and not writable by group or others.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import asyncssh

from .core import trusted_files
from .core.record_files import RecordFileError
from .core.secret_file import write_secret
from .core.shares import FILE_NAME as SHARES_NAME
from .core.shares import ShareStore
from .core.tokens import FILE_NAME as TOKENS_NAME
from .core.tokens import TokenFileError, TokenStore
from .core.users import hash_password, is_password_hash

HOST_KEY_NAME = "ssh_host_ed25519_key"
PASSWORD_NAME = "default-password.hash"
# Everything the server reads in the state folder (the TLS names are http_transport.tls's; the DAV
# locks and properties are in SQLite, which adds -wal and -shm files; the properties'
# shelve of earlier versions, where dbm added .dat, .dir and .bak, is read once).
READ_NAMES = (
    HOST_KEY_NAME, PASSWORD_NAME, TOKENS_NAME, SHARES_NAME, "tls-cert.pem", "tls-key.pem"
)  # fmt: skip
READ_PREFIXES = ("dav-locks.sqlite", "dav-props.sqlite", "dav-props.shelve")


class StateError(Exception):
    """The state folder holds something unusable; the message says what and where."""


def prepare(state_dir: Path) -> None:
    """Create the state folder, private to its owner; check it and the files read there."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise StateError(f"state_dir {state_dir}: not a folder") from None
    except OSError as exc:
        raise StateError(f"state_dir {state_dir}: cannot be created: {exc.strerror}") from None
    try:
        trusted_files.check_folder(state_dir, READ_NAMES, READ_PREFIXES)
    except trusted_files.UntrustedFile as exc:
        raise StateError(str(exc)) from None


def _read(path: Path) -> bytes:
    try:
        return trusted_files.read(path)[0]
    except trusted_files.UntrustedFile as exc:
        raise StateError(str(exc)) from None


def tokens(state_dir: Path) -> TokenStore:
    """The API tokens of the state folder, read once now (a bad file stops the start)."""
    store = TokenStore(state_dir)
    try:
        store.load()
    except TokenFileError as exc:
        raise StateError(str(exc)) from None
    return store


def shares(state_dir: Path) -> ShareStore:
    """The shares of the state folder, read once now (a bad file stops the start)."""
    store = ShareStore(state_dir)
    try:
        store.load()
    except RecordFileError as exc:
        raise StateError(str(exc)) from None
    return store


def host_key(state_dir: Path) -> tuple[asyncssh.SSHKey, bool]:
    """Load the ed25519 host key, generating it on first start; return it and whether new."""
    path = state_dir / HOST_KEY_NAME
    if path.exists():
        try:
            return asyncssh.import_private_key(_read(path)), False
        except (asyncssh.KeyImportError, ValueError, OSError) as exc:
            raise StateError(
                f"{path}: the host key cannot be read ({exc}); it is not replaced "
                "automatically, since clients would see a new identity. Restore it, or "
                "remove it to generate a new one."
            ) from None
    key = asyncssh.generate_private_key("ssh-ed25519")
    write_secret(path, key.export_private_key())
    write_secret(path.with_name(HOST_KEY_NAME + ".pub"), key.export_public_key())
    return key, True


def default_password_hash(state_dir: Path, from_env: str | None) -> tuple[str, str | None]:
    """The default user's password hash, and the new password to print once (or None).

    A password from the environment wins and is never printed. Otherwise the stored hash
    is used; on first start a random password is made, its hash stored, and it is returned
    so that it can be shown once.
    """
    if from_env:
        return hash_password(from_env), None
    path = state_dir / PASSWORD_NAME
    if path.exists():
        stored = _read(path).decode("utf-8", "replace").strip()
        if not is_password_hash(stored):
            raise StateError(f"{path}: not a password hash; remove it to make a new password")
        return stored, None
    password = secrets.token_urlsafe(15)
    stored = hash_password(password)
    write_secret(path, stored.encode() + b"\n")
    return stored, password
