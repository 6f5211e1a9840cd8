"""The HTML page of a folder, for people: a header with the user and the capacity of
the folder's filesystem, breadcrumbs, a filter, sortable columns, type icons, and the
actions of ``assets/files.js`` (folders, renames, moves, deletes, uploads with progress,
digests, zips, previews, the Mount panel).

Every name is escaped for HTML and quoted for URLs. The page loads nothing from
elsewhere; its script and style carry a per-response nonce named in the CSP. Previews
show files through ``<img>``, ``<video>``, ``<audio>`` and ``<iframe>`` from the file
API, whose answers keep active types (HTML, SVG, XML) sandboxed as attachments, and
text through ``textContent``: no uploaded content runs in the page's origin.
"""

from __future__ import annotations

import html
import mimetypes
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

from ..assets import FILES_CSS, FILES_JS
from ..core.filesystems import Usage
from ..core.listing import Entry
from ..http_names import FILES_ROOT
from ..mount_commands import System

PREFIX = FILES_ROOT
SORT_KEYS = ("name", "size", "mtime")
SORT_LIMIT = 5000  # a folder with more names is shown in its own order, as it is read

_STYLE, _SCRIPT = FILES_CSS, FILES_JS

# Line icons, drawn once and used by each row (24×24, stroked).
_ICONS = {
    "dir": '<path d="M3 6.5A1.5 1.5 0 0 1 4.5 5H9l2 2.5h8.5A1.5 1.5 0 0 1 21 9v9.5a1.5 1.5 0 0 '
    '1-1.5 1.5h-15A1.5 1.5 0 0 1 3 18.5z"/>',
    "file": '<path d="M6 3h8l4 4v14H6z"/><path d="M14 3v4h4"/>',
    "text": '<path d="M6 3h8l4 4v14H6z"/><path d="M14 3v4h4M9 12h6M9 15h6M9 18h4"/>',
    "image": '<rect x="3" y="5" width="18" height="14" rx="1.5"/><circle cx="9" cy="10" r="1.6"/>'
    '<path d="m4 18 5-5 4 4 3-3 4 4"/>',
    "audio": '<path d="M9 18V6l10-2v12"/><circle cx="6.5" cy="18" r="2.5"/>'
    '<circle cx="16.5" cy="16" r="2.5"/>',
    "video": '<rect x="3" y="6" width="13" height="12" rx="1.5"/><path d="m16 10 5-3v10l-5-3z"/>',
    "pdf": '<path d="M6 3h8l4 4v14H6z"/><path d="M14 3v4h4M9 13h6M9 16h6"/>',
    "archive": '<path d="M6 3h8l4 4v14H6z"/><path d="M11 5h2M11 8h2M11 11h2M10.5 14h3v3h-3z"/>',
    "link": '<path d="M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1"/>'
    '<path d="M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1"/>',
    "other": '<circle cx="12" cy="12" r="8"/><path d="M12 8v5M12 16v.5"/>',
    "up": '<path d="M12 19V6M6 11l6-6 6 6"/>',
}
_ARCHIVES = frozenset({
    "application/zip", "application/gzip", "application/x-tar", "application/x-bzip2",
    "application/x-xz", "application/x-7z-compressed", "application/zstd",
    "application/x-rar-compressed", "application/vnd.rar",
})  # fmt: skip


@dataclass(frozen=True)
class Viewer:
    """Who looks at the page, and what it offers them."""

    user: str
    read_only: bool
    logged_in: bool = False  # came with the login page's cookie: offer to log out
    mounts: list[System] = field(default_factory=list)  # the Mount panel's commands
    # (a login with a token: the commands still need the account's password)
    password_note: str = "Replace PASSWORD with your password; the others ask for it."


