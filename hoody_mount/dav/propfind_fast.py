"""The members of a streamed PROPFIND written from their lstat, one template each.

WsgiDAV builds a resource, a list of properties, an element tree and its text for each
member: 35 µs a file. The common requests (allprop, and ``prop`` naming only live
properties, or dead ones nobody set) ask the same names of every member, so each
``<response>`` is the same text but for a few values. ``Templates`` makes that text
once per kind of member (file, folder) with WsgiDAV's own ``add_property_response``
and serializer, values replaced by markers, and ``Writer`` fills it in for each member
from the listing's lstat: the bytes are those WsgiDAV's property code gives.

A member the template cannot speak for is answered by WsgiDAV's code (``slow``): a
symlink (its target's attributes), a name that is not UTF-8, a member holding dead
properties or locks, a date ``time`` cannot format (WsgiDAV answers 500 for that one
property), any error. ``Templates.build`` returns None for requests it does not cover.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from wsgidav import util, xml_tools
from wsgidav.dav_error import HTTP_NOT_FOUND, DAVError

from ..core.listing import Entry
from ..http_rules import opaque_tag
from .provider import _HREF_SAFE, _UNSHOWABLE, FolderResource

_DAV = "{DAV:}"
# live properties the templates fill in, by kind: a marker, or None for 404
_FILE_VALUES = {
    "creationdate": "ctime",
    "getcontentlength": "size",
    "getcontenttype": "type",
    "getlastmodified": "mtime",
    "getetag": "etag",
    "displayname": "name",
    "quota-used-bytes": None,
    "quota-available-bytes": None,
}
_FOLDER_VALUES = {
    **_FILE_VALUES,
    "getcontentlength": None,
    "getcontenttype": None,
    "getetag": None,
    "quota-used-bytes": "used",
    "quota-available-bytes": "free",
}
_FILE_ALLPROP = [
    "resourcetype", "creationdate", "getcontentlength", "getcontenttype", "getlastmodified",
    "displayname", "getetag", "lockdiscovery", "supportedlock",
]  # fmt: skip
_FOLDER_ALLPROP = [
    "resourcetype", "creationdate", "quota-used-bytes", "quota-available-bytes",
    "getlastmodified", "displayname", "lockdiscovery", "supportedlock",
]  # fmt: skip
_CACHE = 4096  # dates and types kept per request


def _marker(field: str) -> str:
    return f"\x02{field}\x03"


def _template(
    folder: FolderResource, names: list[str], is_folder: bool
) -> tuple[str, frozenset[str]]:
    """The ``<response>`` text of a member of this kind as a %-format, and its fields."""
    values = _FOLDER_VALUES if is_folder else _FILE_VALUES
    props: list[tuple[str, Any]] = []
    fields = {"href"}
    for name in names:
        local = name[len(_DAV) :] if name.startswith(_DAV) else None
        if local == "resourcetype":
            value: Any = ""
            if is_folder:
                value = xml_tools.etree.Element(name)
                xml_tools.etree.SubElement(value, _DAV + "collection")
        elif local == "lockdiscovery":
            value = xml_tools.etree.Element(name)  # (no lock below the folder)
        elif local == "supportedlock":
            value = folder.get_property_value(name)
        elif local is not None and values.get(local) is not None:
            field = str(values[local])
            fields.add(field)
            value = _marker(field)
        else:  # another live property, or a dead one (a member that has one is slow)
            value = DAVError(HTTP_NOT_FOUND)
        props.append((name, value))
    holder = xml_tools.make_multistatus_el()
    util.add_property_response(holder, _marker("href"), props)
    text = str(xml_tools.etree.tostring(holder[0], encoding="unicode")).replace("%", "%%")
    for field in fields:
        text = text.replace(_marker(field), f"%({field})s")
    if "\x02" in text:
        raise ValueError("a marker was escaped")
    return text, frozenset(fields)


def _escape(text: str) -> str:
    """XML text as ElementTree writes it."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


class Templates:
    """The two templates of one request and what the members must not hold."""

    def __init__(self, folder: FolderResource, names: list[str], allprop: bool) -> None:
        files = names or [_DAV + name for name in _FILE_ALLPROP]
        folders = names or [_DAV + name for name in _FOLDER_ALLPROP]
        self.file, self.file_fields = _template(folder, files, False)
        self.folder, self.folder_fields = _template(folder, folders, True)
        self.dead = allprop or any(not name.startswith(_DAV) for name in names)
        self.locks = allprop or _DAV + "lockdiscovery" in names

    @staticmethod
    def build(folder: FolderResource, mode: str, names: list[str]) -> Templates | None:
        """The templates of a request, or None: propname, or names of properties that
        are neither known live ones nor dead ones."""
        if mode == "allprop":
            return Templates(folder, [], True)
        if mode != "named" or not names:
            return None
        for name in names:
            if name.startswith(_DAV):
                if name[len(_DAV) :] not in _FOLDER_VALUES and name[len(_DAV) :] not in (
                    "resourcetype", "lockdiscovery", "supportedlock",
                ):  # fmt: skip
                    return None
            elif not name.startswith("{") or "}" not in name:
                return None
        return Templates(folder, names, False)


