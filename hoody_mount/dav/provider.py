"""The WebDAV front: a WsgiDAV provider over the request's core Session.

WsgiDAV parses the protocol; every resource operation here is one Session call, and
every ``OSError`` becomes the matching ``DAVError``. No path handling happens here:
WsgiDAV's share-relative path goes to the session as it is.

Lock and dead-property keys (``get_ref_url``) are the resource's path in the *server*
root (the user's jail prefixed), so two users jailed in different folders never share a
key by accident, and a file shared by two users has one set of locks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import threading
from collections.abc import Generator, Iterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from wsgidav import util
from wsgidav.dav_error import (
    HTTP_BAD_REQUEST,
    HTTP_FORBIDDEN,
    HTTP_LOCKED,
    HTTP_METHOD_NOT_ALLOWED,
    DAVError,
    DAVErrorCondition,
    PRECONDITION_CODE_LockConflict,
)
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider

from ..core import paths
from ..core.atomic_files import AtomicFile
from ..core.listing import Entry
from ..core.open_files import OpenFile, Times
from ..core.read_ahead import SpanReader
from ..core.session import Session
from ..http_names import SESSION, SHOWN_ROOT
from ..http_rules import error_status, http_seconds, opaque_tag
from .properties import PropertyTable

SESSION_KEY = SESSION
AHEAD_FROM = 1 << 20  # reads this big (WsgiDAV's blocks) are read ahead
# environ: (path, stat) of the request's path, which the gate looked up for a GET or HEAD
# a moment before WsgiDAV's own lookup (one lookup of the jail instead of two)
STATED = "hoody.dav.stated"
_HREF_SAFE = "/!*'(),$-_|."  # as WsgiDAV quotes hrefs (Nautilus chokes on %28)
# What no XML text may hold: control characters (but tab, LF, CR) and lone surrogates
# (a file name's bytes that are not UTF-8, as Python decodes them).
_UNSHOWABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def dav_error(exc: OSError) -> DAVError:
    """The DAVError for an OSError of the core, with its message (the status of
    ``http_rules``, as over the file API)."""
    return DAVError(error_status(exc)[0], exc.strerror or str(exc))


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise dav_error(exc) from None


def _has_conditions(environ: dict[str, Any]) -> bool:
    """Whether a request carries conditions (``If``, ``If-Match``…) WsgiDAV evaluates."""
    return any(
        name in environ
        for name in (
            "HTTP_IF",
            "HTTP_IF_MATCH",
            "HTTP_IF_NONE_MATCH",
            "HTTP_IF_MODIFIED_SINCE",
            "HTTP_IF_UNMODIFIED_SINCE",
        )
    )


def _session(environ: dict[str, Any]) -> Session:
    session = environ.get(SESSION_KEY)
    if not isinstance(session, Session):
        raise DAVError(HTTP_FORBIDDEN, "no session")
    return session


class _Reader:
    """A file-like reader over an open file, for GET (with seek for ranges). Reads of
    a block or more go on from where they are, a helper thread reading ahead (see
    ``core/read_ahead.py``) up to ``size``, the file's size when it was opened."""

    def __init__(self, file: OpenFile, size: int) -> None:
        self._file = file
        self._size = size
        self._pos = 0
        self._ahead: SpanReader | None = None
        self._chunks: Iterator[bytes] | None = None
        self._left = b""  # what the last chunk had beyond the last read

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = max(self._file.stat().st_size - self._pos, 0)
        elif self._chunks is None and size >= AHEAD_FROM:
            self._ahead = SpanReader(self._file, self._pos, max(self._size, self._pos), size)
            self._chunks = iter(self._ahead)
        if self._chunks is None:
            data = self._file.read(self._pos, size)
        else:
            if not self._left:
                self._left = next(self._chunks, b"")
            data, self._left = self._left[:size], self._left[size:]
        self._pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        pos = pos if whence == 0 else self._pos + pos
        if pos != self._pos:
            self._stop_ahead()
        self._pos = pos
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _stop_ahead(self) -> None:
        ahead, self._ahead, self._chunks, self._left = self._ahead, None, None, b""
        if ahead is not None:
            ahead.close()

    def close(self) -> None:
        try:
            self._stop_ahead()
        finally:
            self._file.close()


