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
from conftest import Server, served

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


def _health(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hoody_mount", "health", "--config", str(config), *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_the_images_healthcheck_passes_against_a_serving_server(
    tmp_path: Path, client_key: Path, tls: bool
) -> None:
    """The Dockerfile's HEALTHCHECK is ``hoody-mount health`` with the image's config:
    run with this server's config it exits 0 while the server serves, over plain HTTP
    and over TLS (as the README advises outside the container), and 1 with one line
    when nothing answers."""
    text = (Path(__file__).resolve().parent.parent / "Dockerfile").read_text()
    match = re.search(r"HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])", text)
    assert match, "the Dockerfile has no HEALTHCHECK CMD"
    command = json.loads(match.group(1))
    assert command == ["hoody-mount", "health", "--config", "/etc/hoody-mount/container.toml"]
    with served(tmp_path, client_key, http="tls = true" if tls else "") as server:
        config = server.state.parent / "hoody-mount.toml"
        here = _health(config, "--http", f"127.0.0.1:{server.http_port}")
        assert here.returncode == 0, here.stderr
        assert json.loads(here.stdout)["status"] == "ok"
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    nowhere = _health(config, "--http", f"127.0.0.1:{port}")
    assert nowhere.returncode == 1 and f"127.0.0.1:{port}/healthz" in nowhere.stderr


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_health_finds_the_port_a_port_0_server_picked(
    tmp_path: Path, client_key: Path, tls: bool
) -> None:
    """With ``listen = "127.0.0.1:0"`` in the config (the fixtures' own), ``health
    --config`` asks the running server which port it picked: 0 while it serves, and 1
    with one line once it has stopped."""
    with served(tmp_path, client_key, http="tls = true" if tls else "") as server:
        config = server.state.parent / "hoody-mount.toml"
        assert 'listen = "127.0.0.1:0"' in config.read_text()
        here = _health(config)
        assert here.returncode == 0, here.stderr
        assert json.loads(here.stdout)["status"] == "ok"
    gone = _health(config)
    assert gone.returncode == 1 and "no server is running" in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1
