"""PROPFIND Depth 1 of a folder, streamed: one ``<response>`` after the other.

WsgiDAV answers a PROPFIND by building every member's resource, then the whole
multistatus tree, then its bytes, and sends them only then: a folder of 100,000 files
took half a minute before the first byte and most of a gigabyte of memory. This
middleware (in WsgiDAV's own stack, after it has picked the share's provider) answers
the common case itself, with WsgiDAV's own property code for each member: the folder is
read a batch of names at a time, each member's response is made, serialized and
dropped, and the bytes go out in chunks of about 64 KiB. Memory stays the same whatever
the folder's size, and the first bytes leave after the first batch.

Everything else goes on to WsgiDAV unchanged: Depth 0, a file, the root provider.
Conditions (``If``, ``If-Match``, ``If-Modified-Since``…) are evaluated on the folder
as WsgiDAV does, with its own helpers (handing such requests to WsgiDAV let anyone
have a whole folder's answer built in memory: 640 MB for 100,000 files, per request).
A listing that fails part-way ends the connection without the closing tag, so a
client never takes a cut listing for a whole one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from wsgidav import util, xml_tools
from wsgidav.dav_error import (
    HTTP_BAD_REQUEST,
    HTTP_NOT_FOUND,
    HTTP_PRECONDITION_FAILED,
    DAVError,
)
from wsgidav.mw.base_mw import BaseMiddleware

from . import propfind_fast
from .provider import FolderResource, SessionProvider, dav_error

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
CHUNK = 64 << 10
BATCH = 512  # members read and written at a time by the fast writer (~100 KiB of XML)
KEYED_LIMIT = 50_000  # members with dead properties a fast listing looks out for
STREAMED = "hoody.streamed"  # in the environ: the answer goes out chunked, as it is made
_HTTP_CONDITIONS = (
    "HTTP_IF_MATCH",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_UNMODIFIED_SINCE",
)
_OPEN = b'<?xml version="1.0" encoding="utf-8" ?>\n<ns0:multistatus xmlns:ns0="DAV:">'
_CLOSE = b"</ns0:multistatus>"
_ALLPROP = "<D:propfind xmlns:D='DAV:'><D:allprop/></D:propfind>"


def _wanted(environ: dict[str, Any]) -> tuple[str, list[str]]:
    """The PROPFIND body read as WsgiDAV reads it: the mode (allprop, name or named)
    and the property names asked for."""
    body = util.parse_xml_body(environ, allow_empty=True)
    if body is None:
        body = xml_tools.etree.XML(_ALLPROP)
    if body.tag != "{DAV:}propfind":
        raise DAVError(HTTP_BAD_REQUEST, "the body is not a DAV:propfind")
    mode = ""
    names: list[str] = []
    for node in body:
        if node.tag == "{DAV:}allprop":
            kind = "allprop"
        elif node.tag == "{DAV:}name":
            kind = "name"
        elif node.tag == "{DAV:}prop":
            kind = "named"
            names.extend(child.tag for child in node)
        else:
            continue
        if mode and not (mode == kind == "named"):
            raise DAVError(HTTP_BAD_REQUEST, "allprop, propname and prop exclude each other")
        mode = kind
    return mode or "named", names


def _check_conditions(folder: FolderResource, environ: dict[str, Any]) -> None:
    """Raise the DAVError (304 or 412) of a condition the folder fails, as WsgiDAV's
    own evaluation of a request's ``If`` and ``If-*`` headers would."""
    util.parse_if_header_dict(environ)
    modified = folder.get_last_modified()
    last_modified = int(modified) if modified is not None else -1
    etag = "[]"  # a folder has no ETag: WsgiDAV's stand-in, which no If-Match matches
    if any(name in environ for name in _HTTP_CONDITIONS):
        util.evaluate_http_conditionals(folder, last_modified, etag, environ)
    if "HTTP_IF" not in environ:
        return
    ref_url = folder.get_ref_url()
    locks = folder.provider.lock_manager
    tokens = []
    if locks is not None:
        held = locks.get_indirect_url_lock_list(
            ref_url, principal=environ.get("wsgidav.auth.user_name", "anonymous")
        )
        tokens = [lock["token"] for lock in held]
    if not util.test_if_header_dict(
        folder, environ["wsgidav.conditions.if"], ref_url, tokens, etag
    ):
        raise DAVError(HTTP_PRECONDITION_FAILED, "'If' header condition failed.")


