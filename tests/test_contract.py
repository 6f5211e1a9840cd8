"""One behaviour contract, checked through every front (SFTP, WebDAV, the file API, sshfs).

Each scenario states one outcome in the neutral vocabulary of ``contract_fronts`` and is
parametrized over the fronts it applies to. Where a front differs by its protocol's
design, the difference is a capability flag or a ``COARSE`` entry of its adapter (with
the reason there), and the scenario asserts that front's documented outcome instead.

One server serves the whole module; each test works in a fresh folder of its own,
``/share/<name>`` on disk under the served root (``/share/<name>`` for root, ``/<name>``
for the reader, who is jailed to ``/share``). One client per front and user is kept for
the module (an sshfs mount, an SFTP connection, a kept-alive HTTP connection).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    PASSWORD,
    READER_PASSWORD,
    Server,
    Snapshot,
    served,
    snapshot,
    wait_until,
)
from contract_fronts import FRONTS, TEMP_NAME, Front, Info, Pool, Refused, fronts_where

SECRET = b"outside secret\n"
MIB = 1 << 20
_numbers = itertools.count(1)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def contract_server(tmp_path_factory: pytest.TempPathFactory, client_key: Path) -> Iterator[Server]:
    """One server for the module, over the tree conftest's ``server`` fixture makes."""
    with served(tmp_path_factory.mktemp("contract"), client_key) as running:
        yield running


