"""SFTP on a served folder on tmpfs (issue 24): requests answered on the event loop.

The same requests (paramiko, as an administrator, a read-only user and a jailed one,
and sshfs extracting a tree as root with owners kept) get the same answers from a
server over tmpfs as from one over the disk; only over tmpfs does the
``requests_on_loop`` metric move; and a mount below the tmpfs is never entered on the
loop (its requests go to a worker, with the same answers).
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest
from conftest import (
    PASSWORD,
    Server,
    basic_request,
    cannot_run_here,
    extract,
    require,
    served,
    snapshot,
    tmpfs,
)
from prometheus_client.parser import text_string_to_metric_families
from test_clients_mount import sshfs_mount

ON_LOOP = "hoody_mount_requests_on_loop_total"


def on_loop(server: Server) -> dict[str, float]:
    """The requests answered on the loop so far, by SFTP operation."""
    status, body = basic_request(server.http_port, "GET", "/metrics", "root", PASSWORD)
    assert status == 200, body
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == ON_LOOP and sample.labels.get("protocol") == "sftp":
                counts[sample.labels["op"]] = sample.value
    return counts


@pytest.fixture
def memory_server(tmp_path: Path, client_key: Path) -> Iterator[Server]:
    """A server whose whole tree (root, state) lies on a tmpfs of its own."""
    if os.geteuid() != 0:
        cannot_run_here("mounting a tmpfs needs root")
    with tmpfs(tmp_path / "memory") as base, served(base, client_key) as running:
        yield running


@pytest.fixture
def disk_server(tmp_path: Path, client_key: Path) -> Iterator[Server]:
    """The same server over the disk (tmp_path), to compare with."""
    with served(tmp_path / "disk", client_key) as running:
        yield running


@contextlib.contextmanager
def sftp_as(server: Server, user: str) -> Iterator[paramiko.SFTPClient]:
    transport = paramiko.Transport(("127.0.0.1", server.port))
    try:
        transport.connect(username=user, pkey=paramiko.Ed25519Key.from_private_key_file(
            str(server.key)
        ))  # fmt: skip
        client = paramiko.SFTPClient.from_transport(transport)
        assert client is not None
        yield client
    finally:
        transport.close()


class Transcript:
    """What each request answered: the outcome, or the error's class and errno."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, label: str, call: Callable[[], object]) -> None:
        try:
            result = call()
        except OSError as exc:
            self.lines.append(f"{label}: {type(exc).__name__} {exc.errno}")
            return
        if isinstance(result, paramiko.SFTPAttributes):
            assert result.st_mode is not None
            result = (stat.filemode(result.st_mode), result.st_size, result.st_uid)
        elif isinstance(result, list):
            attrs = paramiko.SFTPAttributes
            result = sorted(
                (a.filename, stat.filemode(a.st_mode or 0)) if isinstance(a, attrs) else a
                for a in result
            )
        self.lines.append(f"{label}: {result!r}")