class _Writer:
    """The body of a PUT, written into an atomic upload."""

    def __init__(self, upload: AtomicFile) -> None:
        self._upload = upload

    def write(self, data: bytes) -> None:
        with _mapped():
            self._upload.write(data)

    def close(self) -> None:
        """Nothing yet: the upload is committed by ``end_write`` once WsgiDAV is done."""


class _Common:
    """What files and folders share: stat-based live properties and lock keys."""

    path: str
    environ: dict[str, Any]
    provider: DAVProvider
    st: os.stat_result
    via_link = False  # listed as a member through a symlink: a tree walk stops here

    def _copy_link(self, dest_path: str) -> None:
        """Copy the symlink itself (what it leads to stays where it is)."""
        with _mapped():
            with contextlib.suppress(FileNotFoundError):
                self.session.remove_tree(dest_path)
            self.session.copy_tree(self.path, dest_path)
        self._copy_props(dest_path)

    @property
    def session(self) -> Session:
        return _session(self.environ)

    def set_property_value(self, name: str, value: Any, *, dry_run: bool = False) -> None:
        """WsgiDAV stores a dead property; the change gets its audit line like any other
        (and meets the locks where a link leads, which WsgiDAV does not see)."""
        with _mapped():
            self.session.may_change(self.path)
        super().set_property_value(name, value, dry_run=dry_run)  # type: ignore[misc]
        if not dry_run:
            how = "removed" if value is None else "set"
            shown = name if len(name) <= 200 else name[:200] + "…"  # (a line, not a page)
            self.session.changed("proppatch", self.path, f" property={shown} ({how})")

    def get_creation_date(self) -> float:
        return http_seconds(self.st.st_ctime)

    def get_last_modified(self) -> float:
        return http_seconds(self.st.st_mtime)

    def get_display_name(self) -> str:
        """The name, as XML can carry it: bytes that are not UTF-8 on the disk and control
        characters (which no XML document may hold) are shown as U+FFFD."""
        name = paths.split(paths.normalize(self.path))[1]
        return _UNSHOWABLE.sub("\ufffd", name)

    def get_href(self) -> str:
        """WsgiDAV's href, with a name's bytes that are not UTF-8 quoted as they are
        (under a share link's root, ``SHOWN_ROOT``, for a request made through one)."""
        root = self.environ.get(SHOWN_ROOT)
        root = root or self.provider.mount_path + self.provider.share_path
        whole = root + self.get_preferred_path()  # type: ignore[attr-defined]
        return quote(whole, safe=_HREF_SAFE, errors="surrogateescape")

    def get_ref_url(self) -> str:
        preferred = self.get_preferred_path()  # type: ignore[attr-defined]
        return _key(self.provider.share_path, self.session.in_root(preferred))

    def set_last_modified(self, dest_path: str, time_stamp: Any, *, dry_run: bool) -> bool:
        secs = time_stamp if isinstance(time_stamp, int) else util.parse_time_string(time_stamp)
        if secs is None:
            raise DAVError(HTTP_BAD_REQUEST, "unreadable time stamp")
        if not dry_run:
            with _mapped():
                self.session.set_attrs(dest_path, times=Times(secs * 10**9, secs * 10**9))
        return True

    def _move_props(self, dest_path: str, with_children: bool) -> None:
        manager = self.provider.prop_manager
        if manager:
            dest = self.provider.get_resource_inst(dest_path, self.environ)
            if dest is not None:
                manager.move_properties(
                    self.get_ref_url(),
                    dest.get_ref_url(),
                    with_children=with_children,
                    environ=self.environ,
                )

    def _copy_props(self, dest_path: str) -> None:
        manager = self.provider.prop_manager
        if manager:
            dest = self.provider.get_resource_inst(dest_path, self.environ)
            if dest is not None:
                manager.copy_properties(self.get_ref_url(), dest.get_ref_url(), self.environ)

    def support_recursive_move(self, dest_path: str) -> bool:
        return True

    def move_recursive(self, dest_path: str) -> list[Any]:
        with _mapped():
            self.session.rename(self.path, dest_path, replace=False)
        manager = self.provider.prop_manager
        if manager:
            dest = self.session.in_root(dest_path)
            if self.st and stat.S_ISDIR(self.st.st_mode):
                dest += "/"
            manager.move_properties(
                self.get_ref_url(),
                _key(self.provider.share_path, dest),
                with_children=True,
                environ=self.environ,
            )
        return []


