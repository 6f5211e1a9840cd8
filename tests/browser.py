"""A headless Chromium driven over the DevTools protocol, for tests that click on pages.

Only what the page tests need: open a page, run JavaScript, hand a file input its files.
The DevTools socket is a WebSocket; the few lines of framing it needs are written here,
since the test tools have no WebSocket client.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from conftest import require


class Browser:
    """One headless Chromium with one page; close it with ``close``."""

    def __init__(self, profile: Path) -> None:
        require("chromium")
        profile.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._buffer = b""
        self._next_id = 0
        try:  # (a Chromium left running would eat a CPU for the rest of the run)
            port_file = profile / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text().strip():
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError("chromium did not open its DevTools port")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            target = self._page_target(port)
            self._sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            self._handshake(port, target)
        except BaseException:
            self.close()
            raise

    def _page_target(self, port: int) -> str:
        """The WebSocket path of the page Chromium opened (it may take a moment)."""
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
                targets = json.loads(r.read())
            pages = [t for t in targets if t["type"] == "page"]
            if pages:
                url = str(pages[0]["webSocketDebuggerUrl"])
                return "/" + url.split("/", 3)[3]
            if time.monotonic() > deadline:
                raise AssertionError(f"chromium opened no page: {targets}")
            time.sleep(0.1)

    def _handshake(self, port: int, path: str) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        self._sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += self._sock.recv(4096)
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _take(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise EOFError("DevTools closed the connection")
            self._buffer += chunk
        out, self._buffer = self._buffer[:count], self._buffer[count:]
        return out

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        size = len(data)
        if size < 126:
            head = bytes([0x81, 0x80 | size])
        elif size < 1 << 16:
            head = bytes([0x81, 0x80 | 126]) + struct.pack(">H", size)
        else:
            head = bytes([0x81, 0x80 | 127]) + struct.pack(">Q", size)
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))
        self._sock.sendall(head + mask + masked)

    def _receive(self) -> dict[str, Any]:
        first, second = self._take(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack(">H", self._take(2))[0]
        elif size == 127:
            size = struct.unpack(">Q", self._take(8))[0]
        payload = self._take(size)
        if first & 0x0F != 1:  # not a text frame (ping, close): not expected here
            return {}
        return dict(json.loads(payload))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events are skipped)."""
        self._next_id += 1
        self._send({"id": self._next_id, "method": method, "params": params})
        while True:
            message = self._receive()
            if message.get("id") == self._next_id:
                assert "error" not in message, message
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def open(self, url: str, headers: dict[str, str] | None = None) -> None:
        """Load ``url`` (with extra request headers) and wait until it has loaded."""
        self.call("Network.enable")
        self.call("Network.setExtraHTTPHeaders", headers=headers or {})
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    def wait_for(self, expression: str, timeout: float = 60) -> None:
        """Poll until a JavaScript expression is true in the page."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.evaluate(expression):
                    return
            except AssertionError:
                pass  # the page is being replaced: try again
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {expression}")
            time.sleep(0.1)

    def set_files(self, selector: str, files: list[Path]) -> None:
        """Hand the file input at ``selector`` these files, as a person picking them."""
        document = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=document, selector=selector)["nodeId"]
        assert node, f"no element {selector}"
        self.call("DOM.setFileInputFiles", nodeId=node, files=[str(f) for f in files])
        # (the protocol sets the files without the change event a person's pick fires)
        picked = json.dumps(selector)
        self.evaluate(f"document.querySelector({picked}).dispatchEvent(new Event('change')); true")

    def close(self) -> None:
        """Stop Chromium."""
        with contextlib.suppress(AttributeError):
            self._sock.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
