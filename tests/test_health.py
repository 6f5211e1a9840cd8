"""Operations: ``/healthz`` and ``/readyz`` answer a platform's probe without
credentials, and ``--version`` names the versions that serve."""

from __future__ import annotations

import http.client
import json
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path

import asyncssh
import cheroot
import pytest
import wsgidav
from conftest import Server

from hoody_mount.health import DRAINING, Health


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_checks_answer_without_credentials(server: Server, path: str) -> None:
    """200 with the state, the version and the uptime; HEAD the same without a body;
    nothing is cached; any other method is 405."""
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        body = json.loads(reply.read())
        assert reply.status == 200, body
        assert reply.getheader("Cache-Control") == "no-store"
        assert body["status"] == "ok"
        assert body["version"] == subprocess.run(
            [sys.executable, "-c", "from importlib.metadata import version; "
             "print(version('hoody-mount'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert isinstance(body["uptime_s"], float) and body["uptime_s"] >= 0
        assert set(body) == {"status", "version", "uptime_s"}
        conn.request("HEAD", path)
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""
        conn.request("POST", path, body=b"")
        post = conn.getresponse()
        assert post.status == 405 and post.getheader("Allow") == "GET, HEAD"
        post.read()
    finally:
        conn.close()


def test_a_server_that_is_not_serving_is_503_with_its_state() -> None:
    """Starting (before both listeners are bound) and draining (a stop has begun) are
    503, so that a balancer sends nothing new."""
    health = Health()
    assert health.report() == (503, {**health.report()[1], "status": "starting"})
    health.serving()
    assert health.report()[0] == 200
    health.draining()
    status, body = health.report()
    assert (status, body["status"]) == (503, DRAINING)


def test_version_names_the_server_its_libraries_and_python() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hoody_mount", "--version"], capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith("hoody-mount ")
    for name, value in (
        ("asyncssh", asyncssh.__version__),
        ("WsgiDAV", wsgidav.__version__),
        ("cheroot", cheroot.__version__),
        ("Python", platform.python_version()),
    ):
        assert f"{name} {value}" in line, line
    assert "\n" not in line


def test_the_images_healthcheck_passes_against_a_serving_server(server: Server) -> None:
    """The Dockerfile's HEALTHCHECK command, run as the image would (against this
    server's port instead of 8080): exit 0 while the server serves, 1 when nothing
    answers."""
    text = (Path(__file__).resolve().parent.parent / "Dockerfile").read_text()
    match = re.search(r"HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])", text)
    assert match, "the Dockerfile has no HEALTHCHECK CMD"
    command = json.loads(match.group(1))
    assert command[0] == "python" and ":8080/healthz" in command[-1]
    here = [sys.executable, *command[1:-1], command[-1].replace(":8080", f":{server.http_port}")]
    assert subprocess.run(here, capture_output=True, timeout=60).returncode == 0
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = command[-1].replace(":8080", f":{unused.getsockname()[1]}")
    assert subprocess.run([*here[:-1], nowhere], capture_output=True, timeout=60).returncode == 1
