"""The file page as people use it, in Debian's Chromium through Selenium, at a desktop's
1280 px and a phone's 400 px: log in, list, filter, sort, make a folder, upload two
files (one fails), rename, move, delete, download a folder as a zip, preview an image
and a text file, open the Mount panel; never a sideways scroll at 400 px. Screenshots
of each step are kept (see ``webdriver.ARTIFACTS``)."""

from __future__ import annotations

import hashlib
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from conftest import PASSWORD, READER_PASSWORD, Server, served
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from webdriver import Page, opened

PREFIX = "/api/v1/files"
DROP = """
var transfer = new DataTransfer();
transfer.items.add(new File([arguments[1]], arguments[0], {type: 'text/plain'}));
window.dispatchEvent(new DragEvent('dragenter', {dataTransfer: transfer}));
window.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, cancelable: true}));
"""
IMAGE_SIZE = """
var image = document.querySelector('#preview-body img');
if (!image || !image.complete || !image.naturalWidth) { return null; }
return [image.naturalWidth, image.naturalHeight];
"""


def _png(width: int, height: int) -> bytes:
    """A red PNG of ``width`` × ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def _log_in(page: Page, server: Server, folder: str, user: str, password: str) -> None:
    """Open ``folder``'s page as people do: sent to the login page, sign in there, and
    land back on the folder."""
    page.open(f"{server.url}{PREFIX}{folder}")
    page.wait(lambda: page.driver.current_url.split("?")[0].endswith("/login"), "the login page")
    assert page.js("return document.activeElement.id") == "user"
    page.shot(f"login-{page.width}")
    assert not page.overflows(), "the login page scrolls sideways"
    page.find("#user").send_keys(user)
    page.find("#password").send_keys(password)
    page.find("#password").submit()
    page.wait(lambda: page.js("return location.pathname") == f"{PREFIX}{folder}", "the folder")
    cookie = page.driver.get_cookie("hoody_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie


def _fill(page: Page) -> None:
    """Answer the page's question dialog with nothing more: press its OK button."""
    page.find("#ask-ok").click()


def _answer(page: Page, text: str) -> None:
    """Type ``text`` in the page's question dialog and press OK."""
    field = page.wait(
        lambda: page.find("#ask-input") if page.find("#ask").is_displayed() else None,
        "the question dialog",
    )
    field.clear()
    field.send_keys(text)
    page.find("#ask-ok").click()