class FileResource(_Common, DAVNonCollection):  # type: ignore[misc]
    """A regular file (or any non-folder) of the user's jail."""

    def __init__(self, path: str, environ: dict[str, Any], st: os.stat_result | None) -> None:
        DAVNonCollection.__init__(self, path, environ)
        self.st = st  # type: ignore[assignment]  # None: a PUT target not on disk yet
        self._upload: AtomicFile | None = None

    def get_content_length(self) -> int | None:
        return self.st.st_size if self.st else 0

    def get_content_type(self) -> str:
        return str(util.guess_mime_type(self.path))

    def get_creation_date(self) -> float | None:  # type: ignore[override]
        return http_seconds(self.st.st_ctime) if self.st else None

    def get_last_modified(self) -> float | None:  # type: ignore[override]
        return http_seconds(self.st.st_mtime) if self.st else None

    def get_etag(self) -> str | None:
        if not self.st:
            return None
        return opaque_tag(self.st)

    def support_etag(self) -> bool:
        return True

    def support_ranges(self) -> bool:
        return True

    def get_content(self) -> _Reader:
        with _mapped():
            return _Reader(
                self.session.open(self.path, os.O_RDONLY), self.get_content_length() or 0
            )

    def begin_write(self, *, content_type: str | None = None) -> _Writer:
        with _mapped():
            self._upload = self.session.upload(self.path)
        return _Writer(self._upload)

    def end_write(self, *, with_errors: bool) -> None:
        upload, self._upload = self._upload, None
        if upload is None:
            return
        expected = str(self.environ.get("CONTENT_LENGTH") or "")
        if not with_errors and expected.isdigit() and upload.size != int(expected):
            upload.abort()  # the client went away before the whole body arrived
            raise DAVError(HTTP_BAD_REQUEST, "the body ended before Content-Length")
        if with_errors:
            upload.abort()
            return
        with _mapped():
            upload.commit()
            self.st = upload.placed or self.session.stat(self.path)

    def delete(self) -> None:
        with _mapped():
            self.session.remove(self.path)
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def handle_copy(self, dest_path: str, *, depth_infinity: bool) -> bool:
        """A COPY over an existing file: one atomic replace by the core, which keeps the
        old file's owner (WsgiDAV deleted it first, so the copy became the server's). Its
        dead properties give way to the source's; a lock on it stays (RFC 4918, 7.6).
        (WsgiDAV answers a handled COPY 204, right as the destination existed.)"""
        if self.via_link:
            return False
        with _mapped():
            try:
                target = self.session.stat(dest_path, follow=False)
            except FileNotFoundError:
                return False
            if not stat.S_ISREG(target.st_mode):
                return False
            self.session.copy_file(self.path, dest_path)
        manager = self.provider.prop_manager
        dest = self.provider.get_resource_inst(dest_path, self.environ)
        if manager and dest is not None:
            manager.remove_properties(dest.get_ref_url(), self.environ)
        self._copy_props(dest_path)
        return True

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        if self.via_link:
            self._copy_link(dest_path)
            return
        with _mapped():
            self.session.copy_file(self.path, dest_path)
        if is_move:
            self._move_props(dest_path, with_children=False)
        else:
            self._copy_props(dest_path)


