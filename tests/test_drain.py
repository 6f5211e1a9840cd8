"""A stop (SIGTERM) drains: nothing new starts, transfers in flight finish within
``shutdown_grace``, idle SSH clients are told why they are disconnected, health probes
say ``draining``, and what the grace's end or a second signal cuts is answered 503 (never
a 4xx that blames the client). The process exits 0."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from conftest import PASSWORD, Server, http_port, require, start_server, write_config

SIZE = 3_000_000  # bytes of each upload: about 5 s at the rates below


@contextmanager
def draining_server(tmp_path: Path, client_key: Path, grace: float) -> Iterator[Server]:
    """A server with ``shutdown_grace = grace``; killed if a test leaves it running."""
    root, state = tmp_path / "root", tmp_path / "state"
    for folder in (root / "share", root / "home" / "jailed"):
        folder.mkdir(parents=True)
    config = tmp_path / "hoody-mount.toml"
    write_config(config, root, state, client_key.with_suffix(".pub").read_text().strip())
    text = config.read_text().replace("shutdown_grace = 3", f"shutdown_grace = {grace}", 1)
    config.write_text(text)
    log = tmp_path / "server.log"
    process, port, banner = start_server(["--config", str(config)], log)
    try:
        yield Server(port, root, tmp_path, state, client_key, process, log, http_port(banner))
    finally:
        process.kill()
        process.wait()


def _ssh_options(server: Server) -> list[str]:
    # (at LogLevel INFO, ssh prints the reason of a disconnect)
    return [o.replace("LogLevel=ERROR", "LogLevel=INFO") for o in server.ssh_options()]


def _slow_put(server: Server, local: Path, target: str, rate: str = "600k") -> subprocess.Popen:
    """curl uploading ``local`` at ``rate`` bytes a second; prints the body and status."""
    require("curl")
    url = f"{server.url}{target}"
    return subprocess.Popen(
        ["curl", "-sS", "-w", "\n%{http_code}", "--limit-rate", rate, "-u", f"root:{PASSWORD}",
         "-T", str(local), url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _sftp(server: Server, *limit: str) -> subprocess.Popen:
    require("sftp")
    return subprocess.Popen(
        ["sftp", *limit, "-b", "-", "-P", str(server.port), *_ssh_options(server),
         "root@127.0.0.1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _get(server: Server, path: str, auth: bool = True) -> tuple[int, bytes]:
    token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Basic {token}"} if auth else {})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def _upload_started(server: Server, name: str) -> bool:
    """Whether an upload of ``name`` has begun writing (a temp file or the file)."""
    share = server.root / "share"
    return any(name in entry.name for entry in share.iterdir())


def _collect(stream: IO[str] | None, lines: list[str]) -> None:
    """Append the lines of ``stream`` to ``lines`` as they come."""
    for line in stream or []:
        lines.append(line)


def _wait(condition: object, timeout: float = 30, shown: object = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out {shown}")


def test_transfers_in_flight_finish_and_the_rest_is_told(tmp_path: Path, client_key: Path) -> None:
    """SIGTERM with an HTTP, an SFTP and an scp upload running and an idle SFTP session:
    the uploads complete whole, the idle client is told why it is disconnected, a
    probe says draining, a new request is 503 with the reason, a new SSH connection is
    refused; then the process exits 0."""
    data = os.urandom(SIZE)
    local = tmp_path / "up.bin"
    local.write_bytes(data)
    with draining_server(tmp_path, client_key, grace=60) as server:
        curl = _slow_put(server, local, "/api/v1/files/share/http.bin")
        busy = _sftp(server, "-l", "4000")  # (Kbit/s: 500 KB/s)
        assert busy.stdin is not None
        busy.stdin.write(f"put {local} /share/sftp.bin\n")
        busy.stdin.flush()
        require("scp")
        legacy = subprocess.Popen(
            ["scp", "-O", "-l", "4000", "-P", str(server.port), *server.ssh_options(),
             str(local), "root@127.0.0.1:/share/scp.bin"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        idle = _sftp(server)
        assert idle.stdin is not None
        idle.stdin.write("pwd\n")
        idle.stdin.flush()
        said: list[str] = []
        shown: list[str] = []
        for stream, lines in ((idle.stderr, said), (idle.stdout, shown)):
            threading.Thread(target=_collect, args=(stream, lines), daemon=True).start()
        names = ("http.bin", "sftp.bin", "scp.bin")
        _wait(lambda: all(_upload_started(server, name) for name in names))
        # (idle: logged in, its command answered, nothing on the way when the stop comes)
        _wait(lambda: any("Remote working directory" in line for line in shown))
        server.process.send_signal(signal.SIGTERM)
        _wait(lambda: any("the server is shutting down" in line for line in said), shown=said)
        status, body = _get(server, "/healthz", auth=False)
        assert status == 503 and json.loads(body)["status"] == "draining"
        status, body = _get(server, "/api/v1/files/share/")
        assert status == 503 and b"shutting down" in body
        assert curl.poll() is None and busy.poll() is None  # (still running)
        refused = subprocess.run(
            ["ssh", "-p", str(server.port), *server.ssh_options(), "root@127.0.0.1", "true"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert refused.returncode != 0
        out, err = curl.communicate(timeout=60)
        assert out.rstrip().endswith("201"), (out, err)
        busy.communicate(timeout=60)
        _, scp_err = legacy.communicate(timeout=60)
        assert legacy.returncode == 0, scp_err
        idle.communicate(timeout=30)
        assert server.process.wait(timeout=60) == 0
    assert (server.root / "share" / "http.bin").read_bytes() == data
    assert (server.root / "share" / "sftp.bin").read_bytes() == data
    assert (server.root / "share" / "scp.bin").read_bytes() == data


def test_the_grace_end_cuts_with_503(tmp_path: Path, client_key: Path) -> None:
    """An upload still running when the grace ends is answered 503 with the reason
    (not the 400 of a body that ended early), nothing of it is kept, a download the
    client stopped reading is cut, and the process exits 0 soon after."""
    data = os.urandom(SIZE)
    local = tmp_path / "up.bin"
    local.write_bytes(data)
    with draining_server(tmp_path, client_key, grace=2) as server:
        (server.root / "share" / "big.bin").write_bytes(os.urandom(64 << 20))
        reader = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
        token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
        reader.sendall(
            b"GET /dav/share/big.bin HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Basic {token}\r\n\r\n".encode()
        )
        assert reader.recv(100).startswith(b"HTTP/1.1 200")  # (then never read again)
        curl = _slow_put(server, local, "/dav/share/up.bin", rate="200k")
        _wait(lambda: _upload_started(server, "up.bin"))
        began = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        out, err = curl.communicate(timeout=60)
        assert out.rstrip().endswith("503") and "shutting down" in out, (out, err)
        assert server.process.wait(timeout=30) == 0
        assert time.monotonic() - began < 20  # (liveness: the grace is 2 s)
        reader.close()
    assert not _upload_started(server, "up.bin")  # (neither the file nor its temp)


def test_a_second_signal_cuts_at_once(tmp_path: Path, client_key: Path) -> None:
    """With a long grace, a second SIGTERM ends the stop at once: the running upload is
    answered 503 and the process exits 0."""
    data = os.urandom(SIZE)
    local = tmp_path / "up.bin"
    local.write_bytes(data)
    with draining_server(tmp_path, client_key, grace=600) as server:
        curl = _slow_put(server, local, "/api/v1/files/share/up.bin", rate="200k")
        _wait(lambda: _upload_started(server, "up.bin"))
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert curl.poll() is None  # (the first signal let it run)
        server.process.send_signal(signal.SIGTERM)
        out, _ = curl.communicate(timeout=60)
        assert out.rstrip().endswith("503") and "shutting down" in out, out
        assert server.process.wait(timeout=30) == 0
