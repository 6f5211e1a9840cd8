"""Table-driven tests of the virtual path helpers in ``hoody_mount.core.paths``."""

from __future__ import annotations

import errno
import random

import pytest

from hoody_mount.core import paths

NAME_MAX = 255
PATH_MAX = 4096

# (raw path, cwd, expected virtual path)
NORMALIZE_CASES: list[tuple[str, str, str]] = [
    # plain absolute paths
    ("/", "/", "/"),
    ("/a", "/", "/a"),
    ("/a/b/c", "/", "/a/b/c"),
    # empty parts and doubled slashes
    ("//", "/", "/"),
    ("//a", "/", "/a"),
    ("/a//b", "/", "/a/b"),
    ("///a///b///", "/", "/a/b"),
    # "." parts
    ("/.", "/", "/"),
    ("/./a/./b/.", "/", "/a/b"),
    ("/a/.", "/", "/a"),
    # trailing slash
    ("/a/", "/", "/a"),
    ("/a/b/", "/", "/a/b"),
    # ".." applied lexically, clamped at the root
    ("/..", "/", "/"),
    ("/../..", "/", "/"),
    ("/../../..", "/", "/"),
    ("/../../etc/passwd", "/", "/etc/passwd"),
    ("/a/..", "/", "/"),
    ("/a/b/..", "/", "/a"),
    ("/a/../../b", "/", "/b"),
    ("/a/b/../../../../c/d", "/", "/c/d"),
    ("/a/../b/./../c/", "/", "/c"),
    # "..." and dotted names are ordinary names
    ("/...", "/", "/..."),
    ("/a/.../b", "/", "/a/.../b"),
    ("/.hidden", "/", "/.hidden"),
    ("/..a/a..", "/", "/..a/a.."),
    # relative paths are taken from cwd
    ("", "/", "/"),
    ("", "/x/y", "/x/y"),
    (".", "/x/y", "/x/y"),
    ("a", "/", "/a"),
    ("a/b", "/x", "/x/a/b"),
    ("./a", "/x", "/x/a"),
    ("..", "/x/y", "/x"),
    ("../b", "/x/y", "/x/b"),
    ("../../../../b", "/x/y", "/b"),
    ("a/../..", "/x/y", "/x"),
    ("a/", "/x", "/x/a"),
    # an absolute path ignores cwd
    ("/a", "/x/y", "/a"),
    ("/..", "/x/y", "/"),
    # a backslash is an ordinary character, never a separator
    ("/a\\b", "/", "/a\\b"),
    ("\\", "/", "/\\"),
    ("/..\\..\\etc\\passwd", "/", "/..\\..\\etc\\passwd"),
    ("..\\secret", "/x", "/x/..\\secret"),
    ("/a\\..\\b/c", "/", "/a\\..\\b/c"),
    ("/a/\\/b", "/", "/a/\\/b"),
    # spaces and unicode are kept
    ("/ a /b ", "/", "/ a /b "),
    ("/caf\u00e9/\u65e5\u672c", "/", "/caf\u00e9/\u65e5\u672c"),
    # non-UTF-8 names (os.fsdecode uses surrogateescape) are kept as they are
    ("/caf\udce9", "/", "/caf\udce9"),
    ("/\udcff\udcfe/../x\udc80", "/", "/x\udc80"),
    ("x\udce9", "/d\udce9", "/d\udce9/x\udce9"),
]


@pytest.mark.parametrize(("raw", "cwd", "expected"), NORMALIZE_CASES)
def test_normalize(raw: str, cwd: str, expected: str) -> None:
    """Each raw path normalises to the expected virtual path."""
    assert paths.normalize(raw, cwd) == expected


@pytest.mark.parametrize(("raw", "cwd", "expected"), NORMALIZE_CASES)
def test_normalize_is_idempotent(raw: str, cwd: str, expected: str) -> None:
    """Normalising a virtual path again gives the same path, whatever the cwd."""
    assert paths.normalize(expected, "/other") == expected


def test_normalize_default_cwd_is_root() -> None:
    """Without a cwd, a relative path is taken from the root."""
    assert paths.normalize("a/../../b") == "/b"


