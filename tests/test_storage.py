"""Capacity and disk usage (issue 21): ``GET /api/v1/storage`` and ``?du=``, the ``du``
and ``df`` built-ins over SSH, capacity alerts and the metrics, checked against
``df``, ``du`` and ``os.statvfs`` on tmpfs mounts made inside the served root."""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import os
import queue
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    basic_request,
    password_hash,
    require,
    served,
    wait_until,
)
from prometheus_client.parser import text_string_to_metric_families

from hoody_mount.config import ConfigError, load
from hoody_mount.core import mounts


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs mounted on ``folder`` (made if missing), unmounted on exit whatever
    happened, and checked gone from the mount table."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        done = subprocess.run(["umount", str(folder)], capture_output=True)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)
        table = subprocess.run(["mount"], capture_output=True, text=True).stdout
        assert f" {folder} " not in table, table


@contextlib.contextmanager
def nested(base: Path) -> Iterator[tuple[Path, Path]]:
    """``root/share/data`` (8 MiB) with ``root/share/data/inner`` (4 MiB) inside, both
    tmpfs, made before the server's tree is."""
    data = base / "root" / "share" / "data"
    with tmpfs(data) as outer, tmpfs(outer / "inner", "4m") as inner:
        yield outer, inner


def get_json(server: Server, path: str, user: str = "root", password: str = PASSWORD) -> dict:
    status, body = basic_request(server.http_port, "GET", path, user, password)
    assert status == 200, body
    return dict(json.loads(body))