def _response(resource: Any, mode: str, names: list[str]) -> bytes:
    """One member's ``<response>``, serialized on its own."""
    if mode == "named":
        properties = resource.get_properties(mode, name_list=names)
    else:
        properties = resource.get_properties(mode)
    holder = xml_tools.make_multistatus_el()
    util.add_property_response(holder, resource.get_href(), properties)
    return str(xml_tools.etree.tostring(holder[0], encoding="unicode")).encode()


def _stream(folder: FolderResource, mode: str, names: list[str]) -> Iterator[bytes]:
    """The multistatus of the folder and its members, in chunks: written from
    templates (``propfind_fast``) when the request allows, else by WsgiDAV's code."""
    writer = _writer(folder, mode, names)
    if writer is not None:
        return _stream_fast(folder, mode, names, writer)
    return _stream_slow(folder, mode, names)


def _writer(folder: FolderResource, mode: str, names: list[str]) -> propfind_fast.Writer | None:
    templates = propfind_fast.Templates.build(folder, mode, names)
    if templates is None:
        return None
    keyed: frozenset[str] | None = frozenset()
    if templates.dead:
        keyed = propfind_fast.member_keys(folder, KEYED_LIMIT)
    if keyed is None or (templates.locks and propfind_fast.locked_below(folder)):
        return None

    def slow(member: Any) -> str:
        return _response(member, mode, names).decode()

    return propfind_fast.Writer(folder, templates, keyed, slow)


def _stream_fast(
    folder: FolderResource, mode: str, names: list[str], writer: propfind_fast.Writer
) -> Iterator[bytes]:
    try:
        listing = folder.session.listdir(folder.path)
    except OSError as exc:
        raise dav_error(exc) from None
    with _stopped(folder):
        try:
            yield _OPEN + _response(folder, mode, names)
            write = writer.write
            while True:
                entries = listing.read(BATCH)
                if not entries:
                    break
                yield "".join([write(entry) for entry in entries]).encode()
        finally:
            listing.close()
        yield _CLOSE


def _stream_slow(folder: FolderResource, mode: str, names: list[str]) -> Iterator[bytes]:
    members = folder.iter_members()
    with _stopped(folder):
        try:
            pending = [_OPEN, _response(folder, mode, names)]
            size = sum(map(len, pending))
            for member in members:
                piece = _response(member, mode, names)
                pending.append(piece)
                size += len(piece)
                if size >= CHUNK:
                    yield b"".join(pending)
                    pending, size = [], 0
            pending.append(_CLOSE)
            yield b"".join(pending)
        finally:
            members.close()


@contextlib.contextmanager
def _stopped(folder: FolderResource) -> Iterator[None]:
    """Log a listing that fails part-way, an OSError as the DAVError it is."""
    try:
        yield
    except OSError as exc:
        log.warning("PROPFIND of %s stopped part-way", folder.path, exc_info=True)
        raise dav_error(exc) from None
    except Exception:
        log.warning("PROPFIND of %s stopped part-way", folder.path, exc_info=True)
        raise  # the server drops the connection: the listing is visibly incomplete


class StreamedPropfind(BaseMiddleware):  # type: ignore[misc]
    """Answers PROPFIND Depth 1 of a folder of the user's share as a stream."""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self._streams(environ):
            return self.next_app(environ, start_response)  # type: ignore[no-any-return]
        provider: SessionProvider = environ["wsgidav.provider"]
        resource = provider.get_resource_inst(environ["PATH_INFO"], environ)
        if resource is None:
            raise DAVError(HTTP_NOT_FOUND, environ["PATH_INFO"])
        if not isinstance(resource, FolderResource):
            return self.next_app(environ, start_response)  # type: ignore[no-any-return]
        _check_conditions(resource, environ)
        mode, names = _wanted(environ)
        chunks = _stream(resource, mode, names)
        first = next(chunks)  # (fails before the status is sent when the folder can't be read)
        environ[STREAMED] = True
        start_response(
            "207 Multi-Status",
            [
                ("Content-Type", "application/xml; charset=utf-8"),
                ("Date", util.get_rfc1123_time()),
            ],
        )
        return _Chained(first, chunks)

    @staticmethod
    def _streams(environ: dict[str, Any]) -> bool:
        return (
            environ.get("REQUEST_METHOD") == "PROPFIND"
            and environ.get("HTTP_DEPTH") == "1"
            and isinstance(environ.get("wsgidav.provider"), SessionProvider)
        )


class _Chained:
    """The first chunk, then the rest; closing it closes the folder (a client that
    leaves mid-listing)."""

    def __init__(self, first: bytes, rest: Iterator[bytes]) -> None:
        self._first: bytes | None = first
        self._rest = rest

    def __iter__(self) -> Iterator[bytes]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._rest

    def close(self) -> None:
        self._rest.close()  # type: ignore[attr-defined]
