"""Hostile input through SFTP: jail escapes, read-only bypasses, authentication, fairness.

Every escape test snapshots what the user must never reach (the ``outside`` neighbour
folder and, for jailed users, the rest of the served root) before and after, comparing
paths, types, modes, link counts, times and contents. Expected behaviour follows OpenSSH's
sftp-server where the protocol leaves room (for example: a read-only server answers
PERMISSION_DENIED to every write request, before looking at the path).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import os
import stat
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest
from asyncssh.constants import FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC, FXF_WRITE
from conftest import PASSWORD, READER_PASSWORD, Server

T = TypeVar("T")

TIMEOUT = 60.0
SECRET = b"outside secret\n"
MARK = b"PWNED-BY-TEST"
CANARY = "CANARY-"
HOST_ONLY_NAMES = {"usr", "proc", "bin", "root", "outside-only", "share", "etc", "home"}
Snapshot = dict[str, tuple[Any, ...]]


# -- helpers ---------------------------------------------------------------------------


def run(factory: Callable[[], Awaitable[T]], timeout: float = 180.0) -> T:
    """Run one async test body on a fresh event loop, bounded by ``timeout`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(factory(), timeout)

    return asyncio.run(bounded())


async def connect(
    server: Server, user: str = "root", password: str | None = None
) -> asyncssh.SSHClientConnection:
    """An SSH connection: with the test key, or with only ``password`` when one is given."""
    options: dict[str, Any] = {
        "username": user,
        "known_hosts": None,
        "agent_path": None,
    }
    if password is None:
        options.update(client_keys=[str(server.key)], password=None)
    else:
        options.update(client_keys=None, password=password, preferred_auth="password")
    return await asyncio.wait_for(asyncssh.connect("127.0.0.1", server.port, **options), TIMEOUT)


def snapshot(top: Path, exclude: tuple[Path, ...] = ()) -> Snapshot:
    """Every name under ``top`` (itself included) with its type, mode, owner, link count,
    size, mtime, ctime and content hash (or link target), links never followed."""
    out: Snapshot = {}
    skip = {os.fsencode(p) for p in exclude}
    stack = [os.fsencode(top)]
    while stack:
        path = stack.pop()
        if path in skip:
            continue
        st = os.lstat(path)
        extra: Any = None
        if stat.S_ISLNK(st.st_mode):
            extra = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as handle:
                extra = hashlib.sha256(handle.read()).hexdigest()
        elif stat.S_ISDIR(st.st_mode):
            stack.extend(os.path.join(path, name) for name in os.listdir(path))
        key = os.fsdecode(os.path.relpath(path, os.fsencode(top)))
        out[key] = (
            stat.S_IFMT(st.st_mode),
            stat.S_IMODE(st.st_mode),
            st.st_uid,
            st.st_gid,
            st.st_nlink,
            st.st_size if not stat.S_ISDIR(st.st_mode) else None,
            st.st_mtime_ns,
            st.st_ctime_ns,
            extra,
        )
    return out


def plant_canaries(server: Server) -> None:
    """Files with recognisable names and contents everywhere the jailed user must not see."""
    for folder in (
        server.outside,
        server.root,
        server.root / "home",
        server.root / "share",
        server.root / "etc",
    ):
        (folder / f"{CANARY}{folder.name}").write_text(f"canary content of {folder}\n")
    (server.outside / "outside-only").mkdir()


def protected(server: Server) -> dict[str, Snapshot]:
    """What the jailed user must never change: ``outside`` and the root outside its jail."""
    jail = server.root / "home" / "jailed"
    return {
        "outside": snapshot(server.outside),
        "root": snapshot(server.root, exclude=(jail,)),
    }


def assert_unchanged(before: dict[str, Snapshot], after: dict[str, Snapshot]) -> None:
    """Compare two ``protected`` snapshots, naming every difference."""
    for area, old in before.items():
        new = after[area]
        diff = {
            k: (old.get(k), new.get(k)) for k in set(old) | set(new) if old.get(k) != new.get(k)
        }
        assert not diff, f"{area} changed: {diff}"


def files_containing(top: Path, needle: bytes, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """Regular files under ``top`` whose content contains ``needle``."""
    found = []
    skip = set(exclude)
    for folder, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if Path(folder, d) not in skip]
        for name in files:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                found.append(path)
    return found


async def attempt(coro: Awaitable[T]) -> T | BaseException:
    """Await one SFTP request; an SFTP error is returned, anything else is raised."""
    try:
        return await asyncio.wait_for(coro, TIMEOUT)
    except asyncssh.SFTPError as exc:
        return exc


async def outcome(coro: Awaitable[Any]) -> str:
    """How a request ended: ``PERMISSION_DENIED``, another error's name, or ``allowed``."""
    try:
        await asyncio.wait_for(coro, TIMEOUT)
    except asyncssh.SFTPPermissionDenied:
        return "PERMISSION_DENIED"
    except asyncssh.SFTPError as exc:
        return f"{type(exc).__name__}: {exc.reason}"
    return "allowed"


async def read_all(sftp: asyncssh.SFTPClient, path: str | bytes) -> bytes | BaseException:
    """The whole content of a remote file, or the SFTP error that stopped the read."""

    async def go() -> bytes:
        async with sftp.open(path, "rb") as f:
            data: object = await f.read()
        assert isinstance(data, bytes)
        return data

    return await attempt(go())


async def write_mark(sftp: asyncssh.SFTPClient, path: str | bytes) -> None | BaseException:
    """Try to create or overwrite a remote file with ``MARK``."""

    async def go() -> None:
        async with sftp.open(path, "wb") as f:
            await f.write(MARK)

    return await attempt(go())


def forbidden_content(server: Server) -> list[bytes]:
    """The contents of files outside the jail, none of which a jailed read may return."""
    jail = server.root / "home" / "jailed"
    out = [SECRET]
    for folder in (server.root, server.outside):
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink() and jail not in path.parents:
                out.append(path.read_bytes())
    return [c for c in out if c]


async def probe_everything(sftp: asyncssh.SFTPClient, path: str, forbidden: list[bytes]) -> None:
    """Read, list, stat, write, create, change and remove through ``path``.

    Reads and listings may succeed only with content from inside the jail; writes may
    only land inside the jail, which the callers check on the disk afterwards.
    """
    data = await read_all(sftp, path)
    if isinstance(data, bytes):
        for secret in forbidden:
            assert secret not in data, f"read {path!r} returned outside content"
    names = await attempt(sftp.listdir(path))
    if isinstance(names, list):
        leaked = [n for n in names if n.startswith(CANARY) or n in HOST_ONLY_NAMES]
        assert not leaked, f"listing {path!r} shows names from outside the jail: {leaked}"
    await attempt(sftp.stat(path))
    await attempt(sftp.lstat(path))
    await attempt(sftp.realpath(path))
    await attempt(sftp.readlink(path))
    await write_mark(sftp, f"{path}/pwn.txt")
    await attempt(sftp.mkdir(f"{path}/pwn-dir"))
    await attempt(sftp.chmod(path, 0o777))
    await attempt(sftp.setstat(path, asyncssh.SFTPAttrs(atime=1, mtime=1)))
    await attempt(sftp.setstat(path, asyncssh.SFTPAttrs(mtime=1, atime=1), follow_symlinks=False))
    await attempt(sftp.truncate(path, 0))
    await attempt(sftp.link(path, "/hard-from-probe"))
    await attempt(sftp.remove("/hard-from-probe"))
    await attempt(sftp.symlink("/", f"{path}/pwn-link"))
    await attempt(sftp.remove(f"{path}/secret.txt"))
    await attempt(sftp.rmdir(f"{path}/pwn-dir"))


async def jail_names(sftp: asyncssh.SFTPClient) -> set[str]:
    """The names at the top of the jail, as the jailed user lists them."""
    return {n for n in await sftp.listdir("/") if n not in (".", "..")}


def plant_decoy(server: Server) -> Path:
    """A folder named ``outside`` inside the jail, so a link that resolves inside it shows."""
    decoy = server.root / "home" / "jailed" / "outside"
    decoy.mkdir()
    (decoy / "secret.txt").write_bytes(b"decoy inside the jail\n")
    return decoy


# -- the jailed user: paths ------------------------------------------------------------


def hostile_paths(server: Server) -> list[str]:
    """Path shapes that try to leave the jail."""
    return [
        "..",
        "../..",
        "../../..",
        "/..",
        "/../../..",
        "../../outside/secret.txt",
        "../../../outside/secret.txt",
        "../../../../../../../../outside/secret.txt",
        "/../../../outside/secret.txt",
        "//outside/secret.txt",
        "//../../../outside/secret.txt",
        "///..//..//..//outside//secret.txt",
        "./.././../outside/./secret.txt",
        "..\\..\\..\\outside\\secret.txt",
        "\\..\\..\\..\\outside",
        "..\\..\\etc\\passwd",
        "../../share/docs/readme.txt",
        "../../etc/passwd",
        "/share/docs/readme.txt",
        "/etc/passwd",
        str(server.outside / "secret.txt"),
        str(server.outside),
        str(server.root / "etc" / "passwd"),
        str(server.root),
        "/proc/self/root/etc/passwd",
        "/proc/self/cwd",
        "outside/../../../outside/secret.txt",
        "%2e%2e/%2e%2e/%2e%2e/outside/secret.txt",
    ]


def test_jailed_path_escapes(server: Server) -> None:
    """``..``, leading ``//``, backslashes and host paths never leave the jail."""
    plant_canaries(server)
    before = protected(server)
    forbidden = forbidden_content(server)
    jail = server.root / "home" / "jailed"

    async def body() -> None:
        async with await connect(server, "jailed") as conn, conn.start_sftp_client() as sftp:
            top = await jail_names(sftp)
            assert top == set(), top
            for path in hostile_paths(server):
                await probe_everything(sftp, path, forbidden)
                real = await attempt(sftp.realpath(path))
                if isinstance(real, str):
                    assert real.startswith("/") and "/../" not in f"{real}/", (path, real)
                # Writing the path itself creates, at most, a file inside the jail.
                await write_mark(sftp, path)
                await attempt(sftp.rename("/nonexistent", path))
            # ".." of the top is the top.
            assert set(await sftp.listdir("..")) - {".", ".."} == await jail_names(sftp)
            assert set(await sftp.listdir("/../../..")) == set(await sftp.listdir("/"))

    run(body)
    assert_unchanged(before, protected(server))
    outside_marks = files_containing(server.root.parent, MARK, exclude=(jail,))
    assert not outside_marks, outside_marks


def test_jailed_nul_bytes_are_errors(server: Server) -> None:
    """Paths with NUL bytes get an error reply; the session and the server keep working."""
    plant_canaries(server)
    before = protected(server)
    (server.root / "home" / "jailed" / "mine.txt").write_text("mine")

    async def body() -> None:
        async with await connect(server, "jailed") as conn, conn.start_sftp_client() as sftp:
            for path in (
                "mine.txt\0",
                "\0",
                "mine.txt\0/../../../outside/secret.txt",
                "../../../outside/secret.txt\0.txt",
                "/\0/etc/passwd",
            ):
                assert isinstance(await read_all(sftp, path), asyncssh.SFTPError), path
                assert isinstance(await write_mark(sftp, path), asyncssh.SFTPError), path
                for op in (
                    sftp.stat(path),
                    sftp.lstat(path),
                    sftp.listdir(path),
                    sftp.mkdir(path),
                    sftp.remove(path),
                    sftp.rmdir(path),
                    sftp.chmod(path, 0o600),
                    sftp.rename("/mine.txt", path),
                    sftp.posix_rename("/mine.txt", path),
                    sftp.link("/mine.txt", path),
                    sftp.symlink("/mine.txt", path),
                    sftp.symlink(path, "/nul-link"),
                ):
                    result = await attempt(op)
                    assert isinstance(result, asyncssh.SFTPError), (path, result)
                assert await sftp.listdir("/")  # still answering
            assert await read_all(sftp, "/mine.txt") == b"mine"

    run(body)
    assert_unchanged(before, protected(server))
    assert server.process.poll() is None
    assert not (server.root / "home" / "jailed" / "nul-link").exists()


def test_jailed_overlong_names(server: Server) -> None:
    """Names over 255 bytes and paths over 4096 bytes are refused with an error."""
    plant_canaries(server)
    before = protected(server)
    jail = server.root / "home" / "jailed"

    async def body() -> None:
        async with await connect(server, "jailed") as conn, conn.start_sftp_client() as sftp:
            for path in (
                "a" * 256,
                "é" * 128,  # 256 bytes in UTF-8
                "../" * 2000 + "outside/secret.txt",
                "d/" * 2100 + "x",
                "/" + "b" * 100000,
            ):
                assert isinstance(await write_mark(sftp, path), asyncssh.SFTPError)
                assert isinstance(await attempt(sftp.mkdir(path)), asyncssh.SFTPError)
                assert isinstance(await attempt(sftp.stat(path)), asyncssh.SFTPError)
                assert isinstance(await read_all(sftp, path), asyncssh.SFTPError)
            # 255 bytes is a valid name.
            assert await write_mark(sftp, "c" * 255) is None
            assert await read_all(sftp, "c" * 255) == MARK

    run(body)
    assert (jail / ("c" * 255)).read_bytes() == MARK
    assert_unchanged(before, protected(server))
    assert server.process.poll() is None


# -- the jailed user: symlinks -----------------------------------------------------------------


def link_targets(server: Server) -> list[str]:
    """Symlink targets that would lead out of the jail if followed on the host."""
    return [
        "/",
        "..",
        "../..",
        "../../..",
        "../../../outside",
        "../../../outside/secret.txt",
        "../../../../../../../../../outside/secret.txt",
        str(server.outside),
        str(server.outside / "secret.txt"),
        str(server.root),
        str(server.root / "etc" / "passwd"),
        "/etc",
        "/etc/passwd",
        "/proc/self/root",
        "/proc/self/cwd/../../../outside",
        "//../outside",
    ]


def _link_name(i: int) -> str:
    """The name of the ``i``-th escaping link at the top of the jail."""
    return f"lnk{i}"


async def probe_links(
    sftp: asyncssh.SFTPClient, server: Server, count: int, decoy: Path | None
) -> None:
    """Use every ``lnkN`` at the top of the jail as a file, a folder and a path prefix."""
    forbidden = forbidden_content(server)
    for i in range(count):
        name = _link_name(i)
        await probe_everything(sftp, f"/{name}", forbidden)
        await probe_everything(sftp, f"/{name}/secret.txt", forbidden)
        await probe_everything(sftp, f"/{name}/outside/secret.txt", forbidden)
        await probe_everything(sftp, f"/{name}/etc/passwd", forbidden)
        await write_mark(sftp, f"/{name}")
        await write_mark(sftp, f"/{name}/secret.txt")
        await write_mark(sftp, f"/{name}/outside/secret.txt")
    if decoy is not None:
        # A link to ../../../outside resolves to the decoy inside the jail (now overwritten).
        got = await read_all(sftp, "/lnk4/secret.txt")
        assert got == MARK, got


def test_jailed_client_made_symlinks(server: Server) -> None:
    """Symlinks the client makes to ``/`` or ``../../../outside`` resolve inside the jail."""
    plant_canaries(server)
    decoy = plant_decoy(server)
    before = protected(server)
    jail = server.root / "home" / "jailed"
    targets = link_targets(server)

    async def body() -> None:
        async with await connect(server, "jailed") as conn, conn.start_sftp_client() as sftp:
            for i, target in enumerate(targets):
                await sftp.symlink(target, f"/{_link_name(i)}")
            # The target is stored as given (asyncssh and the server agree on argument order).
            assert os.readlink(jail / "lnk4") == "../../../outside"
            # A link to "/" lists the jail's own top.
            assert set(await sftp.listdir("/lnk0")) == set(await sftp.listdir("/"))
            assert await read_all(sftp, "/lnk4/secret.txt") == b"decoy inside the jail\n"
            await probe_links(sftp, server, len(targets), decoy)

    run(body)
    assert_unchanged(before, protected(server))
    outside_marks = files_containing(server.root.parent, MARK, exclude=(jail,))
    assert not outside_marks, outside_marks
    assert (server.outside / "secret.txt").read_bytes() == SECRET


def test_jailed_planted_symlinks(server: Server) -> None:
    """Symlinks already on disk (absolute host paths, relative escapes) resolve inside."""
    plant_canaries(server)
    jail = server.root / "home" / "jailed"
    targets = link_targets(server)
    for i, target in enumerate(targets):
        (jail / _link_name(i)).symlink_to(target)
    # A link deep inside whose ".." chain is meant to climb past the jail's top.
    (jail / "d1" / "d2").mkdir(parents=True)
    (jail / "d1" / "d2" / "up").symlink_to("../../../../../outside")
    before = protected(server)

    async def body() -> None:
        async with await connect(server, "jailed") as conn, conn.start_sftp_client() as sftp:

            def lnk(target: str) -> str:
                return f"/{_link_name(targets.index(target))}"

            for target in (str(server.outside / "secret.txt"), "/etc/passwd"):
                assert isinstance(await read_all(sftp, lnk(target)), asyncssh.SFTPError), target
            for target in (str(server.outside), "/etc"):
                listed = await attempt(sftp.listdir(lnk(target)))
                assert isinstance(listed, asyncssh.SFTPError), (target, listed)
            assert set(await sftp.listdir(lnk(".."))) == set(await sftp.listdir("/"))
            assert set(await sftp.listdir(lnk("../../.."))) == set(await sftp.listdir("/"))
            await probe_links(sftp, server, len(targets), None)
            await probe_everything(sftp, "/d1/d2/up", forbidden_content(server))
            await probe_everything(sftp, "/d1/d2/up/secret.txt", forbidden_content(server))

    run(body)
    assert_unchanged(before, protected(server))
    outside_marks = files_containing(server.root.parent, MARK, exclude=(jail,))
    assert not outside_marks, outside_marks


def test_jailed_hardlink_escapes(server: Server) -> None:
    """hardlink@openssh.com never links a file from outside the jail, nor creates one there."""
    plant_canaries(server)
    jail = server.root / "home" / "jailed"
    (jail / "mine.txt").write_text("mine")
    (jail / "abs").symlink_to(server.outside / "secret.txt")
    before = protected(server)

    async def body() -> None:
        async with await connect(server, "jailed") as conn, conn.start_sftp_client() as sftp:
            for i, source in enumerate(
                (
                    "../../outside/secret.txt",
                    "../../../outside/secret.txt",
                    "/../../../outside/secret.txt",
                    str(server.outside / "secret.txt"),
                    "..\\..\\..\\outside\\secret.txt",
                    "../../share/docs/readme.txt",
                    "../../etc/passwd",
                )
            ):
                result = await attempt(sftp.link(source, f"/stolen{i}"))
                assert isinstance(result, asyncssh.SFTPError), (source, result)
            # Linking a planted symlink links the symlink itself, which still resolves inside.
            await attempt(sftp.link("/abs", "/abs2"))
            got = await read_all(sftp, "/abs2")
            assert isinstance(got, asyncssh.SFTPError), f"read through a linked link: {got!r}"
            # A new name outside is out of reach too.
            for target in (
                "../../../outside/new.txt",
                str(server.outside / "new.txt"),
                "../../share/new.txt",
            ):
                await attempt(sftp.link("/mine.txt", target))

    run(body)
    assert os.stat(server.outside / "secret.txt").st_nlink == 1
    assert_unchanged(before, protected(server))


def test_jailed_link_moved_to_shallower_folder(server: Server) -> None:
    """A relative link made deep inside, then posix-renamed to the top, still stays inside.

    From ``/d1/d2/d3``, ``../../../outside`` is the jail's own ``/outside``; moved to the
    top, the same text would reach the host's ``outside`` folder if resolved lexically on
    the host.
    """
    plant_canaries(server)
    jail = server.root / "home" / "jailed"
    before = protected(server)

    async def body() -> None:
        async with await connect(server, "jailed") as conn, conn.start_sftp_client() as sftp:
            await sftp.makedirs("/d1/d2/d3")
            await sftp.symlink("../../../outside", "/d1/d2/d3/out")
            await sftp.symlink("../../..", "/d1/d2/d3/top")
            await sftp.symlink("../../../outside/secret.txt", "/d1/d2/d3/secret")
            for name in ("out", "top", "secret"):
                await sftp.posix_rename(f"/d1/d2/d3/{name}", f"/{name}")
            await sftp.rename("/out", "/d1/out2")  # one level down: still "../../../"
            await sftp.rename("/d1/out2", "/out")
            forbidden = forbidden_content(server)
            for path in ("/out", "/out/secret.txt", "/top", "/top/outside/secret.txt", "/secret"):
                await probe_everything(sftp, path, forbidden)
                await write_mark(sftp, path)
            listed = await attempt(sftp.listdir("/top"))
            if isinstance(listed, list):
                assert set(listed) == set(await sftp.listdir("/"))
            # Attribute changes through the moved links.
            for path in ("/secret", "/out/secret.txt", "/top/outside"):
                await attempt(sftp.chmod(path, 0o777))
                await attempt(sftp.setstat(path, asyncssh.SFTPAttrs(size=0)))
                await attempt(sftp.utime(path, (1, 1)))
                await attempt(sftp.utime(path, (1, 1), follow_symlinks=False))
                await attempt(sftp.remove(path))

    run(body)
    assert_unchanged(before, protected(server))
    outside_marks = files_containing(server.root.parent, MARK, exclude=(jail,))
    assert not outside_marks, outside_marks


def test_jailed_setstat_through_links(server: Server) -> None:
    """setstat follows links only inside the jail; lsetstat changes the link itself only."""
    plant_canaries(server)
    jail = server.root / "home" / "jailed"
    (jail / "abs").symlink_to(server.outside / "secret.txt")
    (jail / "rel").symlink_to("../../../outside/secret.txt")
    (jail / "absdir").symlink_to(server.outside)
    before = protected(server)

    async def body() -> None:
        async with await connect(server, "jailed") as conn, conn.start_sftp_client() as sftp:
            for path in ("/abs", "/rel", "/absdir", "/absdir/secret.txt"):
                attrs = asyncssh.SFTPAttrs(permissions=0o777, atime=5, mtime=5)
                result = await attempt(sftp.setstat(path, attrs))
                assert isinstance(result, asyncssh.SFTPError), f"setstat {path}: {result}"
                result = await attempt(sftp.setstat(path, asyncssh.SFTPAttrs(size=0)))
                assert isinstance(result, asyncssh.SFTPError), f"truncate {path}: {result}"
            # lsetstat on the link itself is allowed and touches only the link.
            await sftp.setstat("/abs", asyncssh.SFTPAttrs(atime=7, mtime=7), follow_symlinks=False)
            result = await attempt(
                sftp.setstat("/abs", asyncssh.SFTPAttrs(size=0), follow_symlinks=False)
            )
            assert isinstance(result, asyncssh.SFTPError)
            await attempt(
                sftp.setstat("/rel", asyncssh.SFTPAttrs(permissions=0o777), follow_symlinks=False)
            )
            # Through a handle: opening the link cannot reach the outside file at all.
            assert isinstance(await read_all(sftp, "/abs"), asyncssh.SFTPError)

    run(body)
    assert os.lstat(jail / "abs").st_mtime == 7
    assert_unchanged(before, protected(server))


def test_jailed_symlink_loops_fail_fast(server: Server) -> None:
    """Link loops and over-long link chains fail with an error, quickly, for every request."""
    plant_canaries(server)
    jail = server.root / "home" / "jailed"
    (jail / "loop-a").symlink_to("loop-b")
    (jail / "loop-b").symlink_to("loop-a")
    (jail / "self").symlink_to("self")
    (jail / "selfdir").symlink_to("selfdir/x")
    (jail / "chain-0").write_text("end of chain")
    for i in range(1, 60):
        (jail / f"chain-{i}").symlink_to(f"chain-{i - 1}")
    before = protected(server)

    async def body() -> None:
        async with await connect(server, "jailed") as conn, conn.start_sftp_client() as sftp:
            for path in ("/loop-a", "/self", "/selfdir", "/chain-59", "/loop-a/x/y"):
                assert isinstance(await read_all(sftp, path), asyncssh.SFTPError), path
                assert isinstance(await write_mark(sftp, path), asyncssh.SFTPError), path
                for op in (sftp.stat(path), sftp.listdir(path), sftp.chmod(path, 0o600)):
                    assert isinstance(await attempt(op), asyncssh.SFTPError), path
                assert (await sftp.lstat("/loop-a")).type == asyncssh.FILEXFER_TYPE_SYMLINK
            # A short chain is followed.
            assert await read_all(sftp, "/chain-5") == b"end of chain"

    run(body, timeout=60)
    assert (jail / "chain-0").read_text() == "end of chain"
    assert_unchanged(before, protected(server))


def _renameat2() -> Callable[[bytes, bytes], None]:
    """``renameat2(RENAME_EXCHANGE)`` from libc: swap two names atomically."""
    libc = ctypes.CDLL(None, use_errno=True)
    func = libc.renameat2
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2

    def exchange(a: bytes, b: bytes) -> None:
        if func(at_fdcwd, a, at_fdcwd, b, rename_exchange) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return exchange


def test_jailed_swap_race(server: Server) -> None:
    """A folder swapped with escaping symlinks while the user reads never leaks outside files.

    A thread exchanges ``a`` (a real folder) with ``b`` (a relative link climbing out) and
    ``c`` (an absolute link to the host's ``outside``) as fast as it can, the way a
    check-then-use server is beaten; the client meanwhile reads, lists and writes through
    ``a``, ``b`` and ``c``.
    """
    plant_canaries(server)
    jail = server.root / "home" / "jailed"
    (jail / "a").mkdir()
    (jail / "a" / "secret.txt").write_text("inside a\n")
    (jail / "b").symlink_to("../../../outside")
    (jail / "c").symlink_to(server.outside)
    before = protected(server)
    forbidden = forbidden_content(server)
    exchange = _renameat2()
    stop = threading.Event()
    swaps = [0]

    def swapper() -> None:
        a, b, c = (os.fsencode(jail / name) for name in "abc")
        while not stop.is_set():
            exchange(a, b)
            exchange(a, c)
            swaps[0] += 2

    async def body() -> None:
        async with await connect(server, "jailed") as conn, conn.start_sftp_client() as sftp:
            thread = threading.Thread(target=swapper, daemon=True)
            thread.start()
            try:
                reads = 0
                for i in range(300):
                    for name in "abc":
                        data = await read_all(sftp, f"/{name}/secret.txt")
                        if isinstance(data, bytes):
                            reads += 1
                            assert data == b"inside a\n", data
                        names = await attempt(sftp.listdir(f"/{name}"))
                        if isinstance(names, list):
                            leaked = [n for n in names if n.startswith(CANARY)]
                            assert not leaked and "outside-only" not in names, names
                    if i % 10 == 0:
                        await write_mark(sftp, f"/{'abc'[i % 3]}/race-{i}.txt")
                        await attempt(sftp.chmod(f"/{'abc'[i % 3]}/secret.txt", 0o777))
                assert reads > 0, "no read ever succeeded: the race was not exercised"
            finally:
                stop.set()
                thread.join(10)
            assert swaps[0] > 100, swaps

    run(body)
    for data in forbidden:
        assert data != b"inside a\n"
    assert_unchanged(before, protected(server))
    outside_marks = files_containing(server.root.parent, MARK, exclude=(jail,))
    assert not outside_marks, outside_marks


def test_jailed_cannot_move_or_remove_its_top(server: Server) -> None:
    """The jail's own top folder cannot be renamed, removed, replaced or changed in size."""
    plant_canaries(server)
    jail = server.root / "home" / "jailed"
    (jail / "d").mkdir()
    (jail / "f.txt").write_text("f")
    before = protected(server)

    async def body() -> None:
        async with await connect(server, "jailed") as conn, conn.start_sftp_client() as sftp:
            for top in ("/", "..", "/..", ".", "//", "/../.."):
                for op in (
                    sftp.rename(top, "/moved"),
                    sftp.posix_rename(top, "/moved"),
                    sftp.rename(top, "../../moved"),
                    sftp.rmdir(top),
                    sftp.remove(top),
                    sftp.posix_rename("/d", top),
                    sftp.posix_rename("/f.txt", top),
                    sftp.rename("/d", top),
                    sftp.symlink("/", top),
                    sftp.link("/f.txt", top),
                    sftp.mkdir(top),
                ):
                    result = await attempt(op)
                    assert isinstance(result, asyncssh.SFTPError), (top, result)
            assert {"d", "f.txt"} <= set(await sftp.listdir("/"))

    run(body)
    assert (jail / "d").is_dir() and (jail / "f.txt").read_text() == "f"
    assert_unchanged(before, protected(server))


# -- the read-only user -----------------------------------------------------------------


def test_reader_every_write_refused(server: Server) -> None:
    """Every request that could change the disk is PERMISSION_DENIED for the reader."""
    share = server.root / "share"
    (share / "empty").mkdir()
    (share / "docs" / "link").symlink_to("readme.txt")
    before = {"root": snapshot(server.root), "outside": snapshot(server.outside)}

    async def body() -> None:
        async with await connect(server, "reader") as conn, conn.start_sftp_client() as sftp:
            h = sftp._handler
            none = asyncssh.SFTPAttrs()
            existing, new = b"/docs/readme.txt", b"/docs/new.txt"
            opens = [
                (existing, FXF_WRITE),
                (existing, FXF_READ | FXF_WRITE),
                (existing, FXF_WRITE | FXF_APPEND),
                (existing, FXF_READ | FXF_CREAT),
                (new, FXF_READ | FXF_CREAT),
                (new, FXF_WRITE | FXF_CREAT | FXF_EXCL),
                (existing, FXF_READ | FXF_TRUNC),  # CVE-2017-15906
                (existing, FXF_READ | FXF_CREAT | FXF_TRUNC),
                (new, FXF_WRITE | FXF_CREAT | FXF_TRUNC),
            ]
            outcomes: dict[str, object] = {}
            for path, pflags in opens:
                what = f"open {path.decode()} pflags={pflags:#x}"
                outcomes[what] = await outcome(h.open(path, pflags, none))
            handle = await h.open(existing, FXF_READ, none)
            other = await h.open(b"/docs/link", FXF_READ, none)
            chmod = asyncssh.SFTPAttrs(permissions=0o777)
            times = asyncssh.SFTPAttrs(atime=1, mtime=1)
            sized = asyncssh.SFTPAttrs(size=0)
            requests: dict[str, Awaitable[Any]] = {
                "write": h.write(handle, 0, b"x"),
                "write at end": h.write(handle, 1 << 20, b"x"),
                "setstat mode": h.setstat(existing, chmod),
                "setstat times": h.setstat(existing, times),
                "setstat size": h.setstat(existing, sized),
                "setstat folder": h.setstat(b"/docs", chmod),
                "fsetstat mode": h.fsetstat(handle, chmod),
                "fsetstat size": h.fsetstat(handle, sized),
                "fsetstat times": h.fsetstat(handle, times),
                "lsetstat": h.setstat(b"/docs/link", times, follow_symlinks=False),
                "remove": h.remove(existing),
                "remove link": h.remove(b"/docs/link"),
                "remove missing": h.remove(b"/docs/missing"),
                "rename": h.rename(existing, new, 0),
                "rename over": h.rename(existing, b"/docs/link", 0),
                "posix-rename": h.posix_rename(existing, new),
                "posix-rename over": h.posix_rename(b"/docs/link", existing),
                "link": h.link(existing, new),
                "symlink": h.symlink(b"readme.txt", new),
                "mkdir": h.mkdir(b"/docs/sub", none),
                "mkdir existing": h.mkdir(b"/docs", none),
                "rmdir": h.rmdir(b"/empty"),
                "rmdir full": h.rmdir(b"/docs"),
                "fsync": h.fsync(handle),
                "copy-data": h.copy_data(handle, 0, 0, other, 0),
                "copy-data self": h.copy_data(handle, 0, 0, handle, 1),
            }
            for what, request in requests.items():
                outcomes[what] = await outcome(request)
            wrong = {k: v for k, v in outcomes.items() if v != "PERMISSION_DENIED"}
            assert not wrong, f"not refused with PERMISSION_DENIED: {wrong}"
            await h.close(handle)
            await h.close(other)
            # Reading still works.
            assert await read_all(sftp, existing) == b"shared text\n"
            assert "readme.txt" in await sftp.listdir("/docs")

    run(body)
    after = {"root": snapshot(server.root), "outside": snapshot(server.outside)}
    assert_unchanged(before, after)


def test_reader_jail(server: Server) -> None:
    """The reader is confined to /share: ``..``, host paths and planted links show nothing
    outside it."""
    share = server.root / "share"
    (share / "up").symlink_to("../etc/passwd")
    (share / "abs").symlink_to(server.root / "etc" / "passwd")
    (share / "out").symlink_to("../../outside")
    before = {"root": snapshot(server.root), "outside": snapshot(server.outside)}

    async def body() -> None:
        async with await connect(server, "reader") as conn, conn.start_sftp_client() as sftp:
            assert set(await sftp.listdir("/..")) == set(await sftp.listdir("/"))
            for path in (
                "../etc/passwd",
                "/../../outside/secret.txt",
                "/etc/passwd",
                "/up",
                "/abs",
                "/out/secret.txt",
            ):
                assert isinstance(await read_all(sftp, path), asyncssh.SFTPError), path
            assert isinstance(await attempt(sftp.listdir("/out")), asyncssh.SFTPError)
            assert await read_all(sftp, "/../docs/readme.txt") == b"shared text\n"

    run(body)
    assert_unchanged(before, {"root": snapshot(server.root), "outside": snapshot(server.outside)})


# -- authentication --------------------------------------------------------------------------


def test_authentication(server: Server) -> None:
    """Wrong passwords and unknown users are refused; the right passwords log in."""

    async def refused(user: str, password: str | None) -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            conn = await connect(server, user, password)
            conn.close()

    async def body() -> None:
        # Successful logins first: a server that delays or bans after failures stays testable.
        reader = await connect(server, "reader", READER_PASSWORD)
        async with reader as conn, conn.start_sftp_client() as sftp:
            assert "docs" in await sftp.listdir("/")
        root = await connect(server, "root", PASSWORD)
        async with root as conn, conn.start_sftp_client() as sftp:
            assert "share" in await sftp.listdir("/")
        await refused("root", "wrong password")
        await refused("root", "")
        await refused("reader", PASSWORD)  # another user's password
        await refused("nosuchuser", PASSWORD)
        await refused("nosuchuser", None)  # the key is known, the user is not
        await refused("jailed", "")  # a key-only user has no password
        await refused("ROOT", PASSWORD)

    run(body)


def test_no_shell_or_exec(server: Server) -> None:
    """A shell or a command is refused with a non-zero exit status, nothing is run."""

    async def body() -> None:
        async with await connect(server, "jailed") as conn:
            result = await asyncio.wait_for(
                conn.run("touch /tmp/hoody-mount-pwned && cat /etc/passwd"), TIMEOUT
            )
            assert result.exit_status != 0
            assert "root:" not in str(result.stdout or "")

    run(body)
    assert not Path("/tmp/hoody-mount-pwned").exists()


# -- fairness and concurrency ---------------------------------------------------------------


def test_slow_copy_does_not_delay_other_clients(server: Server) -> None:
    """While client A copies 1 GiB of a 4 GiB sparse file, client B's listing completes.
    The target is already 1 GiB long, all hole, so that the copy writes the zeros (a hole
    copied past a target's end stays a hole and takes no time): its progress shows in the
    blocks the target takes."""
    big = server.root / "big.sparse"
    with open(big, "wb") as handle:
        handle.truncate(4 << 30)
    copied = 1 << 30
    dst = server.root / "copy.bin"
    with open(dst, "wb") as handle:
        handle.truncate(copied)

    async def body() -> None:
        async with (
            await connect(server) as conn_a,
            conn_a.start_sftp_client() as sftp_a,
            await connect(server, "reader") as conn_b,
            conn_b.start_sftp_client() as sftp_b,
        ):
            src_file = await sftp_a.open("/big.sparse", "rb")
            dst_file = await sftp_a.open("/copy.bin", "r+b")
            copy = asyncio.ensure_future(
                sftp_a._handler.copy_data(src_file.handle, 0, copied, dst_file.handle, 0)
            )
            try:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + TIMEOUT
                while dst.stat().st_blocks == 0:  # the copy has begun
                    assert not copy.done(), copy
                    assert loop.time() < deadline, "copy-data never started"
                    await asyncio.sleep(0.01)
                listing = await asyncio.wait_for(sftp_b.listdir("/docs"), TIMEOUT)
                assert "readme.txt" in listing
                assert not copy.done(), "the copy finished before the listing: no overlap shown"
                assert dst.stat().st_blocks * 512 < copied, "the copy finished before listing"
                await asyncio.wait_for(copy, 600)
            finally:
                if not copy.done():
                    copy.cancel()
                    with contextlib.suppress(BaseException):
                        await copy
            await src_file.close()
            await dst_file.close()

    try:
        run(body, timeout=900)
        assert dst.stat().st_size == copied
    finally:
        big.unlink(missing_ok=True)
        dst.unlink(missing_ok=True)


def test_unauthenticated_flood_is_capped(server: Server) -> None:
    """Forty TCP connections from one address that never log in: those over the
    address's cap of connections still logging in (24) are dropped at once, the server
    lives on, and a real client logs in once the flood is gone."""
    cap = 24
    flood = 40

    async def drained(reader: asyncio.StreamReader) -> bool:
        """Whether the server closes this connection within a few seconds."""
        try:
            while await asyncio.wait_for(reader.read(4096), 5):
                pass
        except (TimeoutError, ConnectionError):
            return False
        return True

    async def body() -> None:
        streams = []
        for _ in range(flood):
            streams.append(await asyncio.open_connection("127.0.0.1", server.port))
        try:
            closed = await asyncio.gather(*(drained(r) for r, _ in streams))
            assert sum(closed) >= flood - cap, closed
        finally:
            for _, writer in streams:
                writer.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while True:
            try:
                async with await connect(server) as conn, conn.start_sftp_client() as sftp:
                    assert "share" in await sftp.listdir("/")
                break
            except (OSError, asyncssh.Error):
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.2)

    run(body)
    assert server.process.poll() is None


def test_many_concurrent_clients(server: Server) -> None:
    """Twenty clients at once (three kinds of user), each doing a few operations, all succeed."""
    jail = server.root / "home" / "jailed"

    async def client(i: int) -> None:
        user = ("root", "jailed", "reader")[i % 3]
        async with await connect(server, user) as conn, conn.start_sftp_client() as sftp:
            if user == "reader":
                assert await read_all(sftp, "/docs/readme.txt") == b"shared text\n"
                assert "readme.txt" in await sftp.listdir("/docs")
                return
            payload = f"client {i}\n".encode() * 1000
            async with sftp.open(f"/c{i}.txt", "wb") as f:
                await f.write(payload)
            assert await read_all(sftp, f"/c{i}.txt") == payload
            await sftp.mkdir(f"/dir{i}")
            await sftp.rename(f"/c{i}.txt", f"/dir{i}/c{i}.txt")
            assert (await sftp.stat(f"/dir{i}/c{i}.txt")).size == len(payload)
            assert f"c{i}.txt" in await sftp.listdir(f"/dir{i}")

    async def body() -> None:
        await asyncio.gather(*(client(i) for i in range(20)))

    run(body)
    for i in range(20):
        user = ("root", "jailed", "reader")[i % 3]
        base = {"root": server.root, "jailed": jail}.get(user)
        if base is not None:
            assert (base / f"dir{i}" / f"c{i}.txt").read_bytes() == f"client {i}\n".encode() * 1000
