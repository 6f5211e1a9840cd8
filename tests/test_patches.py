"""The private names used of asyncssh, cheroot and WsgiDAV are checked at start, with a
clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest
import wsgidav
from asyncssh.channel import SSHServerChannel
from wsgidav.lock_man.lock_manager import LockManager

from hoody_mount.dav import app as dav_app
from hoody_mount.dav import wsgidav_glue
from hoody_mount.http_transport import cheroot_glue
from hoody_mount.ssh import patches
from hoody_mount.unfit import UnfitLibrary


def test_the_pinned_asyncssh_has_every_name() -> None:
    patches.check()


def test_a_missing_name_stops_the_start_with_one_clear_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(SSHServerChannel, "_process_exec_request")
    with pytest.raises(RuntimeError) as refused:
        patches.check()
    text = str(refused.value)
    assert text.startswith(f"asyncssh {asyncssh.__version__} does not fit hoody-mount")
    assert "SSHServerChannel._process_exec_request (raw_commands)" in text


def test_the_server_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    """With a name gone (as after an unreviewed upgrade) the server says so and stops."""
    (tmp_path / "root").mkdir()
    code = (
        "import sys; import asyncssh.channel as c; del c.SSHServerChannel._start_session; "
        "from hoody_mount.cli import main; sys.argv = ['hoody-mount'] + sys.argv[1:]; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "serve", "--root", str(tmp_path / "root"), "--state-dir",
         str(tmp_path / "state"), "--ssh", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not fit hoody-mount" in lines[0], done.stderr
    assert "SSHServerChannel._start_session (raw_commands)" in lines[0]


def test_the_scp_adapter_refuses_what_scp_never_calls() -> None:
    """asyncssh's SFTPServer acts on the host's own filesystem in every method not
    overridden: each one scp does not use refuses instead."""
    import asyncio
    import errno

    from hoody_mount.ssh.sftp import _NOT_FOR_SCP, SFTPAdapter

    for name in _NOT_FOR_SCP:
        method = getattr(SFTPAdapter, name)
        with pytest.raises(OSError) as refused:
            result = method(object(), b"/etc/passwd", b"/tmp/x")
            if asyncio.iscoroutine(result):
                asyncio.run(result)
        assert refused.value.errno == errno.EPERM, name
    own = {n for n, v in vars(asyncssh.SFTPServer).items() if callable(v) and not n.startswith("_")}
    kept = {"convert_attrs", "format_user", "format_group", "format_longname", "open", "close",
            "read", "write", "stat", "setstat", "scandir", "mkdir", "exit"}  # fmt: skip
    assert own <= kept | set(_NOT_FOR_SCP), own - kept - set(_NOT_FOR_SCP)


def test_the_pinned_wsgidav_and_cheroot_fit() -> None:
    """The other two libraries whose private names are used pass their checks."""
    cheroot_glue.check()
    wsgidav_glue.check()


def test_a_wsgidav_that_keeps_its_locks_otherwise_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Were WsgiDAV's lock manager to stop finding its locks through the storage it is
    given (the core's table, which every protocol checks), locks would be lost or
    ignored: the server refuses to start, naming WsgiDAV and what changed."""
    monkeypatch.setattr(LockManager, "is_url_locked", lambda self, url: False)
    with pytest.raises(UnfitLibrary) as refused:
        dav_app.build(tmp_path)
    text = str(refused.value)
    assert text.startswith(f"WsgiDAV {wsgidav.__version__} does not fit hoody-mount"), text
    assert "does not find a lock in hoody-mount's table" in text