def human_size(size: int) -> str:
    """1536 → '1.5 KiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _url(path: str, root: str) -> str:
    return quote(os.fsencode(root + path), safe="/")


def _breadcrumbs(path: str, root: str) -> str:
    crumbs = ['<a href="' + _url("/", root) + '">files</a>']
    walked = ""
    for part in [p for p in path.split("/") if p]:
        walked += "/" + part
        crumbs.append(f'<a href="{html.escape(_url(walked + "/", root))}">{html.escape(part)}</a>')
    crumbs[-1] = crumbs[-1].replace("<a ", '<a aria-current="page" ', 1)
    return " / ".join(crumbs)


_DIGITS = re.compile(r"(\d+)")


def _natural(name: str) -> tuple[tuple[int, int, str], ...]:
    """A name's key in people's order: numbers by value (f2 before f19), case ignored."""
    return tuple(
        (1, int(part), "") if part.isdigit() else (0, 0, part)
        for part in _DIGITS.split(name.casefold())
        if part
    )


def _sorted(entries: list[Entry], key: str, descending: bool) -> list[Entry]:
    def order(entry: Entry) -> tuple[int, object, object]:
        is_dir = 0 if stat.S_ISDIR(entry.stat.st_mode) else 1
        value: object = {
            "size": entry.stat.st_size,
            "mtime": entry.stat.st_mtime,
        }.get(key, 0)
        return (is_dir, value, _natural(entry.name))  # (ties by name)

    ordered = sorted(entries, key=order, reverse=descending)
    if descending:  # keep folders first either way
        ordered.sort(key=lambda e: 0 if stat.S_ISDIR(e.stat.st_mode) else 1)
    return ordered


_TEXT_TYPES = ("json", "xml", "javascript", "x-sh", "toml", "yaml", "x-yaml", "sql")


def _previewable(media: str) -> bool:
    """Whether the page can show a file of this media type (as the script's ``kindOf``)."""
    if media.startswith(("image/", "video/", "audio/", "text/")) or media == "application/pdf":
        return True
    return media.rpartition("/")[2].rpartition("+")[2] in _TEXT_TYPES


def _icon(kind: str, label: str) -> str:
    return f'<svg class="icon" role="img" aria-label="{label}"><use href="#i-{kind}"/></svg>'


def _look(name: str, mode: int, linked: bool) -> tuple[str, str, str]:
    """The row's kind (dir, file, link, other), its icon and its media type."""
    if stat.S_ISDIR(mode):
        return "dir", "dir", ""
    if not stat.S_ISREG(mode):
        return ("link", "link", "") if linked else ("other", "other", "")
    media = mimetypes.guess_type(name)[0] or ""
    icon = (
        "image" if media.startswith("image/")
        else "audio" if media.startswith("audio/")
        else "video" if media.startswith("video/")
        else "pdf" if media == "application/pdf"
        else "archive" if media in _ARCHIVES
        else "text" if media.startswith("text/") or media.endswith(("json", "xml"))
        else "file"
    )  # fmt: skip
    return "file", ("link" if linked else icon), media


_ICON_LABELS = {
    "dir": "folder", "file": "file", "text": "text file", "image": "image", "audio": "audio",
    "video": "video", "pdf": "PDF", "archive": "archive", "link": "link", "other": "special file",
}  # fmt: skip


def _row(folder: str, entry: Entry, root: str, writable: bool) -> str:
    mode = entry.stat.st_mode
    linked = entry.link_target is not None
    kind, icon, media = _look(entry.name, mode, linked)
    is_dir = kind == "dir"
    href = html.escape(_url(f"{folder}/{entry.name}" + ("/" if is_dir else ""), root))
    name = html.escape(entry.name)
    shown = name + ("/" if is_dir else "")
    if entry.link_target is not None:
        shown += f' <span class="target">→ {html.escape(entry.link_target)}</span>'
    when = time.gmtime(entry.stat.st_mtime)
    modified = (
        f'<time datetime="{time.strftime("%Y-%m-%dT%H:%M:%SZ", when)}">'
        f"{time.strftime('%Y-%m-%d %H:%M', when)} UTC</time>"
    )
    size = "" if is_dir else human_size(entry.stat.st_size)
    actions = []
    if kind == "file" and _previewable(media):
        actions.append('<button type="button" data-act="preview">Preview</button>')
    if kind == "file":
        actions.append(f'<a href="{href}" download>Download</a>')
        if not linked and entry.name.lower().endswith((".db", ".sqlite", ".sqlite3")):
            actions.append(f'<a href="{href}?snapshot" download>Download a consistent copy</a>')
        actions.append('<button type="button" data-act="digest">SHA-256</button>')
    if is_dir:
        actions.append(f'<a href="{href}?zip" download>Download as zip</a>')
    if writable:
        actions += [
            '<button type="button" data-act="rename">Rename</button>',
            '<button type="button" data-act="move">Move</button>',
            '<button type="button" data-act="delete">Delete</button>',
        ]
    menu = (
        f'<details class="menu"><summary aria-label="Actions for {name}">⋯</summary>'
        f"<div>{''.join(actions)}</div></details>"
        if actions
        else ""
    )
    return (
        f'<tr class="{kind}" data-name="{name}" data-kind="{kind}" data-href="{href}" '
        f'data-type="{html.escape(media)}" data-size="{entry.stat.st_size}">'
        f'<td class="name">{_icon(icon, _ICON_LABELS[icon])}<a href="{href}">{shown}</a>'
        f'<div class="digest"></div></td>'
        f'<td class="size">{size}</td><td class="date">{modified}</td>'
        f'<td class="act">{menu}</td></tr>'
    )


def _space(space: Usage | None) -> str:
    """The filesystem's capacity: a bar of the part used, and the space free."""
    if space is None or not space.total_bytes:
        return ""
    percent = f"{space.used_percent:g}"
    return (
        f'<p class="space"><meter min="0" max="100" low="80" high="90" optimum="0" '
        f'value="{percent}" title="{percent}% used">{percent}%</meter> '
        f"<span>{human_size(space.free_bytes)} free of {human_size(space.total_bytes)} "
        f"({percent}% used)</span></p>"
    )


def _mount_panel(viewer: Viewer) -> str:
    """The Mount dialog: each system's commands, with a button that copies each."""
    sections = []
    number = 0
    for system in viewer.mounts:
        lines = [f"<section><h3>{html.escape(system.name)}</h3>"]
        for command in system.commands:
            number += 1
            lines.append(
                f"<p>{html.escape(command.label)}</p>"
                f'<div class="cmd"><code id="cmd-{number}">{html.escape(command.text)}</code>'
                f'<button type="button" data-copy="cmd-{number}" '
                f'aria-label="Copy: {html.escape(command.label)}">Copy</button></div>'
            )
        lines.append("</section>")
        sections.append("".join(lines))
    body = "".join(sections)
    return (
        '<dialog id="mount" class="mount" aria-labelledby="mount-title">'
        '<h2 id="mount-title">Mount your files</h2>'
        f"<p>{html.escape(viewer.password_note)}</p>"
        f'{body}<div class="buttons"><button type="button" id="mount-close">Close</button>'
        "</div></dialog>"
    )


_DIALOGS = """
<dialog id="ask" aria-labelledby="ask-title"><form id="ask-form">
<h2 id="ask-title"></h2><label id="ask-label" for="ask-input" class="sr">Name</label>
<input id="ask-input" autocomplete="off" spellcheck="false">
<p id="ask-error" class="failed" role="alert"></p>
<div class="buttons"><button type="button" id="ask-cancel">Cancel</button>
<button type="submit" id="ask-ok">OK</button></div></form></dialog>
<dialog id="preview" aria-labelledby="preview-title"><h2 id="preview-title"></h2>
<div id="preview-body"></div><div class="buttons">
<a class="button" id="preview-download" download>Download</a>
<button type="button" id="preview-close">Close</button></div></dialog>
<div id="drop" class="drop" hidden>Drop files to upload them here</div>
"""


# (the cells a row without them still has: a cell spanning columns would fall out of
# step with the others when a narrow screen hides the dates)
_EMPTY_CELLS = '<td class="size"></td><td class="date"></td><td class="act"></td>'
_FAVICON = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24'%3E"
    "%3Cpath d='M3 7h7l2 2h9v11H3z' fill='%23b7791f'/%3E%3C/svg%3E"
)


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", "replace")