@pytest.mark.parametrize("width", [1280, 400])
def test_file_manager(width: int, client_key: Path, tmp_path: Path) -> None:
    with served(tmp_path / "server", client_key) as server, opened(tmp_path, width) as page:
        docs = server.root / "share" / "docs"
        (docs / "red.png").write_bytes(_png(40, 30))
        (docs / "notes.txt").write_text("first line of the notes\n")
        (docs / "big.bin").write_bytes(b"\0" * 300_000)
        (docs / "nested" / "deeper").mkdir(parents=True)
        (docs / "nested" / "deeper" / "inside.txt").write_text("deep inside\n")
        (docs / "clash.txt").mkdir()  # a folder: an upload of clash.txt must fail
        _log_in(page, server, "/share/docs/", "root", PASSWORD)
        page.wait(lambda: "notes.txt" in page.names(), "the listing")
        page.shot(f"listing-{width}")
        assert not page.overflows(), "the page scrolls sideways"
        assert "Signed in as root" in page.find("header.top").text
        assert page.all("header.top meter"), "no capacity bar"
        # folders first, then files by name
        assert page.names() == [
            "clash.txt",
            "nested",
            "big.bin",
            "notes.txt",
            "readme.txt",
            "red.png",
        ]

        # a file the page cannot show is offered for download, not as a preview
        assert not page.all('#listing tr[data-name="big.bin"] button[data-act="preview"]')
        assert page.all('#listing tr[data-name="notes.txt"] button[data-act="preview"]')

        # filter
        page.find("#filter").send_keys("RE")
        page.wait(lambda: page.names() == ["readme.txt", "red.png"], "the filter")
        assert "2 of 6 shown" in page.find("#count").text
        page.find("#filter").send_keys(Keys.BACKSPACE * 2)
        page.wait(lambda: len(page.names()) == 6, "the filter cleared")

        # sort by size, then by size descending (folders stay first)
        page.find("th.size a").click()
        page.wait(
            lambda: (
                page.names()[2:] == ["notes.txt", "readme.txt", "red.png", "big.bin"]
                or page.names()[2:] == ["readme.txt", "notes.txt", "red.png", "big.bin"]
            ),
            "sorted by size",
        )
        page.find("th.size a").click()
        page.wait(lambda: page.names()[2] == "big.bin", "sorted by size, descending")
        page.open(f"{server.url}{PREFIX}/share/docs/")

        # new folder
        page.find("#new-folder").click()
        _answer(page, "made here")
        page.wait(lambda: "made here" in page.names(), "the new folder")
        assert (docs / "made here").is_dir()

        # two uploads, one failing
        good, clash = tmp_path / "good.txt", tmp_path / "clash.txt"
        good.write_text("good upload\n")
        clash.write_text("cannot land on a folder\n")
        page.find("#files").send_keys(f"{good}\n{clash}")
        page.wait(lambda: "good.txt" in page.names(), "the upload's reload")
        page.wait(lambda: len(page.all("#uploads li")) == 2, "the upload messages")
        lines = [item.text for item in page.all("#uploads li")]
        page.shot(f"uploads-{width}")
        assert any(line.startswith("good.txt: uploaded") for line in lines), lines
        failed = [item for item in page.all("#uploads li.failed")]
        assert len(failed) == 1 and failed[0].text.startswith("clash.txt: failed: "), lines
        assert (docs / "good.txt").read_text() == "good upload\n"
        assert (docs / "clash.txt").is_dir()

        # files dropped on the page are uploaded too
        page.js(DROP, "dropped.txt", "dropped on the page\n")
        page.wait(lambda: "dropped.txt" in page.names(), "the dropped file")
        assert (docs / "dropped.txt").read_text() == "dropped on the page\n"

        # rename, then move into the new folder
        page.row_action("good.txt", "rename")
        _answer(page, "renamed.txt")
        page.wait(lambda: "renamed.txt" in page.names(), "the rename")
        assert (docs / "renamed.txt").read_text() == "good upload\n"
        page.row_action("renamed.txt", "move")
        _answer(page, "/share/docs/made here")
        page.wait(lambda: "renamed.txt" not in page.names(), "the move")
        assert (docs / "made here" / "renamed.txt").read_text() == "good upload\n"

        # the keyboard: a row's menu opens with Enter on its button, Escape closes it
        summary = page.find('#listing tr[data-name="notes.txt"] summary')
        summary.send_keys(Keys.ENTER)
        page.wait(lambda: page.js("return !!document.querySelector('details.menu[open]')"), "menu")
        summary.send_keys(Keys.ESCAPE)
        page.wait(lambda: page.js("return !document.querySelector('details.menu[open]')"), "closed")

        # delete, after a confirmation
        page.row_action("big.bin", "delete")
        page.wait(lambda: page.find("#ask").is_displayed(), "the confirmation")
        assert "Delete big.bin?" in page.find("#ask-title").text
        page.shot(f"delete-{width}")
        _fill(page)
        page.wait(lambda: "big.bin" not in page.names(), "the delete")
        assert not (docs / "big.bin").exists()

        # a digest on demand
        page.row_action("notes.txt", "digest")
        expected = hashlib.sha256(b"first line of the notes\n").hexdigest()
        page.wait(
            lambda: (
                page.find('#listing tr[data-name="notes.txt"] .digest code').text
                == f"sha256 {expected}"
            ),
            "the digest",
        )

        # preview an image and a text file
        page.find('#listing tr[data-name="red.png"] td.name a').click()
        size = page.wait(lambda: page.js(IMAGE_SIZE), "the image preview")
        assert size == [40, 30]
        page.shot(f"preview-image-{width}")
        page.find("#preview-close").click()
        page.find('#listing tr[data-name="notes.txt"] td.name a').click()
        page.wait(
            lambda: "first line of the notes" in page.find("#preview-body pre").text,
            "the text preview",
        )
        page.find("#preview-close").click()

        # the Mount panel: the real SSH port and the WebDAV URL
        page.find("#mount-open").click()
        panel = page.wait(
            lambda: page.find("#mount") if page.find("#mount").is_displayed() else None,
            "the Mount panel",
        )
        text = panel.text
        page.shot(f"mount-{width}")
        assert f"sshfs -p {server.port} root@127.0.0.1:/ ~/hoody" in text, text
        assert f"http://127.0.0.1:{server.http_port}/dav/" in text, text
        assert not page.overflows(), "the Mount panel scrolls sideways"
        page.find("#mount-close").click()

        # download a folder as a zip, and compare its contents
        row = page.find('#listing tr[data-name="nested"]')
        row.find_element(By.CSS_SELECTOR, "summary").click()
        row.find_element(By.CSS_SELECTOR, 'a[href$="?zip"]').click()
        archive = page.wait(
            lambda: next(
                (f for f in page.downloads.iterdir() if f.suffix == ".zip" and f.stat().st_size),
                None,
            ),
            "the zip download",
        )
        page.wait(lambda: not list(page.downloads.glob("*.crdownload")), "the download's end")
        with zipfile.ZipFile(archive) as opened_zip:
            assert opened_zip.testzip() is None
            files = {
                info.filename: opened_zip.read(info)
                for info in opened_zip.infolist()
                if not info.is_dir()
            }
        assert files == {"nested/deeper/inside.txt": b"deep inside\n"}, files

        # log out: the cookie no longer opens the page
        page.find("form.logout button").click()
        page.wait(lambda: page.js("return location.pathname") == "/login", "the logout")
        page.open(f"{server.url}{PREFIX}/share/docs/")
        page.wait(lambda: page.js("return location.pathname") == "/login", "the login page again")

        # a login that ends while the page is open: its next action leads to the login
        # page (not to the browser's own password prompt), and back to the folder
        _log_in(page, server, "/share/docs/", "root", PASSWORD)
        page.driver.delete_cookie("hoody_session")
        page.find("#new-folder").click()
        _answer(page, "too late")
        page.wait(lambda: page.js("return location.pathname") == "/login", "the login page")
        assert page.js("return location.search") == "?next=%2Fapi%2Fv1%2Ffiles%2Fshare%2Fdocs%2F"
        assert not (docs / "too late").exists()


def test_read_only_users_get_no_changing_actions(client_key: Path, tmp_path: Path) -> None:
    with served(tmp_path / "server", client_key) as server, opened(tmp_path, 1280) as page:
        _log_in(page, server, "/docs/", "reader", READER_PASSWORD)
        page.wait(lambda: "readme.txt" in page.names(), "the listing")
        assert "(read-only)" in page.find("header.top").text
        assert not page.all("#new-folder") and not page.all("#files")
        for act in ("rename", "move", "delete"):
            assert not page.all(f'button[data-act="{act}"]'), act
        assert page.all('button[data-act="preview"]')