def df(path: Path) -> dict[str, int]:
    """GNU df's figures of ``path`` in bytes."""
    out = subprocess.run(
        ["df", "-B1", "--output=size,used,avail,pcent,itotal,iavail", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()[1]  # fmt: skip
    size, used, avail, pcent, itotal, iavail = out.split()
    return {
        "total_bytes": int(size), "used_bytes": int(used), "free_bytes": int(avail),
        "percent": int(pcent.rstrip("%")), "inodes_total": int(itotal),
        "inodes_free": int(iavail),
    }  # fmt: skip


def assert_like_df(item: dict, path: Path, slack: int = 0) -> None:
    """The figures are df's (``slack`` bytes and inodes apart on a filesystem others
    write to meanwhile)."""
    want = df(path)
    assert item["total_bytes"] == want["total_bytes"], (item, want)
    for key in ("used_bytes", "free_bytes", "inodes_total", "inodes_free"):
        assert abs(item[key] - want[key]) <= slack, (key, item, want)
    if not slack:
        assert math.ceil(item["used_percent"]) == want["percent"], (item, want)


def test_storage_lists_the_root_and_the_mounts_each_user_can_see(
    tmp_path: Path, client_key: Path
) -> None:
    """Each figure is df's of that mount; root sees both tmpfs by the served root's
    paths, the reader jailed at /share sees them by its own, the user jailed
    elsewhere sees only its jail's filesystem."""
    users = f'[users.docs]\npassword_hash = "{password_hash(PASSWORD)}"\nroot = "/share/docs"\n'
    with nested(tmp_path) as (outer, inner), served(tmp_path, client_key, users) as server:
        (outer / "blob").write_bytes(os.urandom(1 << 20))
        (inner / "blob").write_bytes(os.urandom(300_000))
        mine = get_json(server, "/api/v1/storage")["filesystems"]
        assert [f["path"] for f in mine] == ["/", "/share/data", "/share/data/inner"]
        assert_like_df(mine[0], server.root, slack=64 << 20)
        assert_like_df(mine[1], outer)
        assert_like_df(mine[2], inner)
        assert mine[1]["total_bytes"] == 8 << 20 and mine[2]["total_bytes"] == 4 << 20
        assert mine[1]["used_bytes"] == 1 << 20
        reader = get_json(server, "/api/v1/storage", "reader", READER_PASSWORD)["filesystems"]
        assert [f["path"] for f in reader] == ["/", "/data", "/data/inner"]
        assert reader[1:] == [{**f, "path": f["path"][len("/share") :]} for f in mine[1:]]
        docs = get_json(server, "/api/v1/storage", "docs")["filesystems"]
        assert [f["path"] for f in docs] == ["/"]
        assert docs[0]["total_bytes"] == mine[0]["total_bytes"]


def make_tree(top: Path) -> None:
    """Files, a hard link between two folders, a link loop, an absolute link and a
    name with a space, under ``top``."""
    (top / "a" / "sub").mkdir(parents=True)
    (top / "b").mkdir()
    (top / "a" / "f1").write_bytes(os.urandom(5000))
    (top / "a" / "sub" / "f2").write_bytes(os.urandom(70_000))
    os.link(top / "a" / "f1", top / "b" / "hard")
    (top / "a" / "loop").symlink_to("..")
    (top / "c").symlink_to("/")
    (top / "with space.txt").write_bytes(b"x" * 1234)


def gnu_du(folder: Path, *flags: str) -> tuple[str, list[str]]:
    """``du FLAGS DIR`` and ``du FLAGS DIR/*`` (names sorted by their bytes) run here."""
    names = sorted(os.listdir(folder), key=os.fsencode)
    whole = subprocess.run(["du", *flags, str(folder)], capture_output=True, text=True)
    parts = subprocess.run(
        ["du", *flags, *(str(folder / n) for n in names)], capture_output=True, text=True
    )
    return whole.stdout, parts.stdout.splitlines()


def test_du_is_what_du_says_hard_links_once_links_never_followed(
    tmp_path: Path, client_key: Path
) -> None:
    """``?du=`` gives ``du -sb DIR`` as the total and ``du -sb DIR/*`` as the entries:
    the hard link counts in its first folder only, the loop and the link to / are
    counted as links; a read-only user jailed above gets the same by its own path."""
    with nested(tmp_path) as (outer, _inner), served(tmp_path, client_key) as server:
        tree = outer / "tree"
        make_tree(tree)
        whole, parts = gnu_du(tree, "-sb")
        answer = get_json(server, "/api/v1/storage?du=/share/data/tree")
        assert answer["path"] == "/share/data/tree" and answer["complete"] is True
        assert answer["total_bytes"] == int(whole.split()[0])
        assert [(e["name"], e["bytes"]) for e in answer["entries"]] == [
            (line.split("\t")[1].rsplit("/", 1)[1], int(line.split("\t")[0])) for line in parts
        ]
        files = {e["name"]: e["files"] for e in answer["entries"]}
        assert files == {"a": 3, "b": 0, "c": 1, "with space.txt": 1}
        reader = get_json(server, "/api/v1/storage?du=/data/tree", "reader", READER_PASSWORD)
        assert reader["entries"] == answer["entries"] and reader["path"] == "/data/tree"
        status, body = basic_request(
            server.http_port, "GET", "/api/v1/storage?du=/share/data/tree/a/f1", "root", PASSWORD
        )
        assert status == 400 and b"not_a_directory" in body
        status, body = basic_request(
            server.http_port, "GET", "/api/v1/storage?du=/nowhere", "root", PASSWORD
        )
        assert status == 404, body


def test_du_past_its_budget_says_it_is_incomplete(tmp_path: Path, client_key: Path) -> None:
    """With a budget of a millisecond, a tree of 4,000 files is not summed whole: the
    answer says ``complete: false`` and counts less than du."""
    top = "storage = { du_seconds = 0.001 }"
    with served(tmp_path, client_key, top=top) as server:
        big = server.root / "share" / "big"
        for i in range(200):
            folder = big / f"d{i:03}"
            folder.mkdir(parents=True)
            for j in range(20):
                (folder / f"f{j}").write_bytes(b"z" * 100)
        answer = get_json(server, "/api/v1/storage?du=/share/big")
        assert answer["complete"] is False
        whole, _parts = gnu_du(big, "-sb")
        assert answer["total_bytes"] < int(whole.split()[0])
        assert len(answer["entries"]) < 200


def ssh(server: Server, user: str, command: str) -> subprocess.CompletedProcess[str]:
    """``ssh user@server command`` with OpenSSH (the built-ins answer)."""
    require("ssh")
    return subprocess.run(
        ["ssh", "-p", str(server.port), *server.ssh_options(), f"{user}@127.0.0.1", command],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def local(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``command`` run here by a shell in ``cwd`` (C locale: names sorted by bytes)."""
    env = {**os.environ, "LC_ALL": "C"}
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, env=env)


def test_ssh_du_prints_what_gnu_du_prints(tmp_path: Path, client_key: Path) -> None:
    """The ``du`` built-in expands ``DIR/*`` itself and prints GNU du's exact lines,
    for the administrator and for the read-only user jailed at /share (same relative
    paths, run here from the matching folder)."""
    with nested(tmp_path) as (outer, _inner), served(tmp_path, client_key) as server:
        make_tree(outer / "tree")
        (outer / "tree" / ".hidden").write_bytes(b"h" * 9000)  # (a glob leaves it out)
        share = server.root / "share"
        for command in (
            "du -sh data/tree/*", "du -sb data/tree", "du -sk data/tree/*", "du -s data/tree",
            "du -shc data/tree/*", "du -sh --apparent-size data/tree/a", "du -sbh data/tree",
            "du -s data/tree/*.txt", "du -sh data/tree/a/",
        ):  # fmt: skip
            want = local(command, share)
            assert want.returncode == 0, want.stderr
            for user, cwd in (("reader", ""), ("root", "share/")):
                got = ssh(server, user, command.replace("data/", cwd + "data/"))
                assert got.returncode == 0, (command, got.stderr)
                assert got.stdout == want.stdout.replace("data/", cwd + "data/"), command
        missing = ssh(server, "reader", "du -sh nowhere")
        assert missing.returncode == 1
        assert "du: cannot access 'nowhere': No such file or directory" in missing.stderr
        refused = ssh(server, "reader", "du -h data")
        assert refused.returncode == 1 and "add -s" in refused.stderr


def test_ssh_df_lists_the_nested_mounts(tmp_path: Path, client_key: Path) -> None:
    """``df -h`` lists the jail and each mount inside it, by the user's own paths,
    with GNU df's sizes; ``df`` of a path names the mount that holds it."""
    with nested(tmp_path) as (outer, inner), served(tmp_path, client_key) as server:
        (inner / "blob").write_bytes(os.urandom(1 << 20))
        for user, prefix in (("reader", ""), ("root", "/share")):
            got = ssh(server, user, "df -h")
            assert got.returncode == 0, got.stderr
            rows = [line.split() for line in got.stdout.splitlines()[1:]]
            assert [row[-1] for row in rows] == ["/", f"{prefix}/data", f"{prefix}/data/inner"]
            for row, mount in zip(rows[1:], (outer, inner), strict=True):
                want = local(f"df -h {mount}", tmp_path).stdout.splitlines()[1].split()
                assert row[1:5] == want[1:5], (row, want)
        one = ssh(server, "reader", "df /data/inner/blob")
        assert one.returncode == 0 and one.stdout.splitlines()[1].endswith(" /data/inner")


class Hooks:
    """A webhook receiver on 127.0.0.1 in a thread: the JSON bodies POSTed to it."""

    def __init__(self, port: int = 0) -> None:
        received = self.received = queue.Queue()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.put(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def events(self, path: str, wait: float) -> list[dict]:
        """The events about ``path`` received within ``wait`` seconds from now, or
        within 1.5 s (seven looks of the server) after the first."""
        found, deadline = [], time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.received.get(timeout=left)
            except queue.Empty:
                break
            if event["path"] == path:
                found.append(event)
                deadline = min(deadline, time.monotonic() + 1.5)
        return found

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def alerts_table(url: str, extra: str = "") -> str:
    return f'alerts = {{ used_percent = 50, webhook = "{url}", interval = 0.2{extra} }}'


def test_a_webhook_hears_each_crossing_once(tmp_path: Path, client_key: Path) -> None:
    """A tmpfs filled past 50% brings one "above" event (to the webhook and to the
    command's stdin), however many looks follow; freed, one "below"."""
    hooks = Hooks()
    sink = tmp_path / "events.jsonl"
    command = f', command = ["sh", "-c", "cat >> {sink}; echo >> {sink}"]'
    top = alerts_table(f"http://127.0.0.1:{hooks.port}/hook", command)
    data = tmp_path / "root" / "share" / "data"
    try:
        with tmpfs(data), served(tmp_path, client_key, top=top) as server:
            assert hooks.events("/share/data", 1.0) == []  # (below: nothing to say)
            (data / "fill").write_bytes(os.urandom(5 << 20))  # 62.5% of 8 MiB
            above = hooks.events("/share/data", 10.0)
            assert len(above) == 1, above
            event = above[0]
            assert event["event"] == "capacity" and event["state"] == "above"
            assert event["threshold"] == 50 and 62.5 <= event["used_percent"] < 64
            assert event["free_bytes"] == os.statvfs(data).f_bavail * os.statvfs(data).f_frsize
            (data / "fill").unlink()
            below = hooks.events("/share/data", 10.0)
            assert [e["state"] for e in below] == ["below"], below
            assert below[0]["used_percent"] < 50
            assert wait_until(lambda: sink.exists() and sink.read_text().count("\n") >= 2, 10)
            lines = [json.loads(line) for line in sink.read_text().splitlines() if line]
            ours = [e["state"] for e in lines if e["path"] == "/share/data"]
            assert ours == ["above", "below"], lines
            metrics = basic_request(server.http_port, "GET", "/metrics", "root", PASSWORD)[1]
            figures = {
                (sample.name, sample.labels.get("path")): sample.value
                for family in text_string_to_metric_families(metrics.decode())
                for sample in family.samples
            }
            assert figures[("hoody_mount_mount_size_bytes", "/share/data")] == 8 << 20
            assert figures[("hoody_mount_mount_used_percent", "/share/data")] < 50
            assert ("hoody_mount_mount_free_bytes", "/") in figures
    finally:
        hooks.close()


def test_an_unreachable_webhook_is_retried_and_logged_and_blocks_nothing(
    tmp_path: Path, client_key: Path
) -> None:
    """With nothing listening, each failed attempt is logged and tried again later,
    while the server answers requests at once; once a receiver listens there, the
    retry delivers the event."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path / "root" / "share" / "data"
    hooks = None
    try:
        top = alerts_table(f"http://127.0.0.1:{port}/hook")
        with tmpfs(data), served(tmp_path, client_key, top=top) as server:
            (data / "fill").write_bytes(os.urandom(5 << 20))
            failed = "alert to http://127.0.0.1:"
            assert wait_until(lambda: server.log.read_text().count(failed) >= 2, 20), (
                server.log.read_text()
            )
            began = time.monotonic()
            answer = get_json(server, "/api/v1/storage")
            assert time.monotonic() - began < 2
            assert any(f["path"] == "/share/data" for f in answer["filesystems"])
            hooks = Hooks(port)
            events = hooks.events("/share/data", 20.0)
            assert [e["state"] for e in events] == ["above"], server.log.read_text()
            assert "(attempt 1 of" in server.log.read_text()
    finally:
        if hooks is not None:
            hooks.close()


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('[alerts]\nwebhook = "http://x/"', "alerts.used_percent: missing"),
        ('[alerts]\nused_percent = 120\nwebhook = "http://x/"', "alerts.used_percent: must"),
        ("[alerts]\nused_percent = 80", "alerts.webhook: give a webhook, a command or both"),
        ('[alerts]\nused_percent = 80\nwebhook = "ftp://x/"', "alerts.webhook: expected"),
        ('[alerts]\nused_percent = 80\ncommand = "notify"', "alerts.command: expected"),
        ('[alerts]\nused_percent = 80\ncommand = ["n"]\ninterval = 0', "alerts.interval"),
        ('[alerts]\nused_percent = 80\ncommand = ["n"]\nwebhok = "x"', "alerts.webhok: unknown"),
        ("[storage]\ndu_seconds = -1", "storage.du_seconds: must be seconds"),
    ],
)
def test_alert_and_storage_keys_are_checked(tmp_path: Path, table: str, error: str) -> None:
    """A mistake in [alerts] or [storage] is one line naming the key."""
    path = tmp_path / "hoody-mount.toml"
    path.write_text(f'root = "."\n[users.root]\n{table}\n')
    with pytest.raises(ConfigError, match=re.escape(error)):
        load(path)
    good = '[alerts]\nused_percent = 80\ncommand = ["notify-send", "full"]\ninterval = 5'
    path.write_text(f'root = "."\n[users.root]\n{good}\n')
    alerts = load(path).alerts
    assert alerts is not None and alerts.command == ("notify-send", "full")
    assert alerts.interval == 5 and alerts.webhook is None and alerts.used_percent == 80


def test_the_listing_page_shows_the_capacity_of_its_filesystem(
    tmp_path: Path, client_key: Path
) -> None:
    """A folder's page on the nested tmpfs shows a bar of its filesystem's use and the
    space free there (not the root's)."""
    with nested(tmp_path) as (_outer, inner), served(tmp_path, client_key) as server:
        (inner / "blob").write_bytes(os.urandom(1 << 20))  # a quarter of 4 MiB
        status, body = basic_request(
            server.http_port, "GET", "/api/v1/files/share/data/inner/", "root", PASSWORD,
            Accept="text/html",
        )  # fmt: skip
        assert status == 200
        page = body.decode()
        assert '<meter min="0" max="100"' in page and 'value="25"' in page, page[:2000]
        assert "3.0 MiB free of 4.0 MiB (25% used)" in page


def test_mountinfo_names_are_unescaped() -> None:
    """The kernel writes a space, a tab, a line break and a backslash in a mount point
    as octal escapes; optional fields before the ``-`` are skipped."""
    text = (
        "27 1 254:0 / / rw - ext4 /dev/vda rw\n"
        "40 27 0:50 / /srv/my\\040data\\011x\\134y rw - tmpfs tmpfs rw\n"
        "41 27 0:51 / /srv/db rw,relatime shared:1 - tmpfs tmpfs rw\n"
        "42 27 0:52 / /srv/db rw - xfs /dev/sdb rw\n"
        "43 27 0:53 / /proc rw - proc proc rw\n"
    )
    found = mounts.parse(text)
    assert [m.point for m in found] == ["/", "/srv/my data\tx\\y", "/srv/db", "/srv/db", "/proc"]
    assert [m.fs_type for m in found] == ["ext4", "tmpfs", "tmpfs", "xfs", "proc"]
    assert mounts.unescape("a\\012b") == "a\nb"


def test_ssh_du_is_bounded_in_paths(server: Server) -> None:
    """A du command names at most 256 paths, and its patterns expand to at most 10,000:
    past either it is one clear error, never a server that grows without bound (300
    patterns over a big folder took 347 MB and 20 s, and went on after the client left)."""
    many = server.root / "share" / "many"
    many.mkdir()
    for i in range(10_001):
        (many / f"f{i:05d}").touch()
    long = ssh(server, "root", "du -s " + " ".join(["/share/docs"] * 300))
    assert long.returncode != 0 and "at most 256 paths at once" in long.stderr, long.stderr
    wide = ssh(server, "root", "du -s /share/many/*")
    assert wide.returncode != 0 and "more than 10000 paths" in wide.stderr, wide.stderr
    fine = ssh(server, "root", "du -s /share/docs/*")
    assert fine.returncode == 0 and fine.stdout.endswith("\t/share/docs/readme.txt\n")


def test_df_keeps_each_mount_on_one_line(server: Server) -> None:
    """A mount whose path holds a newline is one row, the newline written as in
    /proc/mounts (\\012): a path cannot forge a row."""
    odd = server.root / "share" / "odd\nname"
    odd.mkdir()
    with tmpfs(odd):
        listed = ssh(server, "root", "df")
    assert listed.returncode == 0, listed.stderr
    assert any(line.endswith(" /share/odd\\012name") for line in listed.stdout.splitlines())
    assert not any(line.startswith("name") for line in listed.stdout.splitlines())


def test_df_takes_combined_flags(server: Server) -> None:
    """``df -hP`` and ``df -Pk``, the usual idioms of monitoring scripts, are ``-h -P``
    and ``-P -k``."""
    for combined, apart in (("-hP", "-h -P"), ("-Pk", "-P -k")):
        one, other = ssh(server, "root", f"df {combined} /"), ssh(server, "root", f"df {apart} /")
        assert one.returncode == 0, one.stderr
        assert one.stdout.splitlines()[0] == other.stdout.splitlines()[0]
    assert ssh(server, "root", "df -hx /").returncode != 0  # (an unknown flag is still named)


def test_a_filesystem_unmounted_while_above_is_said_gone() -> None:
    """A watched mount that goes away while above the threshold gives one ``gone``
    event (the receiver thought it full for ever); one that goes while below, none."""
    from hoody_mount.alerts import Watch
    from hoody_mount.core.filesystems import Usage

    def usage(path: str, percent: float) -> Usage:
        return Usage(path, 100, int(percent), 100 - int(percent), percent, 10, 5)

    watch = Watch(80)
    assert [e["state"] for e in watch.events([usage("/", 10), usage("/t", 90)])] == ["above"]
    gone = watch.events([usage("/", 10)])
    assert [(e["state"], e["path"]) for e in gone] == [("gone", "/t")]
    assert watch.events([usage("/", 10)]) == []
    watch.events([usage("/", 10), usage("/u", 20)])
    assert watch.events([usage("/", 10)]) == []
