"""The HTML listing of a folder, for people: breadcrumbs, sizes, dates, sorting, download
links, an upload form and a file's digest on demand.

Every name is escaped for HTML and quoted for URLs. The page loads nothing from
elsewhere; its one script and style carry a per-response nonce named in the CSP.
"""

from __future__ import annotations

import html
import os
import stat
import time
from collections.abc import Iterator
from urllib.parse import quote

from ..core.filesystems import Usage
from ..core.listing import Entry
from ..http_names import FILES_ROOT

PREFIX = FILES_ROOT
SORT_KEYS = ("name", "size", "mtime")

_STYLE = """
body{font:14px system-ui,sans-serif;margin:2rem;color:#222}
nav a{text-decoration:none}table{border-collapse:collapse;width:100%;margin-top:1rem}
th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}th a{color:inherit}
.dir a{font-weight:600}form{margin-top:1.5rem}code{font-size:12px;overflow-wrap:anywhere}
.space{color:#555}meter{width:12rem;vertical-align:middle}
"""

_SCRIPT = """
document.querySelectorAll('a.digest').forEach(function (link) {
  link.addEventListener('click', function (event) {
    event.preventDefault();
    fetch(link.href).then(function (r) { return r.json(); }).then(function (d) {
      var code = document.createElement('code');
      code.textContent = d.sha256 || d.message;
      link.replaceWith(code);
    });
  });
});
var form = document.getElementById('upload');
if (form) form.addEventListener('submit', function (event) {
  event.preventDefault();
  var files = document.getElementById('files').files, done = 0, failed = [];
  var status = document.getElementById('status');
  // From the origin and path alone: a page opened as http://user:pw@host/ must not
  // hand fetch a URL with credentials in it (fetch refuses those).
  var folder = location.origin + location.pathname.replace(/\\/?$/, '/');
  function finished(file, message) {
    done += 1;
    if (message) { failed.push(file.name + ': ' + message); }
    status.textContent = (done - failed.length) + ' of ' + files.length + ' uploaded' +
      (failed.length ? '; failed: ' + failed.join('; ') : '');
    if (done === files.length && !failed.length) { location.reload(); }
  }
  Array.prototype.forEach.call(files, function (file) {
    fetch(folder + encodeURIComponent(file.name), {method: 'PUT', body: file})
      .then(function (r) {
        if (r.ok) { finished(file, ''); return; }
        return r.json().then(function (d) { finished(file, d.message || r.statusText); },
                             function () { finished(file, r.status + ' ' + r.statusText); });
      }, function (error) { finished(file, String(error)); });
  });
});
"""


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
    return " / ".join(crumbs)


def _sorted(entries: list[Entry], key: str, descending: bool) -> list[Entry]:
    def order(entry: Entry) -> tuple[int, object]:
        is_dir = 0 if stat.S_ISDIR(entry.stat.st_mode) else 1
        value: object = {
            "size": entry.stat.st_size,
            "mtime": entry.stat.st_mtime,
        }.get(key, entry.name.lower())
        return (is_dir, value)

    ordered = sorted(entries, key=order, reverse=descending)
    if descending:  # keep folders first either way
        ordered.sort(key=lambda e: 0 if stat.S_ISDIR(e.stat.st_mode) else 1)
    return ordered


SORT_LIMIT = 5000  # a folder with more names is shown in its own order, as it is read


def _row(folder: str, entry: Entry, root: str) -> str:
    mode = entry.stat.st_mode
    is_dir = stat.S_ISDIR(mode)
    href = html.escape(_url(f"{folder}/{entry.name}" + ("/" if is_dir else ""), root))
    name = html.escape(entry.name) + ("/" if is_dir else "")
    if entry.link_target is not None:
        name += f" → {html.escape(entry.link_target)}"
    modified = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.stat.st_mtime))
    size = "" if is_dir else human_size(entry.stat.st_size)
    digest = f'<a class="digest" href="{href}?sha256">sha256</a>' if stat.S_ISREG(mode) else ""
    return (
        f'<tr class="{"dir" if is_dir else "file"}"><td><a href="{href}">{name}</a></td>'
        f'<td class="n">{size}</td><td>{modified}</td><td>{digest}</td></tr>'
    )


def _space(space: Usage | None) -> str:
    """The filesystem's capacity: a bar of the part used, and the space free."""
    if space is None or not space.total_bytes:
        return ""
    percent = f"{space.used_percent:g}"
    return (
        f'<p class="space"><meter min="0" max="100" low="80" high="90" optimum="0" '
        f'value="{percent}" title="{percent}% used">{percent}%</meter> '
        f"{human_size(space.free_bytes)} free of {human_size(space.total_bytes)} "
        f"({percent}% used)</p>"
    )


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", "replace")


def render(
    path: str,
    batches: Iterator[list[Entry]],
    sort: str,
    descending: bool,
    nonce: str,
    writable: bool,
    space: Usage | None = None,
    root: str = PREFIX,
) -> Iterator[bytes]:
    """The page for the folder ``path`` (virtual, as the user sees it), in pieces, with
    the capacity of its filesystem (``space``) as a bar and the free space.

    A folder of up to ``SORT_LIMIT`` names is sorted as asked; a bigger one is shown in
    the folder's own order as its batches are read, so the page starts at once and
    memory stays bounded whatever the folder's size. Links start at ``root``, the URL
    the file API's root is shown at."""
    key = sort if sort in SORT_KEYS else "name"
    folder = path.rstrip("/")
    first: list[Entry] = []
    for batch in batches:
        first.extend(batch)
        if len(first) > SORT_LIMIT:
            break
    sortable = len(first) <= SORT_LIMIT

    def header(label: str, column: str) -> str:
        if not sortable:
            return f"<th>{label}</th>"
        flip = "&amp;desc" if column == key and not descending else ""
        mark = (" ▼" if descending else " ▲") if column == key else ""
        return f'<th><a href="?sort={column}{flip}">{label}{mark}</a></th>'

    title = html.escape(path)
    note = (
        ""
        if sortable
        else f"<p>This folder holds more than {SORT_LIMIT:,} names: they are shown in the "
        "folder's own order, unsorted.</p>"
    )
    yield _encoded(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · hoody-mount</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style nonce="{nonce}">{_STYLE}</style></head>
<body><nav>{_breadcrumbs(path, root)}</nav>{_space(space)}{note}
<table><thead><tr>{header("Name", "name")}{header("Size", "size")}{header("Modified", "mtime")}
<th>Digest</th></tr></thead><tbody>
"""
    )
    if sortable:
        first = _sorted(first, key, descending)
    if not first:
        yield b'<tr><td colspan="4">This folder is empty.</td></tr>'
    yield _encoded("".join(_row(folder, entry, root) for entry in first))
    if not sortable:
        for batch in batches:
            yield _encoded("".join(_row(folder, entry, root) for entry in batch))
    form = (
        '<form id="upload"><input type="file" id="files" multiple>\n'
        '<button type="submit">Upload</button> <span id="status"></span></form>'
        if writable
        else "<p>Read-only access: no uploads here.</p>"
    )
    yield _encoded(
        f"""
</tbody></table>
{form}
<script nonce="{nonce}">{_SCRIPT}</script>
</body></html>
"""
    )