class FolderResource(_Common, DAVCollection):  # type: ignore[misc]
    """A folder of the user's jail."""

    def __init__(self, path: str, environ: dict[str, Any], st: os.stat_result) -> None:
        DAVCollection.__init__(self, path, environ)
        self.st = st

    def get_etag(self) -> None:
        return None

    def support_etag(self) -> bool:
        return False

    def get_used_bytes(self) -> int:
        with _mapped():
            c = self.session.capacity(self.path)
        return (c.blocks - c.bfree) * c.frsize

    def get_available_bytes(self) -> int:
        with _mapped():
            c = self.session.capacity(self.path)
        return c.bavail * c.frsize

    def get_member_names(self) -> list[str]:
        return [member.name for member in self.get_member_list()]

    def get_member(self, name: str) -> Any:
        return self.provider.get_resource_inst(util.join_uri(self.path, name), self.environ)

    def get_member_list(self) -> list[FileResource | FolderResource]:
        """The members, with the attributes read while listing (one stat each, relative
        to the folder, instead of a second lookup of every path). A symlink is followed
        in the jail; one that leads nowhere, into a loop or into the server's state
        folder is left out, as its path cannot be reached either (WsgiDAV's default
        failed the whole PROPFIND on it)."""
        return list(self.iter_members())

    def iter_members(
        self, batch: int = 256
    ) -> Generator[FileResource | FolderResource, None, None]:
        """The members one at a time, read from the disk ``batch`` names at a time (a
        streamed listing holds one batch, whatever the folder's size); the folder is
        closed at the end or when the iterator is closed."""
        with _mapped():
            listing = self.session.listdir(self.path)
        try:
            while True:
                with _mapped():
                    entries = listing.read(batch)
                if not entries:
                    return
                for entry in entries:
                    with _mapped():
                        member = self._member(entry)
                    if member is not None:
                        yield member
        finally:
            listing.close()

    def _member(self, entry: Entry) -> FileResource | FolderResource | None:
        path = util.join_uri(self.path, entry.name)
        if stat.S_ISLNK(entry.stat.st_mode):
            member: FileResource | FolderResource | None
            try:
                member = self.provider.get_resource_inst(path, self.environ)
            except DAVError as exc:
                if exc.value != HTTP_FORBIDDEN:
                    raise
                return None  # it leads into the server's own state folder
            if member is not None:
                member.via_link = True
            return member
        if stat.S_ISDIR(entry.stat.st_mode):
            return FolderResource(path, self.environ, entry.stat)
        return FileResource(path, self.environ, entry.stat)

    def create_empty_resource(self, name: str) -> FileResource:
        path = util.join_uri(self.path, name)
        if self.environ.get("REQUEST_METHOD") == "PUT":
            return FileResource(path, self.environ, None)  # written by begin/end_write
        with _mapped():
            self.session.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666).close()
            return FileResource(path, self.environ, self.session.stat(path))

    def create_collection(self, name: str) -> None:
        try:
            self.session.mkdir(util.join_uri(self.path, name))
        except FileExistsError as exc:  # (made since WsgiDAV looked): RFC 4918 §9.3.1
            raise DAVError(HTTP_METHOD_NOT_ALLOWED, exc.strerror) from None
        except OSError as exc:
            raise dav_error(exc) from None

    def support_recursive_delete(self) -> bool:
        return True

    def handle_delete(self) -> bool:
        """DELETE of the whole folder at once, refused (423) while a lock on it, above it
        or in its tree is not held by the request (its token submitted by its owner).
        WsgiDAV's member-by-member fallback lost track of a locked member when the URL
        had no trailing slash, and removed it with its folder."""
        manager = self.provider.lock_manager
        if manager is not None:
            if "wsgidav.conditions.if" not in self.environ:
                util.parse_if_header_dict(self.environ)
            tokens = self.environ["wsgidav.ifLockTokenList"]
            principal = self.environ["wsgidav.user_name"]
            url = self.get_ref_url()
            manager.check_write_permission(
                url=url, depth="0", token_list=tokens, principal=principal
            )
            conflicts = DAVErrorCondition(PRECONDITION_CODE_LockConflict)
            for held in manager.storage.get_lock_list(
                url, include_root=False, include_children=True, token_only=False
            ):
                if held["principal"] != principal or held["token"] not in tokens:
                    conflicts.add_href(held["root"])
            if conflicts.hrefs:
                raise DAVError(HTTP_LOCKED, err_condition=conflicts)
        self.delete()
        return True

    def get_descendants(
        self,
        *,
        collections: bool = True,
        resources: bool = True,
        depth_first: bool = False,
        depth: str = "infinity",
        add_self: bool = False,
    ) -> list[FileResource | FolderResource]:
        """WsgiDAV's walk (parents first, or children first with ``depth_first``), without
        recursion and never below a folder listed through a symlink: a link is copied,
        moved or deleted as a link. WsgiDAV's own walk followed links, so a COPY could
        delete files outside its destination, and a link loop made it grow without end.

        In a COPY there is no walk: the folder is copied in one call of the core (see
        ``_copy_whole``), so WsgiDAV is given nothing below the source, nor below a
        destination it would merge into. Nor in a MOVE without conditions: it is one
        rename (``move_recursive``), and WsgiDAV walks the tree only to evaluate the
        request's conditions on every member (by full paths: quadratic in the depth,
        9 s for 2,000 levels, and ENAMETOOLONG beyond PATH_MAX)."""
        method = self.environ.get("REQUEST_METHOD")
        if method == "COPY" or (method == "MOVE" and not _has_conditions(self.environ)):
            return [self] if add_self else []

        def wanted(res: FileResource | FolderResource) -> bool:
            return collections if res.is_collection else resources

        found: list[FileResource | FolderResource] = [self] if add_self and not depth_first else []
        if depth != "0":
            stack = [(self, iter(self.get_member_list()))]
            while stack:
                folder, members = stack[-1]
                child = next(members, None)
                if child is None:
                    stack.pop()
                    if depth_first and folder is not self and wanted(folder):
                        found.append(folder)
                    continue
                if wanted(child) and not depth_first:
                    found.append(child)
                if isinstance(child, FolderResource) and depth == "infinity" and not child.via_link:
                    stack.append((child, iter(child.get_member_list())))
                elif wanted(child) and depth_first:
                    found.append(child)
        if add_self and depth_first:
            found.append(self)
        return found

    def delete(self) -> None:
        with _mapped():
            self.session.remove_tree(self.path)
        self.remove_all_properties(recursive=True)
        self.remove_all_locks(recursive=True)

    def copy_move_single(self, dest_path: str, *, is_move: bool) -> None:
        if self.via_link:
            self._copy_link(dest_path)
            return
        if not is_move:
            self._copy_whole(dest_path)
            return
        with _mapped():
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISDIR(self.session.stat(dest_path, follow=False).st_mode):
                    self.session.remove(dest_path)  # a link or a file there: never gone through
            with contextlib.suppress(FileExistsError):
                self.session.mkdir(dest_path, stat.S_IMODE(self.st.st_mode))
            times = Times(self.st.st_atime_ns, self.st.st_mtime_ns)
            self.session.set_attrs(dest_path, times=times)
        self._move_props(dest_path, with_children=False)

    def _copy_whole(self, dest_path: str) -> None:
        """A COPY of this folder, one call of the core: with Depth infinity the whole tree
        (``Session.copy_tree``: linear in its size and depth, at any depth, one audit
        line), with Depth 0 the folder alone. WsgiDAV copied the tree member by member by
        full path (quadratic in the depth, and beyond PATH_MAX not at all), also for
        Depth 0. A destination it left in place (a folder, which it would have merged
        into) is replaced, as RFC 4918 (9.8.4) asks: removed first, with its members'
        locks and the dead properties of the tree; its own lock stays (7.6)."""
        session = self.session
        whole = self.environ.get("HTTP_DEPTH", "infinity") == "infinity"
        dest_url = self._folder_url(dest_path)
        replaced = False
        with _mapped():
            with contextlib.suppress(FileNotFoundError):
                session.stat(dest_path, follow=False)
                replaced = True
            if replaced:
                if paths.is_within(session.path(self.path), session.path(dest_path)):
                    raise DAVError(HTTP_FORBIDDEN, "Cannot copy a folder over one that holds it")
                session.remove_tree(dest_path)
            if whole:
                session.copy_tree(self.path, dest_path)
            else:
                session.mkdir(dest_path, stat.S_IMODE(self.st.st_mode))
                times = Times(self.st.st_atime_ns, self.st.st_mtime_ns)
                session.set_attrs(dest_path, times=times)
        locks = self.provider.lock_manager
        if replaced and locks is not None:
            for held in locks.storage.get_lock_list(
                dest_url, include_root=False, include_children=True, token_only=False
            ):
                locks.release(held["token"])
        self._copy_tree_props(dest_url, whole, replaced)

    def _folder_url(self, path: str) -> str:
        """The lock and property key of the folder ``path`` (as ``get_ref_url`` makes it)."""
        return _key(self.provider.share_path, self.session.in_root(path).rstrip("/") + "/")

    def _copy_tree_props(self, dest_url: str, whole: bool, replaced: bool) -> None:
        """The dead properties of a COPY of this folder, in one pass over the property
        store, whose keys are the resources' paths: those of a ``replaced`` destination
        tree are dropped, and those of the folder (``whole``: and of everything below it)
        are copied to the copy, for members it holds (FIFOs and sockets are not copied).
        A store whose keys cannot be listed gets the folder's own properties only."""
        manager = self.provider.prop_manager
        if not manager:
            return
        src_url = self.get_ref_url()
        if not isinstance(manager, PropertyTable):
            if replaced:
                manager.remove_properties(dest_url, self.environ)
            manager.copy_properties(src_url, dest_url, self.environ)
            return
        manager.copy_tree(src_url, dest_url, whole, replaced, self._holds)

    def _holds(self, url: str) -> bool:
        """Whether the resource of a lock or property key exists (a link counts)."""
        try:
            self.session.stat(self.provider.ref_url_to_path(url), follow=False)
        except OSError:
            return False
        return True