def _rfc1123(secs: float) -> str:
    return str(util.get_rfc1123_time(secs))


def _rfc3339(secs: float) -> str:
    return str(util.get_rfc3339_time(secs))


class Writer:
    """Writes the members of one folder: ``write(entry)`` gives one ``<response>``."""

    def __init__(
        self,
        folder: FolderResource,
        templates: Templates,
        keyed: frozenset[str],
        slow: Callable[[Any], str],
    ) -> None:
        self._folder = folder
        self._t = templates
        self._keyed = keyed  # dead-property keys of members (those are slow)
        self._slow = slow
        self._href = folder.get_href()
        self._href = self._href if self._href.endswith("/") else self._href + "/"
        self._key = folder.get_ref_url()
        self._key = self._key if self._key.endswith("/") else self._key + "/"
        self._mtimes: dict[int, str] = {}
        self._ctimes: dict[int, str] = {}
        self._types: dict[str, str] = {}

    def write(self, entry: Entry) -> str:
        """The member's ``<response>`` (empty when it is left out: a symlink that
        leads nowhere)."""
        name = entry.name
        st = entry.stat
        mode = st.st_mode
        if stat.S_ISLNK(mode) or not (name.isascii() or _utf8(name)):
            return self._by_wsgidav(entry)
        is_folder = stat.S_ISDIR(mode)
        if self._keyed and self._member_key(name, is_folder) in self._keyed:
            return self._by_wsgidav(entry)
        try:
            return self._fill(entry, is_folder)
        except Exception:  # (a date out of range…: WsgiDAV's code says what it makes of it)
            return self._by_wsgidav(entry)

    def _fill(self, entry: Entry, is_folder: bool) -> str:
        name = entry.name
        st = entry.stat
        fields = self._t.folder_fields if is_folder else self._t.file_fields
        quoted = name if _plain(name) else quote(name, safe=_HREF_SAFE)
        values: dict[str, Any] = {"href": self._href + quoted + ("/" if is_folder else "")}
        if "name" in fields:
            values["name"] = _escape(_UNSHOWABLE.sub("\ufffd", name))
        if "mtime" in fields:
            values["mtime"] = self._date(st.st_mtime, self._mtimes, _rfc1123, True)
        if "ctime" in fields:
            values["ctime"] = self._date(st.st_ctime, self._ctimes, _rfc3339, False)
        if is_folder:
            if "used" in fields or "free" in fields:
                member = FolderResource(util.join_uri(self._folder.path, name),
                                        self._folder.environ, st)  # fmt: skip
                values["used"] = member.get_used_bytes()
                values["free"] = member.get_available_bytes()
            return self._t.folder % values
        if "size" in fields:
            values["size"] = st.st_size
        if "etag" in fields:
            values["etag"] = opaque_tag(st)
        if "type" in fields:
            values["type"] = self._type(name)
        return self._t.file % values

    def _member_key(self, name: str, is_folder: bool) -> str:
        return self._key + quote(name, errors="surrogateescape") + ("/" if is_folder else "")

    def _by_wsgidav(self, entry: Entry) -> str:
        member = self._folder._member(entry)
        return "" if member is None else self._slow(member)

    def _type(self, name: str) -> str:
        """WsgiDAV's type of a name, which depends on its extensions alone."""
        bare = name.lstrip(".")
        dot = bare.find(".")
        suffix = bare[dot:] if dot >= 0 else ""
        found = self._types.get(suffix)
        if found is None:
            if len(self._types) >= _CACHE:
                self._types.clear()
            found = self._types[suffix] = _escape(str(util.guess_mime_type("/x" + suffix)))
        return found

    @staticmethod
    def _date(secs: float, cache: dict[int, str], fmt: Callable[[float], str], rounds: bool) -> str:
        """A formatted date, cached by its second when the fraction cannot change it
        (RFC 1123 dates round to the microsecond first, RFC 3339 ones floor)."""
        whole = int(secs)
        fraction = secs - whole
        if not (0.0 <= fraction < (0.999999 if rounds else 1.0)):
            return fmt(secs)
        found = cache.get(whole)
        if found is None:
            if len(cache) >= _CACHE:
                cache.clear()
            found = cache[whole] = fmt(secs)
        return found


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789~" + _HREF_SAFE)


def _plain(name: str) -> bool:
    """Whether quoting leaves a name as it is."""
    return name.isascii() and frozenset(name) <= _PLAIN


def _utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def member_keys(folder: FolderResource, limit: int) -> frozenset[str] | None:
    """The dead-property keys below the folder (None: more than ``limit``)."""
    manager = folder.provider.prop_manager
    below = getattr(manager, "keys_below", None)
    if manager is None:
        return frozenset()
    if below is None:
        return None
    key = folder.get_ref_url()
    return below(key if key.endswith("/") else key + "/", limit)  # type: ignore[no-any-return]


def locked_below(folder: FolderResource) -> bool:
    """Whether a lock lies on a member of the folder (or deeper)."""
    manager = folder.provider.lock_manager
    if manager is None:
        return False
    return bool(
        manager.storage.get_lock_list(
            folder.get_ref_url(), include_root=False, include_children=True, token_only=True
        )
    )
