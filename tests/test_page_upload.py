"""The listing page's uploads, in headless Chromium: they work once logged in on the
login page, and are not offered to read-only users (the rest of the page is driven
through Selenium in test_file_page.py)."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

from browser import Browser
from conftest import PASSWORD, READER_PASSWORD, Server

PREFIX = "/api/v1/files"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_upload_form_works_after_logging_in_on_the_login_page(
    server: Server, tmp_path: Path
) -> None:
    """A page opened without credentials (or with them in its address, which a browser
    sends only when challenged) goes to the login page; once logged in there, the
    browser is back at the folder and its upload works with the session cookie."""
    (server.root / "share" / "up").mkdir()
    note = tmp_path / "note.txt"
    note.write_text("from a page reached through the login page\n")
    browser = Browser(tmp_path / "profile")
    try:
        url = f"http://root:{quote(PASSWORD, safe='')}@127.0.0.1:{server.http_port}"
        browser.open(f"{url}{PREFIX}/share/up/")
        browser.wait_for("location.pathname === '/login' && !!document.getElementById('user')")
        assert browser.evaluate("document.activeElement.id") == "user"
        browser.evaluate(
            "document.getElementById('user').value = 'root';"
            f"document.getElementById('password').value = {PASSWORD!r};"
            "document.querySelector('form').requestSubmit(); true"
        )
        browser.wait_for(
            f"location.pathname === '{PREFIX}/share/up/' && !!document.getElementById('files')"
        )
        browser.set_files("#files", [note])  # (picking files starts their upload)
        # All went well: the page reloads and lists the new file.
        browser.wait_for("document.querySelector('#listing tr[data-name=\"note.txt\"]') !== null")
        assert (server.root / "share" / "up" / "note.txt").read_text().startswith("from a page")
    finally:
        browser.close()


def test_read_only_users_get_no_upload_form(server: Server, tmp_path: Path) -> None:
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(f"{server.url}{PREFIX}/", _basic("reader", READER_PASSWORD))
        browser.wait_for("document.body.textContent.includes('docs/')")
        assert browser.evaluate("document.getElementById('files') === null")
        assert "Read-only access" in browser.evaluate("document.body.textContent")
    finally:
        browser.close()