def scenario(server: Server) -> list[str]:
    """Requests of every kind that may be answered on the loop, by three users."""
    note = Transcript()
    big = server.root / "big"  # more names than a listing on the loop may read
    big.mkdir()
    for number in range(1500):
        (big / f"n{number}").touch()
    with sftp_as(server, "root") as sftp:
        note("big listdir", lambda: len(sftp.listdir("/big")))
        note("mkdir", lambda: sftp.mkdir("/w", 0o750))
        note("mkdir again", lambda: sftp.mkdir("/w", 0o750))
        note("mkdir sub", lambda: sftp.mkdir("/w/sub"))
        with sftp.open("/w/f.txt", "w") as f:
            f.write(b"hello tmpfs\n")
        with sftp.open("/w/f.txt", "r+") as f:
            note("fchmod", lambda: f.chmod(0o604))
            note("fchown same", lambda: f.chown(f.stat().st_uid or 0, f.stat().st_gid or 0))
        note("stat", lambda: sftp.stat("/w/f.txt"))
        note("open excl", lambda: sftp.open("/w/f.txt", "x"))
        note("chmod", lambda: sftp.chmod("/w/f.txt", 0o640))
        note("chmod same", lambda: sftp.chmod("/w/f.txt", 0o640))
        st = sftp.stat("/w/f.txt")
        note("chown same", lambda: sftp.chown("/w/f.txt", st.st_uid or 0, st.st_gid or 0))
        note("chown", lambda: sftp.chown("/w/f.txt", 4321, 4321))
        note("stat after chown", lambda: sftp.stat("/w/f.txt"))
        note("utime", lambda: sftp.utime("/w/f.txt", (1_000_000, 2_000_000)))
        note("mtime", lambda: sftp.stat("/w/f.txt").st_mtime)
        note("truncate", lambda: sftp.truncate("/w/f.txt", 5))
        note("rename", lambda: sftp.rename("/w/f.txt", "/w/g.txt"))
        note("rename missing", lambda: sftp.rename("/w/f.txt", "/w/h.txt"))
        note("posix-rename", lambda: sftp.posix_rename("/w/g.txt", "/w/f.txt"))
        note("symlink", lambda: sftp.symlink("f.txt", "/w/link"))
        note("readlink", lambda: sftp.readlink("/w/link"))
        note("lstat link", lambda: sftp.lstat("/w/link"))
        note("stat link", lambda: sftp.stat("/w/link"))
        note("escape", lambda: sftp.symlink("../../../../outside/secret.txt", "/w/escape"))
        note("stat escape", lambda: sftp.stat("/w/escape"))
        note("open escape", lambda: sftp.open("/w/escape").read())
        note("read", lambda: sftp.open("/w/link").read())
        note("listdir", lambda: sftp.listdir_attr("/w"))
        note("rmdir full", lambda: sftp.rmdir("/w"))
        note("remove dir", lambda: sftp.remove("/w/sub"))
        note("rmdir sub", lambda: sftp.rmdir("/w/sub"))
        note("rmdir missing", lambda: sftp.rmdir("/w/sub"))
        for name in ("link", "escape", "f.txt"):
            note(f"remove {name}", lambda name=name: sftp.remove(f"/w/{name}"))
        note("remove missing", lambda: sftp.remove("/w/f.txt"))
        note("rmdir", lambda: sftp.rmdir("/w"))
    with sftp_as(server, "reader") as sftp:
        note("reader read", lambda: sftp.open("/docs/readme.txt").read())
        note("reader mkdir", lambda: sftp.mkdir("/docs/new"))
        note("reader remove", lambda: sftp.remove("/docs/readme.txt"))
        note("reader rename", lambda: sftp.rename("/docs/readme.txt", "/docs/x"))
        note("reader chmod", lambda: sftp.chmod("/docs/readme.txt", 0o644))
        note("reader symlink", lambda: sftp.symlink("readme.txt", "/docs/l"))
        note("reader create", lambda: sftp.open("/docs/n.txt", "w"))
    with sftp_as(server, "jailed") as sftp:
        note("jailed mkdir", lambda: sftp.mkdir("/../../d"))
        note("jailed listdir", lambda: sftp.listdir("/"))
        note("jailed symlink", lambda: sftp.symlink("/etc/passwd", "/pw"))
        note("jailed follow", lambda: sftp.open("/pw").read())
        note("jailed setuid", lambda: sftp.chmod("/d", 0o4755))
        note("jailed chown", lambda: sftp.chown("/d", 4321, 4321))
        note("jailed rename", lambda: sftp.rename("/d", "/../e"))
        note("jailed remove", lambda: sftp.remove("/pw"))
        note("jailed rmdir", lambda: sftp.rmdir("/e"))
    return note.lines