def _key(share_path: str, server_path: str) -> str:
    """A lock and dead-property key: the resource's path in the served root, quoted
    (bytes of a name that are not UTF-8 as they are)."""
    return quote(share_path + server_path, errors="surrogateescape")


class SessionProvider(DAVProvider):  # type: ignore[misc]
    """Resources of the requesting user's jail, through their Session."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def is_readonly(self) -> bool:
        return False

    def get_resource_inst(self, path: str, environ: dict[str, Any]) -> Any:
        session = _session(environ)
        self._local.session = session
        stated = environ.get(STATED)
        try:
            if stated is not None and stated[0] == path:
                del environ[STATED]  # (the gate's stat of this request's path, used once)
                st = stated[1]
            else:
                st = session.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise dav_error(exc) from None
        if stat.S_ISDIR(st.st_mode):
            return FolderResource(path, environ, st)
        # (a Destination may end in '/', see gate.exact_destination: a file's path never
        # does, or its locks and properties would be looked up under another key)
        return FileResource(path.rstrip("/") or "/", environ, st)

    def shown_url(self, ref_url: str) -> str:
        """The URL the requesting user knows a lock key's resource by (see
        ``ref_url_to_path``)."""
        path = self.ref_url_to_path(ref_url)
        return quote(self.share_path + path, safe=_HREF_SAFE, errors="surrogateescape")

    def key_of_url(self, url: str, session: Session) -> str | None:
        """The lock key of the resource a URL of ``session``'s user names (an ``If``
        header's tag), or None for one outside the share."""
        path = unquote(urlsplit(url).path, errors="surrogateescape")
        if path != self.share_path and not path.startswith(self.share_path + "/"):
            return None
        return _key(self.share_path, session.in_root(path[len(self.share_path) :] or "/"))

    def ref_url_to_path(self, ref_url: str) -> str:
        """The requesting user's path of a lock or property key. A key above their jail
        (a lock an administrator took on a folder that holds it) is shown as the jail's
        top, the nearest folder the user can see."""
        relative = unquote(ref_url.removeprefix(self.share_path), errors="surrogateescape")
        path = "/" + relative.lstrip("/")
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            return path
        return session.in_jail(path) or "/"