@pytest.fixture(scope="module")
def pool(contract_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """The module's clients, one per front and user, made at first use."""
    clients = Pool(
        contract_server,
        {"root": PASSWORD, "reader": READER_PASSWORD},
        tmp_path_factory.mktemp("clients"),
    )
    yield clients
    clients.close()


@pytest.fixture
def front(request: pytest.FixtureRequest, pool: Pool) -> Front:
    """The front named by the test's parameter, as root (read-write, not jailed)."""
    return pool.get(request.param, "root")


@pytest.fixture
def reader(request: pytest.FixtureRequest, pool: Pool) -> Front:
    """The front named by the test's parameter, as reader (read-only, jailed to /share)."""
    return pool.get(request.param, "reader")


@dataclass
class Area:
    """A test's own folder: ``disk`` on the server's disk, ``name`` under ``/share``."""

    disk: Path
    name: str

    def root(self, rel: str = "") -> str:
        """The path root uses (its jail is the served root)."""
        return f"/share/{self.name}/{rel}".rstrip("/")

    def jailed(self, rel: str = "") -> str:
        """The path the reader uses (its jail is /share)."""
        return f"/{self.name}/{rel}".rstrip("/")

    def raw(self, name: bytes) -> bytes:
        """The disk path of a name given as bytes."""
        return os.fsencode(self.disk) + b"/" + name


@pytest.fixture
def area(contract_server: Server) -> Area:
    """A fresh folder for one test."""
    name = f"c{next(_numbers):03d}"
    disk = contract_server.root / "share" / name
    disk.mkdir()
    return Area(disk, name)


def each(fronts: list[str] | tuple[str, ...]) -> pytest.MarkDecorator:
    """Parametrize the ``front`` fixture over ``fronts``."""
    return pytest.mark.parametrize("front", list(fronts), indirect=True)


def each_reader(fronts: list[str] | tuple[str, ...]) -> pytest.MarkDecorator:
    """Parametrize the ``reader`` fixture over ``fronts``."""
    return pytest.mark.parametrize("reader", list(fronts), indirect=True)


# --------------------------------------------------------------------------- helpers


def refusal(action: Callable[..., object], *args: object) -> str:
    """The kind of refusal ``action(*args)`` meets; fails the test if it goes through."""
    try:
        result = action(*args)
    except Refused as exc:
        return exc.kind
    pytest.fail(f"not refused: it returned {result!r:.200}")


def temp_names(folder: Path) -> list[str]:
    """Names of the server's upload temp files in ``folder``."""
    return [n for n in os.listdir(folder) if re.match(TEMP_NAME, n)]


def no_temp_names(folder: Path) -> bool:
    """Whether ``folder`` holds no upload temp file (after up to 5 s for a clean-up)."""
    return wait_until(lambda: not temp_names(folder), 5.0, 0.05)


def holds_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has a descriptor open on ``path``."""
    found = False
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # (closed meanwhile)
            found = found or os.readlink(fd) == str(path)
    return found


def sha256(data: bytes) -> str:
    """Hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- basics


@each(FRONTS)
def test_files_and_folders_round_trip(front: Front, area: Area) -> None:
    """Write, read, stat, list, mkdir, remove and rmdir do what they say, on disk too."""
    front.write(area.root("a.txt"), b"alpha\n")
    front.mkdir(area.root("sub"))
    assert (area.disk / "a.txt").read_bytes() == b"alpha\n"
    assert (area.disk / "sub").is_dir()
    assert front.read(area.root("a.txt")) == b"alpha\n"
    assert front.stat(area.root("a.txt")) == Info("file", 6)
    assert front.stat(area.root("sub")) == Info("folder", None)
    assert front.list(area.root()) == {"a.txt", "sub"}
    front.remove(area.root("a.txt"))
    front.rmdir(area.root("sub"))
    assert os.listdir(area.disk) == []
    assert front.list(area.root()) == set()


# --------------------------------------------------------------------------- jail and links


@each(fronts_where(lambda f: f.dotdot != "client"))
def test_dotdot_stops_at_the_jail_root(front: Front, pool: Pool, area: Area) -> None:
    """``..`` past the top of a jail stays at its top (as in a chroot), or the front
    refuses the path outright; nothing outside the jail is ever read."""
    reader = pool.get(front.name, "reader")
    (area.disk / "decoy.txt").write_bytes(b"decoy inside the jail\n")
    up = "../" * 8
    climbs = {
        # (user's front, path): what a clamp at the jail's top finds there
        (reader, f"{area.jailed()}/{up}{area.name}/decoy.txt"): b"decoy inside the jail\n",
        (reader, f"{area.jailed()}/{up}outside/secret.txt"): None,
        (reader, f"{area.jailed()}/{up}etc/passwd"): None,
        (front, f"{area.root()}/{up}outside/secret.txt"): None,
    }
    for (client, path), clamped in climbs.items():
        if front.dotdot == "refused":
            assert refusal(client.read, path) == "bad_name", path
        elif clamped is None:
            assert refusal(client.read, path) == "not_found", path
        else:
            assert client.read(path) == clamped, path


@each_reader(FRONTS)
def test_absolute_links_resolve_inside_the_jail(reader: Front, area: Area) -> None:
    """A link to ``/x`` means ``<jail>/x``, and ``..`` in a link stops at the jail's top:
    the reader (jailed to /share) reads the file inside its jail, never the one at the
    same path in the served root."""
    (area.disk / "target.txt").write_bytes(b"inside the jail\n")
    beside = area.disk.parent.parent / area.name  # <root>/<name>: outside the reader's jail
    beside.mkdir()
    (beside / "target.txt").write_bytes(b"outside the jail\n")
    (area.disk / "abs").symlink_to(f"/{area.name}/target.txt")
    (area.disk / "up").symlink_to(f"../../../{area.name}/target.txt")
    (area.disk / "top").symlink_to("/")
    assert reader.read(area.jailed("abs")) == b"inside the jail\n"
    assert reader.read(area.jailed("up")) == b"inside the jail\n"
    assert reader.stat(area.jailed("abs")) == Info("file", 16)
    top = reader.list(area.jailed("top"))
    assert area.name in top and "docs" in top, top  # the jail's top: /share
    assert not {"share", "etc", "home"} & top, top  # never the served root's top


@each(FRONTS)
def test_links_out_of_the_served_root_are_never_followed_out(
    front: Front, pool: Pool, area: Area, contract_server: Server
) -> None:
    """Links on disk to a file or folder beside the served root (absolute host paths or
    enough ``..``) lead nowhere, for root as for the jailed reader (listed by their names,
    except over WebDAV, which lists a link as what it leads to)."""
    outside = contract_server.outside
    (area.disk / "abs").symlink_to(outside / "secret.txt")
    (area.disk / "rel").symlink_to("../" * 8 + "outside/secret.txt")
    (area.disk / "dir").symlink_to(outside)
    before = snapshot(outside)
    reader = pool.get(front.name, "reader")
    for client, path in ((front, area.root), (reader, area.jailed)):
        for name in ("abs", "rel", "dir/secret.txt"):
            assert refusal(client.read, path(name)) == "not_found", (client.user, name)
        assert refusal(client.list, path("dir")) == "not_found", client.user
        assert refusal(client.stat, path("abs")) == "not_found", client.user
        listed = {"abs", "rel", "dir"} if front.lists_dangling_links else set()
        assert client.list(path()) == listed, client.user
    assert snapshot(outside) == before


@each(FRONTS)
def test_writes_through_links_never_leave_the_jail(
    front: Front, area: Area, contract_server: Server
) -> None:
    """Writing to a link never writes beside the served root: a front that follows the
    link (open(2)) finds its target inside the jail (where the folder of an outside path
    does not exist: not_found); an atomic upload replaces the link itself."""
    outside = contract_server.outside
    (area.disk / "abs").symlink_to(outside / "secret.txt")
    (area.disk / "rel").symlink_to("../" * 8 + "outside/new.txt")
    (area.disk / "in").symlink_to(f"/share/{area.name}/landed.txt")
    before = snapshot(outside)
    if front.write_follows_links:
        for name in ("abs", "rel"):
            assert refusal(front.write, area.root(name), b"written\n") == "not_found", name
            assert (area.disk / name).is_symlink(), name
        front.write(area.root("in"), b"landed\n")
        assert (area.disk / "in").is_symlink()
        assert (area.disk / "landed.txt").read_bytes() == b"landed\n"
    else:
        for name in ("abs", "rel", "in"):
            front.write(area.root(name), b"written\n")
            assert not (area.disk / name).is_symlink(), name
            assert (area.disk / name).read_bytes() == b"written\n", name
        assert not (area.disk / "landed.txt").exists()
    assert snapshot(outside) == before
    assert (outside / "secret.txt").read_bytes() == SECRET


# --------------------------------------------------------------------------- read-only


@each_reader(FRONTS)
def test_read_only_user_changes_nothing(reader: Front, area: Area) -> None:
    """Every write of the read-only reader is refused as denied, and the disk stays as
    it was; reading still works."""
    (area.disk / "file.txt").write_bytes(b"keep me\n")
    (area.disk / "empty").mkdir()
    (area.disk / "full").mkdir()
    (area.disk / "full" / "inner.txt").write_bytes(b"inner\n")
    before: Snapshot = snapshot(area.disk)
    denied = reader.reports("denied")
    attempts: dict[str, Callable[[], object]] = {
        "write new": lambda: reader.write(area.jailed("new.txt"), b"x"),
        "overwrite": lambda: reader.write(area.jailed("file.txt"), b"x"),
        "mkdir": lambda: reader.mkdir(area.jailed("newdir")),
        "remove": lambda: reader.remove(area.jailed("file.txt")),
        "rmdir": lambda: reader.rmdir(area.jailed("empty")),
        "rmdir full": lambda: reader.rmdir(area.jailed("full")),
        "rename": lambda: reader.rename(area.jailed("file.txt"), area.jailed("moved"), True),
        "rename over": lambda: reader.rename(
            area.jailed("file.txt"), area.jailed("full/inner.txt"), True
        ),
    }
    if reader.rename_noreplace:
        attempts["rename, no replace"] = lambda: reader.rename(
            area.jailed("file.txt"), area.jailed("moved"), False
        )
    outcomes = {what: refusal(action) for what, action in attempts.items()}
    assert outcomes == dict.fromkeys(attempts, denied)
    assert snapshot(area.disk) == before
    assert reader.read(area.jailed("file.txt")) == b"keep me\n"
    assert reader.list(area.jailed()) == {"file.txt", "empty", "full"}


@each_reader(fronts_where(lambda f: f.denies_before_lookup))
def test_read_only_refusal_comes_before_the_lookup(reader: Front, area: Area) -> None:
    """A read-only user's remove, rmdir or rename of a name that does not exist is denied,
    as any other write of theirs (the session refuses before calling the filesystem)."""
    denied = reader.reports("denied")
    attempts: dict[str, Callable[[], object]] = {
        "remove missing": lambda: reader.remove(area.jailed("missing.txt")),
        "rmdir missing": lambda: reader.rmdir(area.jailed("missing")),
        "rename missing": lambda: reader.rename(area.jailed("missing.txt"), area.jailed("b"), True),
    }
    outcomes = {what: refusal(action) for what, action in attempts.items()}
    assert outcomes == dict.fromkeys(attempts, denied)
    assert os.listdir(area.disk) == []


# --------------------------------------------------------------------------- atomic replace


@each(FRONTS)
def test_overwrite_replaces_the_whole_file(front: Front, area: Area) -> None:
    """Writing a short file over a long one leaves exactly the short one (no tail of the
    old content) and no temp file."""
    front.write(area.root("doc.txt"), b"old " * 50_000)
    front.write(area.root("doc.txt"), b"new\n")
    assert front.read(area.root("doc.txt")) == b"new\n"
    assert (area.disk / "doc.txt").read_bytes() == b"new\n"
    assert front.list(area.root()) == {"doc.txt"}
    assert no_temp_names(area.disk), temp_names(area.disk)


@each(fronts_where(lambda f: f.can_abort_upload and f.atomic_uploads))
def test_an_aborted_upload_changes_nothing(front: Front, area: Area) -> None:
    """An upload whose connection drops mid-body leaves the old file whole, creates no
    new one, and leaves no temp file, in listings or on disk."""
    (area.disk / "old.txt").write_bytes(b"precious old content\n")
    body = os.urandom(MIB)
    uploading = lambda: bool(temp_names(area.disk))  # noqa: E731 - the upload's temp file
    front.abort_write(area.root("old.txt"), body, 300_000, uploading)
    assert no_temp_names(area.disk), temp_names(area.disk)
    front.abort_write(area.root("new.txt"), body, 300_000, uploading)
    assert no_temp_names(area.disk), temp_names(area.disk)
    assert front.read(area.root("old.txt")) == b"precious old content\n"
    assert refusal(lambda: front.read(area.root("new.txt"))) == "not_found"
    assert front.list(area.root()) == {"old.txt"}
    assert os.listdir(area.disk) == ["old.txt"]


@each(fronts_where(lambda f: f.can_abort_upload and not f.atomic_uploads))
def test_an_aborted_in_place_write_keeps_what_arrived(
    front: Front, area: Area, contract_server: Server
) -> None:
    """SFTP writes in place (README: as OpenSSH; for all-or-nothing uploads use WebDAV,
    the file API or ``scp -O``): a connection closed mid-write leaves a file of exactly
    the bytes the server acknowledged, its handle closed, and no temp file."""
    body = os.urandom(MIB)
    target = area.disk / "new.txt"
    front.abort_write(area.root("new.txt"), body, 300_000, target.exists)
    assert wait_until(lambda: (area.disk / "new.txt").read_bytes() == body[:300_000], 5.0)
    pid = contract_server.process.pid
    assert wait_until(lambda: not holds_open(pid, target), 5.0), "the handle stays open"
    assert front.read(area.root("new.txt")) == body[:300_000]
    assert front.list(area.root()) == {"new.txt"}
    assert no_temp_names(area.disk), temp_names(area.disk)


# --------------------------------------------------------------------------- names


@each(FRONTS)
def test_names_that_are_not_utf8(front: Front, area: Area) -> None:
    """A name that is not UTF-8, made on disk, is listed by its exact bytes and read
    wherever the protocol can name it (WebDAV cannot: a clear bad_name)."""
    raw = b"raw-\xff\xfe-\xe9.bin"
    with open(area.raw(raw), "wb") as file:
        file.write(b"bytes in a name\n")
    name = os.fsdecode(raw)
    assert front.list(area.root()) == {name}
    if front.byte_names:
        assert front.read(area.root(name)) == b"bytes in a name\n"
    else:
        assert refusal(lambda: front.read(area.root(name))) == "bad_name"
    assert os.listdir(os.fsencode(area.disk)) == [raw]


@each(FRONTS)
def test_a_name_of_255_bytes_works_and_256_is_refused(front: Front, area: Area) -> None:
    """NAME_MAX counts bytes: 255 bytes of a multi-byte name work, 256 are refused
    (ENAMETOOLONG) for a file and a folder, and nothing is made."""
    longest = "é" * 127 + "x"  # 255 bytes in UTF-8
    too_long = "é" * 128  # 256 bytes
    assert len(longest.encode()) == 255 and len(too_long.encode()) == 256
    front.write(area.root(longest), b"longest\n")
    assert front.read(area.root(longest)) == b"longest\n"
    assert front.list(area.root()) == {longest}
    bad_name = front.reports("bad_name")
    assert refusal(lambda: front.write(area.root(too_long), b"x")) == bad_name
    assert refusal(lambda: front.mkdir(area.root(too_long))) == bad_name
    assert os.listdir(area.disk) == [longest]


@each(FRONTS)
def test_nfc_and_nfd_spellings_are_distinct_files(front: Front, area: Area) -> None:
    """Names are bytes: the NFC and NFD spellings of one word are two files."""
    nfc, nfd = unicodedata.normalize("NFC", "café.txt"), unicodedata.normalize("NFD", "café.txt")
    assert nfc.encode() != nfd.encode()
    front.write(area.root(nfc), b"composed\n")
    front.write(area.root(nfd), b"decomposed\n")
    assert front.list(area.root()) == {nfc, nfd}
    assert front.read(area.root(nfc)) == b"composed\n"
    assert front.read(area.root(nfd)) == b"decomposed\n"
    assert (area.disk / nfc).read_bytes() == b"composed\n"
    assert (area.disk / nfd).read_bytes() == b"decomposed\n"


# --------------------------------------------------------------------------- big files


@each(FRONTS)
def test_a_big_file_round_trips_and_ranges_are_exact(front: Front, area: Area) -> None:
    """20 MiB go up and come back with the same SHA-256; ranged reads return exactly the
    bytes asked for, across block boundaries and at the end."""
    data = os.urandom(20 * MIB)
    path = area.root("big.bin")
    front.write(path, data)
    assert sha256((area.disk / "big.bin").read_bytes()) == sha256(data)
    assert front.stat(path) == Info("file", len(data))
    assert sha256(front.read(path)) == sha256(data)
    for start, end in (
        (0, 1),
        (MIB - 3, MIB + 5),
        (5 * MIB + 123, 5 * MIB + 123 + 256 * 1024 + 1),
        (len(data) - 7, len(data)),
    ):
        assert front.read_range(path, start, end) == data[start:end], (start, end)


# --------------------------------------------------------------------------- errors


@each(FRONTS)
def test_missing_names_are_not_found(front: Front, area: Area) -> None:
    """Every operation on a name that does not exist is not_found, and makes nothing."""
    missing = area.root("missing")
    attempts: dict[str, Callable[[], object]] = {
        "read": lambda: front.read(missing),
        "read a range": lambda: front.read_range(missing, 0, 1),
        "stat": lambda: front.stat(missing),
        "list": lambda: front.list(missing),
        "remove": lambda: front.remove(missing),
        "rmdir": lambda: front.rmdir(missing),
        "rename": lambda: front.rename(missing, area.root("b"), True),
        "read below": lambda: front.read(area.root("missing/file.txt")),
    }
    outcomes = {what: refusal(action) for what, action in attempts.items()}
    assert outcomes == dict.fromkeys(attempts, "not_found")
    assert os.listdir(area.disk) == []


@each(FRONTS)
def test_mkdir_of_an_existing_name_is_exists(front: Front, area: Area) -> None:
    """mkdir over an existing folder or file is refused as exists; both stay."""
    (area.disk / "folder").mkdir()
    (area.disk / "folder" / "inner.txt").write_bytes(b"inner\n")
    (area.disk / "file.txt").write_bytes(b"file\n")
    before = snapshot(area.disk)
    assert refusal(lambda: front.mkdir(area.root("folder"))) == "exists"
    assert refusal(lambda: front.mkdir(area.root("file.txt"))) == "exists"
    assert snapshot(area.disk) == before


@each(FRONTS)
def test_deleting_a_folder_that_is_not_empty(front: Front, area: Area) -> None:
    """A folder that holds names is not removed by a folder delete (not_empty), except
    over WebDAV, where DELETE of a collection removes it whole (RFC 4918 9.6.1)."""
    (area.disk / "full" / "sub").mkdir(parents=True)
    (area.disk / "full" / "sub" / "f.txt").write_bytes(b"f\n")
    before = snapshot(area.disk)
    if front.delete_removes_tree:
        front.rmdir(area.root("full"))
        assert os.listdir(area.disk) == []
        assert refusal(lambda: front.stat(area.root("full"))) == "not_found"
    else:
        assert refusal(lambda: front.rmdir(area.root("full"))) == front.reports("not_empty")
        assert snapshot(area.disk) == before


@each(FRONTS)
def test_reading_a_folder_as_a_file(front: Front, area: Area) -> None:
    """Reading a folder as a file is refused as is_a_folder; the file API's GET of a
    folder is its listing (README), which names what it holds."""
    (area.disk / "folder").mkdir()
    (area.disk / "folder" / "member-name.txt").write_bytes(b"m\n")
    if front.folder_read == "listing":
        assert b"member-name.txt" in front.read(area.root("folder"))
    else:
        assert refusal(lambda: front.read(area.root("folder"))) == front.reports("is_a_folder")
        kind = refusal(lambda: front.read_range(area.root("folder"), 0, 1))
        assert kind == front.reports("is_a_folder")


@each(FRONTS)
def test_rename_replaces_only_when_asked(front: Front, area: Area) -> None:
    """A rename asked to replace replaces the target whole; one asked not to is refused
    as exists and changes nothing (where the client can ask: not rename(2))."""
    (area.disk / "a.txt").write_bytes(b"a\n")
    (area.disk / "b.txt").write_bytes(b"b\n")
    if front.rename_noreplace:
        before = snapshot(area.disk)
        kind = refusal(lambda: front.rename(area.root("a.txt"), area.root("b.txt"), False))
        assert kind == "exists"
        assert snapshot(area.disk) == before
        front.rename(area.root("a.txt"), area.root("c.txt"), False)
        front.rename(area.root("c.txt"), area.root("a.txt"), False)
    front.rename(area.root("a.txt"), area.root("b.txt"), True)
    assert front.list(area.root()) == {"b.txt"}
    assert front.read(area.root("b.txt")) == b"a\n"
    assert os.listdir(area.disk) == ["b.txt"]