@pytest.mark.parametrize(
    "raw",
    ["\0", "/a\0", "/a\0b", "/\0/..", "a\0", "/ok/../\0", "/a/b\0/../c"],
)
def test_normalize_rejects_nul(raw: str) -> None:
    """A NUL byte anywhere is EINVAL, even in a part that ``..`` would remove."""
    with pytest.raises(OSError) as info:
        paths.normalize(raw)
    assert info.value.errno == errno.EINVAL


def _long_path(total: int) -> str:
    """An absolute path of exactly ``total`` bytes made of names no longer than NAME_MAX."""
    parts: list[str] = []
    length = 0
    while length < total:
        take = min(NAME_MAX, total - length - 1)
        if take <= 0:
            # one byte left: stretch the previous name by one (it stays <= NAME_MAX)
            parts[-1] = parts[-1][:-1] + "bb"
            length += 1
            break
        parts.append("a" * take)
        length += take + 1
    path = "/" + "/".join(parts)
    assert len(path.encode()) == total
    return path


@pytest.mark.parametrize(
    "raw",
    [
        "/" + "a" * NAME_MAX,
        "/x/" + "b" * NAME_MAX + "/y",
        "/" + "\u00e9" * 127 + "a",  # 255 bytes in UTF-8
        "/" + "\udce9" * NAME_MAX,  # 255 undecodable bytes
        _long_path(PATH_MAX),
    ],
    ids=["name255", "name255-mid", "utf8-255-bytes", "surrogate-255", "path4096"],
)
def test_normalize_accepts_limits(raw: str) -> None:
    """Names of exactly NAME_MAX bytes and paths of exactly PATH_MAX bytes are accepted."""
    assert paths.normalize(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        "/" + "a" * (NAME_MAX + 1),
        "/x/" + "b" * (NAME_MAX + 1) + "/y",
        "c" * (NAME_MAX + 1),
        "/" + "\u00e9" * 128,  # 128 characters but 256 bytes
        "/" + "\udce9" * (NAME_MAX + 1),  # 256 undecodable bytes
        "/" + "a" * (NAME_MAX + 1) + "/..",
        _long_path(PATH_MAX + 1),
        "/" + "a/" * 3000,
        "/" + "/" * PATH_MAX,
        "/" + "./" * 3000,
        "/" + "../" * 2000,
    ],
    ids=[
        "name256",
        "name256-mid",
        "relative-name256",
        "utf8-256-bytes",
        "surrogate-256",
        "name256-then-dotdot",
        "path4097",
        "many-names",
        "many-slashes",
        "many-dots",
        "many-dotdots",
    ],
)
def test_normalize_rejects_too_long(raw: str) -> None:
    """A name over NAME_MAX bytes or a path over PATH_MAX bytes is ENAMETOOLONG."""
    with pytest.raises(OSError) as info:
        paths.normalize(raw)
    assert info.value.errno == errno.ENAMETOOLONG


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", ("/", "")),
        ("/a", ("/", "a")),
        ("/a/b", ("/a", "b")),
        ("/a/b/c", ("/a/b", "c")),
        ("/a\\b", ("/", "a\\b")),
        ("/a/b\\c", ("/a", "b\\c")),
        ("/...", ("/", "...")),
        ("/d\udce9/f\udce9", ("/d\udce9", "f\udce9")),
    ],
)
def test_split(path: str, expected: tuple[str, str]) -> None:
    """split gives the parent folder and the last name; the root has no name."""
    assert paths.split(path) == expected


@pytest.mark.parametrize(
    ("parent", "name", "expected"),
    [
        ("/", "a", "/a"),
        ("/a", "b", "/a/b"),
        ("/a/b", "c", "/a/b/c"),
        ("/", "a\\b", "/a\\b"),
        ("/x", "\udce9", "/x/\udce9"),
    ],
)
def test_join(parent: str, name: str, expected: str) -> None:
    """join puts exactly one slash between a folder and a name."""
    assert paths.join(parent, name) == expected