def test_answers_on_tmpfs_are_those_on_the_disk_and_made_on_the_loop(
    memory_server: Server, disk_server: Server
) -> None:
    """Every answer of the scenario is the same over tmpfs as over the disk (rights,
    jail, links out of the jail, read-only user); over tmpfs most are made on the loop."""
    on_disk = scenario(disk_server)
    in_memory = scenario(memory_server)
    assert in_memory == on_disk
    assert not any(on_loop(disk_server).values())
    counted = on_loop(memory_server)
    answered = ("opendir", "mkdir", "open", "write", "setstat", "fsetstat", "rename",
                "posix-rename", "symlink", "readlink", "remove", "rmdir")  # fmt: skip
    for op in answered:
        assert counted.get(op, 0) > 0, (op, counted)
    assert (memory_server.root / "home" / "jailed" / "e").exists() is False
    assert (memory_server.outside / "secret.txt").read_text() == "outside secret\n"


def test_a_mount_below_the_tmpfs_is_never_entered_on_the_loop(
    memory_server: Server, tmp_path: Path
) -> None:
    """Requests on a mount below the served tmpfs (here another tmpfs, as a FUSE or NFS
    mount would be) are answered as usual, by a worker: the loop count does not move."""
    inner = memory_server.root / "inner"
    with tmpfs(inner):
        (inner / "old.txt").write_text("old\n")
        (inner / "folder").mkdir()
        before = on_loop(memory_server)
        note = Transcript()
        with sftp_as(memory_server, "root") as sftp:
            note("listdir above", lambda: "inner" in sftp.listdir("/"))
            note("listdir", lambda: sorted(sftp.listdir("/inner")))
            note("mkdir", lambda: sftp.mkdir("/inner/d"))
            note("mkdir mount point", lambda: sftp.mkdir("/inner"))
            with sftp.open("/inner/d/f.txt", "w") as f:
                f.write(b"in the inner mount\n")
            note("chmod", lambda: sftp.chmod("/inner/d/f.txt", 0o600))
            note("rename", lambda: sftp.rename("/inner/d/f.txt", "/inner/d/g.txt"))
            note("symlink", lambda: sftp.symlink("g.txt", "/inner/d/l"))
            note("readlink", lambda: sftp.readlink("/inner/d/l"))
            note("read old", lambda: sftp.open("/inner/old.txt").read())
            note("remove", lambda: sftp.remove("/inner/d/l"))
            note("rmdir folder", lambda: sftp.rmdir("/inner/folder"))
            note("remove mount point", lambda: sftp.remove("/inner"))
            note("rmdir mount point", lambda: sftp.rmdir("/inner"))
            note("rename mount point", lambda: sftp.rename("/inner", "/moved"))
            note("chmod mount point", lambda: sftp.chmod("/inner", 0o755))
        assert on_loop(memory_server) == before
        assert (inner / "d" / "g.txt").read_bytes() == b"in the inner mount\n"
        assert stat.S_IMODE((inner / "d" / "g.txt").stat().st_mode) == 0o600
        assert not (inner / "folder").exists()
        assert note.lines == [
            "listdir above: True",
            "listdir: ['folder', 'old.txt']",
            "mkdir: None",
            "mkdir mount point: OSError None",
            "chmod: None",
            "rename: None",
            "symlink: None",
            "readlink: 'g.txt'",
            "read old: b'old\\n'",
            "remove: None",
            "rmdir folder: None",
            "remove mount point: OSError None",
            "rmdir mount point: OSError None",
            "rename mount point: OSError None",
            "chmod mount point: None",
        ]
        for name in os.listdir(inner):  # (nothing open there: it unmounts)
            path = inner / name
            if path.is_dir():
                for member in path.iterdir():
                    member.unlink()
                path.rmdir()
            else:
                path.unlink()