def _header(viewer: Viewer, space: Usage | None, root: str) -> str:
    mode = " (read-only)" if viewer.read_only else ""
    who = (
        f"Signed in as <strong>{html.escape(viewer.user)}</strong>{mode}"
        if viewer.user
        else f"A shared folder{mode}"
    )
    logout = (
        '<form class="logout" method="post" action="/logout">'
        '<button type="submit">Log out</button></form>'
        if viewer.logged_in
        else ""
    )
    return (
        f'<header class="top"><h1><a href="{html.escape(_url("/", root))}">hoody-mount</a></h1>'
        f'<span class="who">{who}</span>{_space(space)}{logout}</header>'
    )


def _toolbar(writable: bool, root_folder: bool, mountable: bool) -> str:
    tools = [
        '<label for="filter" class="sr">Filter names</label>'
        '<input id="filter" type="search" placeholder="Filter names ( / )" autocomplete="off">'
    ]
    if writable:
        tools.append('<button type="button" id="new-folder">New folder</button>')
        tools.append(
            '<input type="file" id="files" class="file" multiple>'
            '<label for="files" class="button">Upload files</label>'
        )
    name = "all your files" if root_folder else "this folder"
    tools.append(
        f'<a class="button" href="?zip" download aria-label="Download {name} as a zip">'
        "Download zip</a>"
    )
    if mountable:
        tools.append('<button type="button" id="mount-open">Mount</button>')
    return f'<div class="bar">{"".join(tools)}</div><span id="count" aria-live="polite"></span>'


