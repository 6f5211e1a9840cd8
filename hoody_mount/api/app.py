"""The HTTP file API at /api/v1/files/<path>: read, write, list, digest, move, copy, delete.

A thin front over the request's Session (opened by the web listener): it decodes the
URL into the client's path, calls the session and turns ``OSError`` into JSON errors.
Downloads stream in 1 MiB blocks with a ``Repr-Digest`` (RFC 9530); uploads stream into
an atomic upload and are checked against an expected digest before they replace anything.
A request that changes something must come from the server's own origin (``origin.py``).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from .. import http_rules
from ..core import paths
from ..core.digests import DigestCache
from ..core.open_files import OpenFile
from ..core.session import Session
from ..core.user_slots import UserSlots
from ..http_names import (
    CLIENT_GONE,
    FILES_ROOT,
    LOCKS_ROOT,
    OPERATION,
    SESSION,
    SHOWN_ROOT,
    STORAGE_ROOT,
)
from ..http_rules import status_line
from . import locks, origin, snapshots, storage, zips
from .bodies import received
from .downloads import send_file
from .errors import ApiError, from_os_error
from .listings import list_html, list_json
from .replies import Body, Headers, digest_header, json_reply, json_text, read_json
from .viewers import Place, viewer_of

PREFIX = FILES_ROOT
ALLOW = "GET, HEAD, PUT, POST, DELETE"
PARTIAL_DIGEST_LIMIT = 16 << 20  # a ranged GET of a bigger file sends a digest only if known
DIGESTS_PER_USER = 2  # whole-file digests one user may have computed at once
DIGEST_RETRY_AFTER = 5  # seconds
ZIPS_PER_USER = 2  # zips one user may have being sent at once

StartResponse = Callable[..., Any]


def _expected_digest(environ: dict[str, Any]) -> bytes | None:
    """The SHA-256 a client expects for its upload, from Content-/Repr-Digest or X-Expected."""
    hex_value = environ.get("HTTP_X_EXPECTED_SHA256")
    if hex_value is not None:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", hex_value.strip()):
            raise ApiError(400, "bad_digest", "X-Expected-SHA256 must be 64 hex digits")
        return bytes.fromhex(hex_value.strip())
    for key in ("HTTP_CONTENT_DIGEST", "HTTP_REPR_DIGEST"):
        header = environ.get(key)
        if header is None:
            continue
        match = re.search(r"(?:^|,)\s*sha-256\s*=\s*:([A-Za-z0-9+/=]+):", header)
        if match is None:
            name = key[5:].replace("_", "-").title()
            raise ApiError(400, "bad_digest", f"{name} has no sha-256 value")
        try:
            digest = base64.b64decode(match.group(1), validate=True)
        except binascii.Error:
            raise ApiError(400, "bad_digest", "sha-256 digest is not valid base64") from None
        if len(digest) != 32:
            raise ApiError(400, "bad_digest", "sha-256 digest must be 32 bytes")
        return digest
    return None


class FilesAPI:
    """The WSGI application of /api/v1/files."""

    def __init__(
        self,
        digests: DigestCache,
        digests_per_user: int = DIGESTS_PER_USER,
        du_seconds: float = storage.DU_SECONDS,
        place: Place | None = None,
    ) -> None:
        self.place = place or Place()
        self.digests = digests
        self.du_seconds = du_seconds
        self.digest_slots = UserSlots(digests_per_user)
        self.zip_slots = UserSlots(ZIPS_PER_USER)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, headers, body = self._dispatch(environ)
        except ApiError as exc:
            data = {"error": exc.code, "message": exc.message}
            status, headers, body = json_reply(exc.status, data, exc.headers)
            if exc.status == 405:
                headers.append(("Allow", ALLOW))
        except OSError as exc:
            err = from_os_error(exc)
            status, headers, body = json_reply(
                err.status, {"error": err.code, "message": err.message}
            )
        start_response(status, headers)
        if environ["REQUEST_METHOD"] == "HEAD":
            if not isinstance(body, bytes):
                body.close()
            return [b""]
        return [body] if isinstance(body, bytes) else body

    def _dispatch(self, environ: dict[str, Any]) -> tuple[str, Headers, Body]:
        session: Session = environ[SESSION]
        raw = str(environ.get("PATH_INFO", ""))
        query = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
        session.lock_tokens = locks.tokens_of(environ)
        if raw == STORAGE_ROOT:
            return storage.answer(environ, session, query, self.du_seconds)
        if raw == LOCKS_ROOT or raw.startswith(LOCKS_ROOT + "/"):
            environ[OPERATION] = "lock"
            if environ["REQUEST_METHOD"] not in origin.SAFE_METHODS:
                origin.check(environ)
            return locks.admin(environ, session)
        if not (raw == PREFIX or raw.startswith(PREFIX + "/")):
            raise ApiError(404, "not_found", "unknown endpoint")
        path = os.fsdecode(raw[len(PREFIX) :].encode("latin-1")) or "/"
        method = environ["REQUEST_METHOD"]
        if method not in origin.SAFE_METHODS:
            origin.check(environ)
        if method in ("GET", "HEAD", "PUT", "DELETE"):
            _check_preconditions(environ, session, path, write=method in ("PUT", "DELETE"))
        if "lock" in query and method in ("POST", "DELETE"):
            environ[OPERATION] = "lock"
            return locks.answer(environ, session, path, query)
        try:
            if method in ("GET", "HEAD"):
                return self._get(environ, session, path, query)
            if method == "DELETE":
                return self._delete(session, path, query)
        except NotADirectoryError:  # (a name below a file: none there, as over WebDAV)
            raise ApiError(404, "not_found", f"no such file: {session.path(path)}") from None
        if method == "PUT" and "restore" in query:
            environ[OPERATION] = "restore"
            return snapshots.restore(environ, session, path, _expected_digest(environ))
        if method == "PUT":
            return self._put(environ, session, path)
        if method == "POST":
            return self._post(environ, session, path, query)
        raise ApiError(405, "method_not_allowed", f"{method} is not supported here")

    # -- reading ---------------------------------------------------------------------------

    def _get(
        self, environ: dict[str, Any], session: Session, path: str, query: dict[str, list[str]]
    ) -> tuple[str, Headers, Body]:
        if "zip" in query:
            environ[OPERATION] = "zip"
            return self._zip(environ, session, path)
        if "snapshot" in query:
            environ[OPERATION] = "snapshot"
            return snapshots.snapshot(session, path)
        if "sha256" in query:
            environ[OPERATION] = "digest"
        st = session.stat(path)
        if stat.S_ISDIR(st.st_mode):
            environ[OPERATION] = "list"
            if "sha256" in query:
                raise ApiError(400, "is_a_directory", "a folder has no digest")
            accept = str(environ.get("HTTP_ACCEPT", ""))
            if "json" in query or ("application/json" in accept and "text/html" not in accept):
                return list_json(session, path, query, environ.get(SHOWN_ROOT, PREFIX))
            viewer = viewer_of(environ, session.user, self.place)
            return list_html(session, path, query, environ.get(SHOWN_ROOT, PREFIX), viewer)
        file = session.open(path, os.O_RDONLY)
        try:
            st = file.stat()
            if "sha256" in query and "progress" in query:
                # (how far a digest being computed has come: the page shows it as a bar)
                file.close()
                known = self.digests.known(st)
                return json_reply(
                    200,
                    {
                        "path": json_text(session.path(path)),
                        "size": st.st_size,
                        "hashed": st.st_size if known else self.digests.progress(st),
                        "sha256": known.hex() if known else None,
                    },
                )
            if "sha256" in query:
                digest = self._digest(environ, session, file, explicit=True)
                assert digest is not None
                file.close()
                return json_reply(
                    200,
                    {
                        "path": json_text(session.path(path)),
                        "size": st.st_size,
                        "sha256": digest.hex(),
                    },
                    [("Repr-Digest", digest_header(digest))],
                )
            partial = environ.get("HTTP_RANGE") or http_rules.not_modified(environ, st)
            if partial and st.st_size > PARTIAL_DIGEST_LIMIT:
                digest = self.digests.known(st)  # (a part of a big file: no hash of the whole)
            else:
                digest = self._digest(environ, session, file, explicit=False)
            return send_file(environ, file, path, st, digest)
        except BaseException:
            file.close()
            raise

    def _zip(
        self, environ: dict[str, Any], session: Session, path: str
    ) -> tuple[str, Headers, Body]:
        """``?zip``, on one of the user's zip slots: each archive holds its index in
        memory until it ends (see ``zips``), so a user makes few at once."""
        user = session.user.name
        if not self.zip_slots.take(user):
            raise ApiError(
                503,
                "busy",
                f"you already have {self.zip_slots.per_user} zips being sent; "
                "try again when one ends",
                [("Retry-After", str(DIGEST_RETRY_AFTER))],
            )
        try:
            return zips.answer(environ, session, path, lambda: self.zip_slots.give_back(user))
        except BaseException:
            self.zip_slots.give_back(user)
            raise

    def _digest(
        self, environ: dict[str, Any], session: Session, file: OpenFile, explicit: bool
    ) -> bytes | None:
        """The file's SHA-256: known, or computed on one of the user's digest slots
        (stopped if the client goes). With all of them taken, a download goes without
        (None) and an explicit ``?sha256`` is 503 (see ``core.user_slots``)."""
        known = self.digests.known(file.stat())
        if known is not None:
            return known
        user = session.user.name
        if not self.digest_slots.take(user):
            if not explicit:
                return None
            raise ApiError(
                503,
                "busy",
                f"you already have {self.digest_slots.per_user} digests being computed; "
                "try again when one ends",
                [("Retry-After", str(DIGEST_RETRY_AFTER))],
            )
        try:
            return self.digests.sha256(file, environ.get(CLIENT_GONE))
        finally:
            self.digest_slots.give_back(user)

    # -- writing ---------------------------------------------------------------------------

    def _put(
        self, environ: dict[str, Any], session: Session, path: str
    ) -> tuple[str, Headers, bytes]:
        expected = _expected_digest(environ)
        length_text = str(environ.get("CONTENT_LENGTH") or "")
        chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
        if not length_text and not chunked:
            raise ApiError(411, "length_required", "send Content-Length or a chunked body")
        if length_text and not length_text.isdigit():
            raise ApiError(400, "bad_request", "Content-Length is not a number")
        try:
            existed = not stat.S_ISDIR(session.stat(path).st_mode)
        except FileNotFoundError:
            existed = False
        try:
            upload = session.upload(path)
        except FileNotFoundError:
            raise ApiError(409, "no_parent", "the parent folder does not exist") from None
        try:
            digest = received(environ, upload.write, expected)
        except BaseException:
            upload.abort()
            raise
        _check_preconditions(environ, session, path, write=True)  # again: it may have changed
        try:
            upload.commit(replace=not http_rules.creates_only(environ), digest=digest)
        except FileExistsError:
            raise ApiError(412, "precondition_failed", "If-None-Match: the file exists") from None
        st = upload.placed or session.stat(path)
        self.digests.remember(st, digest)
        data = {"path": json_text(session.path(path)), "size": st.st_size, "sha256": digest.hex()}
        extra = [("Repr-Digest", digest_header(digest)), ("ETag", http_rules.entity_tag(st))]
        return json_reply(200 if existed else 201, data, extra)

    def _post(
        self,
        environ: dict[str, Any],
        session: Session,
        path: str,
        query: dict[str, list[str]],
    ) -> tuple[str, Headers, bytes]:
        kind = _media_type(environ)
        if "mkdir" in query:
            environ[OPERATION] = "mkdir"
            if kind in origin.FORM_TYPES:
                raise ApiError(415, "unsupported_media_type", f"?mkdir takes no body (got {kind})")
            try:
                session.mkdir(path)
            except FileNotFoundError:
                raise ApiError(409, "no_parent", "the parent folder does not exist") from None
            return json_reply(201, {"path": json_text(session.path(path)), "type": "directory"})
        if kind != "application/json":
            raise ApiError(
                415,
                "unsupported_media_type",
                "send the action as JSON with Content-Type: application/json"
                + (f" (got {kind})" if kind else ""),
            )
        request = read_json(environ, 'send {"action": "move"|"copy", "to": "<path>"}')
        action, target = request.get("action"), request.get("to")
        overwrite = request.get("overwrite", False)
        if action not in ("move", "copy"):
            raise ApiError(400, "bad_request", 'action must be "move" or "copy"')
        environ[OPERATION] = action
        if not isinstance(target, str) or not target:
            raise ApiError(400, "bad_request", '"to" must be a path')
        if not isinstance(overwrite, bool):
            raise ApiError(400, "bad_request", '"overwrite" must be true or false')
        if target.endswith("/") and not stat.S_ISDIR(session.stat(path, follow=False).st_mode):
            raise ApiError(400, "not_a_directory", '"to" ends with "/": the source is no folder')
        session.check("rename" if action == "move" else "copy", path)  # (before any lookup)
        if overwrite:  # (rename(2) onto a hard link of the source would do nothing)
            session.check_replace(path, target)
        try:
            if action == "move":
                session.rename(path, target, replace=overwrite)
            elif overwrite and stat.S_ISREG(session.stat(path, follow=False).st_mode):
                session.copy_file(path, target)
            else:
                session.copy_tree(path, target)
        except FileNotFoundError as exc:
            missing = exc.filename
            if not isinstance(missing, str) or not paths.is_within(session.path(target), missing):
                raise
            raise ApiError(409, "no_parent", "the destination's folder does not exist") from None
        return json_reply(200, {"path": json_text(session.path(target)), "action": action})

    @staticmethod
    def _delete(
        session: Session, path: str, query: dict[str, list[str]]
    ) -> tuple[str, Headers, bytes]:
        session.check("remove", path)  # (before the lookup: a reader learns nothing here)
        st = session.stat(path, follow=False)
        if not stat.S_ISDIR(st.st_mode):
            session.remove(path)
        elif "recursive" in query:
            session.remove_tree(path)
        else:
            session.rmdir(path)
        return status_line(204), [("Content-Length", "0")], b""


def _media_type(environ: dict[str, Any]) -> str:
    """The request body's media type, lower case and without parameters ("" if none)."""
    return str(environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()


def _check_preconditions(environ: dict[str, Any], session: Session, path: str, write: bool) -> None:
    """The conditions of ``http_rules`` (RFC 9110 §13): 412 when one fails, before
    anything is read or changed."""
    if not http_rules.has_preconditions(environ, write):
        return
    try:
        st: os.stat_result | None = session.stat(path)
    except FileNotFoundError:
        st = None
    why = http_rules.precondition_failure(environ, st, write)
    if why is not None:
        raise ApiError(412, "precondition_failed", why)