def test_sshfs_extracts_as_root_with_owners_onto_tmpfs_as_onto_the_disk(
    memory_server: Server, tmp_path: Path, source_tar: Path
) -> None:
    """``tar -x --same-owner`` as root onto sshfs over tmpfs makes the tree a local
    extract makes (content, modes, times); ``ls -lR`` and ``rm -rf`` work; requests
    were answered on the loop."""
    require("tar")
    expected = extract(source_tar, tmp_path / "expected")
    mountpoint = tmp_path / "mnt"
    before = sum(on_loop(memory_server).values())
    with sshfs_mount(memory_server, "root", mountpoint, tmp_path / "sshfs.log") as mounted:
        target = mounted / "tree"
        target.mkdir()
        result = subprocess.run(
            ["tar", "--same-owner", "-xf", str(source_tar), "-C", str(target)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        listing = subprocess.run(
            ["ls", "-lR", str(target)], capture_output=True, text=True, timeout=300
        )
        assert listing.returncode == 0, listing.stderr
        made = snapshot(memory_server.root / "tree")
        made.pop(".")
        wanted = snapshot(expected)
        wanted.pop(".")
        assert made == wanted
        removal = subprocess.run(
            ["rm", "-rf", str(target)], capture_output=True, text=True, timeout=300
        )
        assert removal.returncode == 0, removal.stderr
    assert not (memory_server.root / "tree").exists()
    assert sum(on_loop(memory_server).values()) > before


def sftp_batch(server: Server | None, commands: list[str]) -> list[str]:
    """What OpenSSH's sftp says running ``commands`` (errors do not stop it) against
    ``server``, or against OpenSSH's own sftp-server (None) started by sftp itself."""
    require("sftp")
    if server is None:
        target = ["-D", "/usr/lib/openssh/sftp-server"]
    else:
        target = [
            "-P", str(server.port), "-i", str(server.key), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "root@127.0.0.1",
        ]  # fmt: skip
    batch = "".join(f"-{command}\n" for command in commands)
    result = subprocess.run(
        ["sftp", "-b", "-", *target], input=batch, capture_output=True, text=True, timeout=120
    )
    return [line for line in result.stderr.splitlines() if line.startswith(("remote ", "Couldn"))]


@pytest.mark.parametrize("where", ["disk", "memory"])
def test_a_no_op_chmod_or_chown_of_a_frozen_file_is_refused_as_by_openssh(
    where: str, memory_server: Server, disk_server: Server
) -> None:
    """A chmod or chown to what an immutable file, or a file on a read-only mount,
    already has is refused by the kernel: the answer is OpenSSH's sftp-server's (but
    for EPERM's mapping), not an OK from the loop's no-op check."""
    require("chattr", "/usr/lib/openssh/sftp-server")
    server = memory_server if where == "memory" else disk_server
    docs = server.root / "share" / "docs"
    frozen, readonly = docs / "frozen.txt", docs / "ro"
    frozen.write_text("frozen\n")
    frozen.chmod(0o644)
    readonly.mkdir()
    (readonly / "f.txt").write_text("read-only mount\n")
    (readonly / "f.txt").chmod(0o644)
    chattr = subprocess.run(["chattr", "+i", str(frozen)], capture_output=True, text=True)
    if chattr.returncode:
        cannot_run_here(f"no immutable files here: {chattr.stderr}")
    subprocess.run(["mount", "--bind", str(readonly), str(readonly)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(readonly)], check=True)
        ours, theirs = [], []
        for path in (frozen, readonly / "f.txt"):
            virtual = "/" + str(path.relative_to(server.root))
            uid, gid = path.stat().st_uid, path.stat().st_gid
            commands = ["chmod 644 {}", f"chown {uid} {{}}", f"chgrp {gid} {{}}"]
            ours += sftp_batch(server, [c.format(virtual) for c in commands])
            theirs += [
                line.replace(str(path), virtual)
                for line in sftp_batch(None, [c.format(path) for c in commands])
            ]
        assert len(theirs) == 6, theirs
        # The read-only mount: EROFS, a failure from both. The immutable file: EPERM,
        # which OpenSSH answers as "permission denied" and hoody-mount as a failure
        # (docs/design.md: sshfs then shows EPERM, as a local disk does).
        assert ours[3:] == theirs[3:]
        assert ours[:3] == [line.replace("Permission denied", "Failure") for line in theirs[:3]]
    finally:
        subprocess.run(["umount", str(readonly)], capture_output=True, timeout=30)
        subprocess.run(["chattr", "-i", str(frozen)], capture_output=True, timeout=30)
    assert stat.S_IMODE(frozen.stat().st_mode) == 0o644
