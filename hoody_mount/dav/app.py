"""The WsgiDAV application: the session provider under /dav, and a tiny root collection.

Windows probes ``OPTIONS /`` and ``PROPFIND /`` before it looks at the share, so ``/``
answers as a read-only DAV collection holding the single folder ``dav``.
Locks (the core's table, through ``locks.py``) and dead properties (``properties.py``)
are kept in SQLite in the state folder, so they survive restarts.
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any

from wsgidav import util
from wsgidav.dav_error import ERROR_DESCRIPTIONS, HTTP_FORBIDDEN, DAVError
from wsgidav.dav_provider import DAVCollection, DAVProvider
from wsgidav.error_printer import ErrorPrinter
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from ..core.locks import FILE_NAME as LOCKS_NAME
from ..core.locks import LockTable
from ..http_names import DAV_ROOT
from . import wsgidav_glue
from .gate import DavGate
from .locks import JailedLockManager, LockStorage
from .properties import FILE_NAME as PROPERTIES_NAME
from .properties import PropertyTable
from .propfind_stream import StreamedPropfind
from .provider import SessionProvider

DAV_PREFIX = DAV_ROOT
BLOCK_SIZE = 1 << 20


class _ShareEntry(DAVCollection):  # type: ignore[misc]
    """How ``/dav`` looks when ``/`` is listed (its content is served by its own share)."""

    def get_member_names(self) -> list[str]:
        return []

    def get_display_name(self) -> str:
        return DAV_PREFIX.strip("/")


class _Root(DAVCollection):  # type: ignore[misc]
    """``/``: one member, the share."""

    def get_member_names(self) -> list[str]:
        return [DAV_PREFIX.strip("/")]

    def get_member(self, name: str) -> Any:
        if name == DAV_PREFIX.strip("/"):
            return _ShareEntry(DAV_PREFIX, self.environ)
        return None

    def get_display_name(self) -> str:
        return ""

    def create_empty_resource(self, name: str) -> Any:
        raise DAVError(HTTP_FORBIDDEN, "the root holds only the /dav share")

    def create_collection(self, name: str) -> None:
        raise DAVError(HTTP_FORBIDDEN, "the root holds only the /dav share")


class RootProvider(DAVProvider):  # type: ignore[misc]
    """The provider for ``/`` that lists the share (its resources refuse every change).

    It is not marked read-only: WsgiDAV would then announce DAV class 1 on ``/``, and
    Windows decides from ``OPTIONS /`` whether it can lock.
    """

    def is_readonly(self) -> bool:
        return False

    def get_resource_inst(self, path: str, environ: dict[str, Any]) -> Any:
        return _Root("/", environ) if path in ("", "/") else None


def build(state_dir: Path, table: LockTable | None = None) -> DavGate:
    """The WebDAV application: WsgiDAV behind its gate (authentication comes before both),
    its locks kept in ``table`` (the core's, which every protocol checks; by default one
    of its own in the state folder). UnfitLibrary if WsgiDAV lacks what ``wsgidav_glue``
    uses."""
    wsgidav_glue.check()
    provider = SessionProvider()
    config: dict[str, Any] = {
        "provider_mapping": {DAV_PREFIX: provider, "/": RootProvider()},
        "lock_storage": False,  # (ours is set below: WsgiDAV would make its own manager)
        "property_manager": PropertyTable(state_dir / PROPERTIES_NAME),
        "middleware_stack": [ErrorPrinter, StreamedPropfind, RequestResolver],
        "http_authenticator": {"domain_controller": None},
        "hotfixes": {"emulate_win32_lastmod": True},
        "honor_mtime_header": True,
        "add_header_MS_Author_Via": True,
        "block_size": BLOCK_SIZE,
        "dir_browser": {"enable": False},
        "verbose": 1,
        "logging": {"enable": False},
    }
    util.public_wsgidav_info = "WsgiDAV"  # no version on error pages (suppress_version_info)
    for known in HTTPStatus:  # WsgiDAV names the statuses it knows, "507 Status" the others
        ERROR_DESCRIPTIONS.setdefault(known.value, f"{known.value} {known.phrase}")
    app = WsgiDAVApp(config)
    table = table if table is not None else LockTable(state_dir / LOCKS_NAME)
    locks = JailedLockManager(LockStorage(table), provider.shown_url)
    app.lock_manager = locks
    for each in app.provider_map.values():
        each.set_lock_manager(locks)
    return DavGate(app, provider.key_of_url, table.drop_principal, table.principals)
