"""Virtual paths: one normalisation, done once at the edge, used for checks and access alike.

A virtual path is absolute, ``/``-separated, has no ``.``, ``..`` or empty parts and no
trailing slash (``/`` itself is the root). ``..`` is applied lexically and stops at the
root, as in a chroot. A backslash is an ordinary character of a Linux file name and is
kept as it is: there is no second reading of the path anywhere else.
"""

from __future__ import annotations

import errno

NAME_MAX = 255
PATH_MAX = 4096


def _error(code: int, message: str, path: str) -> OSError:
    return OSError(code, message, path)


def normalize(path: str, cwd: str = "/") -> str:
    """Return the virtual path of ``path``, taken relative to ``cwd`` when not absolute.

    Raises ``OSError`` EINVAL for a NUL byte and ENAMETOOLONG for an over-long name or path.
    """
    if "\0" in path:
        raise _error(errno.EINVAL, "Invalid argument: path contains a NUL byte", path)
    try:
        encoded = path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte (JSON "\ud800")
        shown = path.encode("utf-8", "backslashreplace").decode()
        raise _error(
            errno.EINVAL, "Invalid argument: the path holds a character no name can", shown
        ) from None
    if len(encoded) > PATH_MAX:
        raise _error(errno.ENAMETOOLONG, "File name too long", path[:64] + "...")
    joined = path if path.startswith("/") else f"{cwd}/{path}"
    parts: list[str] = []
    for part in joined.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise _error(errno.ENAMETOOLONG, "File name too long", part[:64] + "...")
        parts.append(part)
    result = "/" + "/".join(parts)
    if len(result.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise _error(errno.ENAMETOOLONG, "File name too long", result[:64] + "...")
    return result


def split(path: str) -> tuple[str, str]:
    """Split a normalised virtual path into its parent and its last name (``/`` has none)."""
    if path == "/":
        return "/", ""
    parent, _, name = path.rpartition("/")
    return parent or "/", name


def join(parent: str, name: str) -> str:
    """Join a normalised virtual folder and one name."""
    return f"{parent.rstrip('/')}/{name}"


def relative(path: str) -> str:
    """The path relative to the jail's root fd, as the kernel wants it (``.`` for the root)."""
    return path.lstrip("/") or "."


def is_within(path: str, folder: str) -> bool:
    """Whether the virtual ``path`` is ``folder`` or lies below it (by whole components)."""
    if folder == "/":
        return True
    return path == folder or path.startswith(folder + "/")


def in_root(jail: str, path: str) -> str:
    """Where the jail's virtual ``path`` lies in the served root: the jail prefixed (a
    trailing ``/``, which marks a folder in some protocols' keys, is kept)."""
    return path if jail == "/" else jail + path


def in_jail(jail: str, path: str) -> str | None:
    """The virtual path inside ``jail`` of the served root's ``path`` (``in_root``
    undone), or None if it lies outside the jail."""
    if not is_within(path.rstrip("/") or "/", jail):
        return None
    return path if jail == "/" else path[len(jail) :] or "/"