def render(
    path: str,
    batches: Iterator[list[Entry]],
    sort: str,
    descending: bool,
    nonce: str,
    writable: bool,
    space: Usage | None = None,
    root: str = PREFIX,
    viewer: Viewer | None = None,
) -> Iterator[bytes]:
    """The page for the folder ``path`` (virtual, as the user sees it), in pieces, with
    the capacity of its filesystem (``space``) as a bar and the free space.

    A folder of up to ``SORT_LIMIT`` names is sorted as asked; a bigger one is shown in
    the folder's own order as its batches are read, so the page starts at once and
    memory stays bounded whatever the folder's size. Links start at ``root``, the URL
    the file API's root is shown at."""
    viewer = viewer or Viewer(user="", read_only=not writable)
    key = sort if sort in SORT_KEYS else "name"
    folder = path.rstrip("/")
    first: list[Entry] = []
    for batch in batches:
        first.extend(batch)
        if len(first) > SORT_LIMIT:
            break
    sortable = len(first) <= SORT_LIMIT

    def header(label: str, column: str, css: str) -> str:
        if not sortable:
            return f'<th scope="col" class="{css}">{label}</th>'
        flip = "&amp;desc" if column == key and not descending else ""
        mark = (" ▼" if descending else " ▲") if column == key else ""
        order = ' aria-sort="descending"' if descending else ' aria-sort="ascending"'
        sorted_by = order if column == key else ""
        return (
            f'<th scope="col" class="{css}"{sorted_by}>'
            f'<a href="?sort={column}{flip}">{label}{mark}</a></th>'
        )

    title = html.escape(path)
    note = (
        ""
        if sortable
        else f"<p>This folder holds more than {SORT_LIMIT:,} names: they are shown in the "
        "folder's own order, unsorted.</p>"
    )
    parent = (
        ""
        if folder == ""
        else f'<tr class="up"><td class="name">{_icon("up", "up")}'
        f'<a href="{html.escape(_url(folder.rsplit("/", 1)[0] + "/", root))}">Parent folder</a>'
        f"</td>{_EMPTY_CELLS}</tr>"
    )
    login = ' data-login="/login"' if viewer.user else ""  # (links have no login page)
    uploads = '<ul id="uploads" class="uploads" aria-live="polite"></ul>'
    read_only = "" if writable else "<p>Read-only access: you can look and download here.</p>"
    symbols = "".join(
        f'<symbol id="i-{kind}" viewBox="0 0 24 24">{drawing}</symbol>'
        for kind, drawing in _ICONS.items()
    )
    actions_header = '<th scope="col" class="act"><span class="sr">Actions</span></th>'
    yield _encoded(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · hoody-mount</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="{_FAVICON}">
<style nonce="{nonce}">{_STYLE}</style></head>
<body data-folder="{html.escape(path)}"{login}>
<svg class="sprite" aria-hidden="true">{symbols}</svg>
{_header(viewer, space, root)}
<main><nav class="crumbs" aria-label="Folder">{_breadcrumbs(path, root)}</nav>
{_toolbar(writable, folder == "", bool(viewer.mounts))}{read_only}{uploads}
<p id="message" class="message" role="status"></p>{note}
<table id="listing"><caption class="sr">Contents of {title}</caption>
<thead><tr>{header("Name", "name", "name")}{header("Size", "size", "size")}
{header("Modified", "mtime", "date")}{actions_header}
</tr></thead><tbody>{parent}
"""
    )
    if sortable:
        first = _sorted(first, key, descending)
    if not first:
        yield _encoded(f'<tr><td class="name">This folder is empty.</td>{_EMPTY_CELLS}</tr>')
    yield _encoded("".join(_row(folder, entry, root, writable) for entry in first))
    if not sortable:
        for batch in batches:
            yield _encoded("".join(_row(folder, entry, root, writable) for entry in batch))
    yield _encoded(
        f"""
</tbody></table></main>
{_DIALOGS}{_mount_panel(viewer) if viewer.mounts else ""}
<script nonce="{nonce}">{_SCRIPT}</script>
</body></html>
"""
    )