@pytest.mark.parametrize("path", ["/a", "/a/b", "/a/b/c", "/a\\b", "/x/...", "/\udce9"])
def test_split_join_round_trip(path: str) -> None:
    """Joining the two halves of a split gives the path back."""
    assert paths.join(*paths.split(path)) == path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "."),
        ("/a", "a"),
        ("/a/b", "a/b"),
        ("/a\\b", "a\\b"),
        ("/\udce9", "\udce9"),
    ],
)
def test_relative(path: str, expected: str) -> None:
    """relative drops the leading slash; the root becomes ``.``."""
    assert paths.relative(path) == expected


@pytest.mark.parametrize(
    ("path", "folder", "expected"),
    [
        ("/srv/share", "/srv/share", True),
        ("/srv/share/x", "/srv/share", True),
        ("/srv/share/x/y", "/srv/share", True),
        ("/srv/share2", "/srv/share", False),
        ("/srv/share2/x", "/srv/share", False),
        ("/srv/shar", "/srv/share", False),
        ("/srv/share-old/x", "/srv/share", False),
        ("/srv/share.bak", "/srv/share", False),
        ("/srv/share\\x", "/srv/share", False),
        ("/srv", "/srv/share", False),
        ("/", "/srv/share", False),
        ("/other", "/srv/share", False),
        ("/", "/", True),
        ("/anything", "/", True),
        ("/a/b/c", "/", True),
        ("/a", "/a", True),
        ("/ab", "/a", False),
        ("/a/b", "/a", True),
    ],
)
def test_is_within(path: str, folder: str, expected: bool) -> None:
    """is_within compares whole components, never string prefixes."""
    assert paths.is_within(path, folder) is expected


_FUZZ_PARTS = ["", ".", "..", "a", "b", "...", "\\", "a\\..", "\u00e9", "\udce9", " "]


@pytest.mark.parametrize("seed", range(20))
def test_normalize_invariants(seed: int) -> None:
    """Random raw paths always normalise to a well-formed, idempotent virtual path."""
    rng = random.Random(seed)
    for _ in range(200):
        raw = "/".join(rng.choice(_FUZZ_PARTS) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.5:
            raw = "/" + raw
        cwd = paths.normalize("/".join(rng.choice(_FUZZ_PARTS) for _ in range(4)))
        out = paths.normalize(raw, cwd)
        assert out.startswith("/")
        assert "//" not in out
        assert out == "/" or not out.endswith("/")
        assert all(part not in (".", "..") for part in out.split("/")[1:])
        assert paths.normalize(out, "/elsewhere") == out
        if not raw.startswith("/") and ".." not in raw.split("/"):
            assert paths.is_within(out, cwd)


def test_a_lone_surrogate_is_einval() -> None:
    """A character that stands for no byte (JSON's "\\ud800") is EINVAL, not a
    UnicodeEncodeError (a 500 with a traceback in the file API, for any user)."""
    with pytest.raises(OSError) as caught:
        paths.normalize("/a/\ud800")
    assert caught.value.errno == errno.EINVAL
    assert caught.value.filename == "/a/\\ud800"


@pytest.mark.parametrize(
    ("jail", "path", "in_root"),
    [
        ("/", "/a/b", "/a/b"),
        ("/share", "/", "/share/"),
        ("/share", "/docs/", "/share/docs/"),
        ("/share", "/docs/f.txt", "/share/docs/f.txt"),
    ],
)
def test_a_jail_path_and_its_served_root_path_map_both_ways(
    jail: str, path: str, in_root: str
) -> None:
    """WebDAV lock and property keys name the served root's path: the jail prefixed,
    a folder's trailing '/' kept, and back."""
    assert paths.in_root(jail, path) == in_root
    assert paths.in_jail(jail, in_root) == path


@pytest.mark.parametrize("outside", ["/", "/shared", "/sharex/f", "/other/share"])
def test_a_served_root_path_outside_the_jail_has_no_jail_path(outside: str) -> None:
    """By whole components: /shared is not inside /share."""
    assert paths.in_jail("/share", outside) is None
