"""The listing page's upload form, clicked in headless Chromium: it says what failed,
works when the page was opened with credentials in its address, and is not offered to
read-only users."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote

from browser import Browser
from conftest import PASSWORD, READER_PASSWORD, Server

PREFIX = "/api/v1/files"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _upload(browser: Browser, files: list[Path]) -> str:
    """Pick ``files`` in the form, submit it, and return the status line once all are done."""
    browser.set_files("#files", files)
    browser.evaluate("document.getElementById('upload').requestSubmit(); true")
    total = len(files)
    browser.wait_for(
        "(document.getElementById('status') || {textContent: ''}).textContent"
        f".includes('of {total} uploaded') && (document.getElementById('status')"
        ".textContent.includes('failed') || document.getElementById('status')"
        f".textContent.startsWith('{total} of'))"
    )
    return str(browser.evaluate("document.getElementById('status').textContent"))


def test_upload_form_reports_failures_and_successes(server: Server, tmp_path: Path) -> None:
    good, clash = tmp_path / "good.txt", tmp_path / "clash.txt"
    good.write_text("good upload\n")
    clash.write_text("cannot land on a folder\n")
    (server.root / "share" / "up").mkdir()
    (server.root / "share" / "up" / "clash.txt").mkdir()  # a folder: the upload must fail
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(f"{server.url}{PREFIX}/share/up/", _basic("root", PASSWORD))
        status = _upload(browser, [good, clash])
        assert "1 of 2 uploaded" in status, status
        assert "failed: clash.txt:" in status, status
        assert (server.root / "share" / "up" / "good.txt").read_text() == "good upload\n"
        assert (server.root / "share" / "up" / "clash.txt").is_dir()
    finally:
        browser.close()


def test_upload_form_works_with_credentials_in_the_address(server: Server, tmp_path: Path) -> None:
    (server.root / "share" / "up").mkdir()
    note = tmp_path / "note.txt"
    note.write_text("from a page opened as user:password@host\n")
    browser = Browser(tmp_path / "profile")
    try:
        url = f"http://root:{quote(PASSWORD, safe='')}@127.0.0.1:{server.http_port}"
        browser.open(f"{url}{PREFIX}/share/up/")
        browser.set_files("#files", [note])
        browser.evaluate("document.getElementById('upload').requestSubmit(); true")
        # All went well: the page reloads and lists the new file.
        browser.wait_for("document.body.textContent.includes('note.txt')")
        assert (server.root / "share" / "up" / "note.txt").read_text().startswith("from a page")
    finally:
        browser.close()


def test_read_only_users_get_no_upload_form(server: Server, tmp_path: Path) -> None:
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(f"{server.url}{PREFIX}/", _basic("reader", READER_PASSWORD))
        browser.wait_for("document.body.textContent.includes('docs/')")
        assert browser.evaluate("document.getElementById('upload') === null")
        assert "Read-only access" in browser.evaluate("document.body.textContent")
    finally:
        browser.close()
