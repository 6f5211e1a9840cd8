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
from urllib.parse import quote

from ..core.listing import Entry

PREFIX = "/api/v1/files"
SORT_KEYS = ("name", "size", "mtime")

_STYLE = """
body{font:14px system-ui,sans-serif;margin:2rem;color:#222}
nav a{text-decoration:none}table{border-collapse:collapse;width:100%;margin-top:1rem}
th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}th a{color:inherit}
.dir a{font-weight:600}form{margin-top:1.5rem}code{font-size:12px;overflow-wrap:anywhere}
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


def _url(path: str) -> str:
    return quote(os.fsencode(PREFIX + path), safe="/")


def _breadcrumbs(path: str) -> str:
    crumbs = ['<a href="' + _url("/") + '">files</a>']
    walked = ""
    for part in [p for p in path.split("/") if p]:
        walked += "/" + part
        crumbs.append(f'<a href="{html.escape(_url(walked + "/"))}">{html.escape(part)}</a>')
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


def render(
    path: str, entries: list[Entry], sort: str, descending: bool, nonce: str, writable: bool
) -> bytes:
    """The page for the folder ``path`` (virtual, as the user sees it)."""
    key = sort if sort in SORT_KEYS else "name"
    rows = []
    folder = path.rstrip("/")
    for entry in _sorted(entries, key, descending):
        mode = entry.stat.st_mode
        is_dir = stat.S_ISDIR(mode)
        href = html.escape(_url(f"{folder}/{entry.name}" + ("/" if is_dir else "")))
        name = html.escape(entry.name) + ("/" if is_dir else "")
        if entry.link_target is not None:
            name += f" → {html.escape(entry.link_target)}"
        modified = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.stat.st_mtime))
        size = "" if is_dir else human_size(entry.stat.st_size)
        digest = f'<a class="digest" href="{href}?sha256">sha256</a>' if stat.S_ISREG(mode) else ""
        rows.append(
            f'<tr class="{"dir" if is_dir else "file"}"><td><a href="{href}">{name}</a></td>'
            f'<td class="n">{size}</td><td>{modified}</td><td>{digest}</td></tr>'
        )

    def header(label: str, column: str) -> str:
        flip = "&amp;desc" if column == key and not descending else ""
        mark = (" ▼" if descending else " ▲") if column == key else ""
        return f'<th><a href="?sort={column}{flip}">{label}{mark}</a></th>'

    title = html.escape(path)
    form = (
        '<form id="upload"><input type="file" id="files" multiple>\n'
        '<button type="submit">Upload</button> <span id="status"></span></form>'
        if writable
        else "<p>Read-only access: no uploads here.</p>"
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · hoody-mount</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style nonce="{nonce}">{_STYLE}</style></head>
<body><nav>{_breadcrumbs(path)}</nav>
<table><thead><tr>{header("Name", "name")}{header("Size", "size")}{header("Modified", "mtime")}
<th>Digest</th></tr></thead><tbody>
{"".join(rows) or '<tr><td colspan="4">This folder is empty.</td></tr>'}
</tbody></table>
{form}
<script nonce="{nonce}">{_SCRIPT}</script>
</body></html>
"""
    return page.encode("utf-8", "replace")
