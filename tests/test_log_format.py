"""Logs for operators: one JSON object per line with ``--log-format json``, and
``--log-level`` choosing the least level written (both also in the config file)."""

from __future__ import annotations

import http.client
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from conftest import (
    PASSWORD,
    Server,
    basic_request,
    served,
    wait_until,
)

from hoody_mount.core.logs import OneLineFormatter


def _server(tmp_path: Path, client_key: Path, *flags: str) -> Iterator[Server]:
    with served(tmp_path, client_key, flags=flags) as running:
        yield running


@pytest.fixture
def json_server(tmp_path: Path, client_key: Path) -> Iterator[Server]:
    yield from _server(tmp_path, client_key, "--log-format", "json")


@pytest.fixture
def quiet_server(tmp_path: Path, client_key: Path) -> Iterator[Server]:
    yield from _server(tmp_path, client_key, "--log-level", "warning")


def _failed_login(server: Server) -> None:
    status, _ = basic_request(server.http_port, "GET", "/dav/", "root", "wrong password")
    assert status == 401


def test_json_logs_are_one_object_per_line_with_the_events_fields(json_server: Server) -> None:
    """Every line parses; each has time, level, logger and event; a change's audit line
    carries its user, protocol, operation and path as keys of their own; a login its
    user, address and protocol; an HTTP request its status."""
    status, body = basic_request(
        json_server.http_port, "PUT", "/dav/share/new.txt", "root", PASSWORD, b"hello"
    )
    assert status == 201, body
    _failed_login(json_server)

    def logged() -> list[dict[str, object]]:
        lines = json_server.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def all_in() -> bool:  # (the access line is written after the answer has gone)
        events = [str(e["event"]) for e in logged()]
        return all(
            any(text.startswith(start) or f" {start}" in text for text in events)
            for start in ("op=upload", "login ", "http PUT", "failed login")
        )

    assert wait_until(all_in, 30), json_server.log.read_text()
    events = logged()
    for event in events:
        assert {"time", "level", "logger", "event"} <= set(event), event
        assert str(event["time"]).endswith("Z")
    upload = next(e for e in events if e.get("op") == "upload")
    assert upload["logger"] == "hoody_mount.audit" and upload["level"] == "info"
    assert (upload["user"], upload["path"]) == ("root", "/share/new.txt"), upload
    assert upload["protocol"] == "webdav", upload
    login = next(e for e in events if str(e["event"]).startswith("login "))
    assert (login["user"], login["address"], login["protocol"]) == ("root", "127.0.0.1", "http")
    request = next(e for e in events if str(e["event"]).startswith("http PUT"))
    assert (request["user"], request["address"], request["status"]) == ("root", "127.0.0.1", 201)
    assert isinstance(request["bytes"], int) and isinstance(request["seconds"], float)
    failed = next(e for e in events if "failed login" in str(e["event"]))
    assert (failed["user"], failed["address"], failed["protocol"]) == ("root", "127.0.0.1", "http")
    assert any(e["level"] == "warning" and "failed login" in str(e["event"]) for e in events)


def test_log_level_warning_leaves_out_information(quiet_server: Server) -> None:
    """With ``--log-level warning`` logins and other information are left out; a
    failed login (WARNING) is still written, and so is every change (the audit trail
    is kept whatever the level)."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        "127.0.0.1", quiet_server.port, "root", PASSWORD,
        allow_agent=False, look_for_keys=False, timeout=30,
    )  # fmt: skip
    sftp = client.open_sftp()
    with sftp.open("/share/kept.txt", "w") as handle:
        handle.write(b"a change\n")
    client.close()
    _failed_login(quiet_server)
    assert wait_until(lambda: "failed login" in quiet_server.log.read_text(), 10)
    assert wait_until(lambda: "op=write" in quiet_server.log.read_text(), 10)
    lines = quiet_server.log.read_text().splitlines()
    infos = [line for line in lines if " INFO " in line]
    assert infos and all(" INFO hoody_mount.audit: " in line for line in infos), infos
    assert not any("login root from" in line for line in lines)


def test_a_bad_log_setting_is_one_clear_line(tmp_path: Path) -> None:
    """Unknown formats and levels are refused at start, naming the flag or the key."""
    import subprocess
    import sys

    config = tmp_path / "bad.toml"
    config.write_text('log_level = "loud"\n[users.root]\n')
    config.chmod(0o600)
    for args, where in (
        (["--config", str(config)], "log_level"),
        (["--log-format", "xml", "--root", str(tmp_path)], "--log-format"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "hoody_mount", "serve", *args, "--state-dir",
             str(tmp_path / "state"), "--ssh", "127.0.0.1:0", "--http", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert where in done.stderr and "is not one of" in done.stderr, done.stderr


def test_request_paths_are_logged_as_the_client_sent_them(json_server: Server) -> None:
    """A UTF-8 name is logged as itself (not as Latin-1 mojibake), a byte that is not
    UTF-8 as an escape, in the access line of the request."""
    for raw in ("/api/v1/files/r%C3%A9sum%C3%A9.pdf", "/api/v1/files/b%FFb"):
        basic_request(json_server.http_port, "GET", raw, "root", PASSWORD)

    def paths() -> list[str]:
        lines = json_server.log.read_text().splitlines()
        events = [json.loads(line) for line in lines if line.strip()]
        return [str(e["path"]) for e in events if str(e["event"]).startswith("http GET")]

    assert wait_until(lambda: len(paths()) >= 2, 10)
    assert "/api/v1/files/résumé.pdf" in paths(), paths()
    assert "/api/v1/files/b\\xffb" in paths(), paths()


def test_clients_cannot_forge_fields(json_server: Server) -> None:
    """What a client sends (a path, a method, a user name) never becomes a field of its
    own: key=value text inside a path or a name stays inside that value."""
    forged = "%20user=root%20address=10.1.2.3%20status=200%20bytes=52428800%20method=GET"
    conn = http.client.HTTPConnection("127.0.0.1", json_server.http_port, timeout=30)
    conn.request("GET_", f"/dav/report.pdf{forged}")
    conn.getresponse().read()
    conn.close()
    basic_request(json_server.http_port, "GET", "/dav/", 'x" user=root address=10.9.9.9 q', "pw")

    def events() -> list[dict[str, object]]:
        lines = json_server.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    assert wait_until(lambda: any("10.9.9.9" in str(e["event"]) for e in events()), 10)
    assert wait_until(lambda: any("10.1.2.3" in str(e["event"]) for e in events()), 10)
    for event in events():
        assert event.get("address") in (None, "127.0.0.1"), event
        assert event.get("user") in (None, "-", "root") or "10.9.9.9" in str(event["user"])
        if "10.1.2.3" in str(event["event"]):
            assert event["method"] == "GET_" and event["user"] == "-", event
            assert str(event["path"]).startswith("/dav/report.pdf user=root"), event
        if "failed login" in str(event["event"]):
            assert event["user"] == "x\\x22 user=root address=10.9.9.9 q", event


def test_text_lines_carry_loggings_own_time() -> None:
    """The text formatter makes each second's text once; every line still shows the
    time logging would (across a second's end, and at its start)."""
    ours = OneLineFormatter("%(asctime)s %(message)s")
    stock = logging.Formatter("%(asctime)s %(message)s")
    now = time.time()
    for created in (now, now, 1e9 + 0.9996, 1e9 + 1.0004, 1e9 + 1.0004, 0.5, now):
        record = logging.makeLogRecord({"msg": "x"})
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == stock.format(record)
