"""A reader that goes on where it stopped has the kernel read ahead of it: the next
``READ_AHEAD`` bytes come into the page cache while it is still busy with what it has."""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hoody_mount.core.open_files import READ_AHEAD, OpenFile
from hoody_mount.core.vfs import VFS

MiB = 1 << 20
_libc = ctypes.CDLL(None, use_errno=True)


def cached(fd: int, offset: int) -> bool:
    """Whether the page at ``offset`` is in the page cache, asked with mincore(2) over a
    mapping that is never touched (a probing read would itself start the readahead)."""
    page = mmap.PAGESIZE
    mapped = mmap.mmap(fd, page, mmap.MAP_PRIVATE, offset=offset - offset % page)
    try:
        start = ctypes.c_char.from_buffer(mapped)
        vector = ctypes.c_ubyte()
        failed = _libc.mincore(ctypes.byref(start), page, ctypes.byref(vector))
        del start
        if failed:
            raise OSError(ctypes.get_errno(), "mincore")
        return bool(vector.value & 1)
    finally:
        mapped.close()


def uncached_file(path: Path, size: int) -> None:
    """A file of ``size`` bytes on the disk and out of the page cache."""
    with path.open("wb") as handle:
        for _ in range(size // MiB):
            handle.write(os.urandom(MiB))
        handle.flush()
        os.fsync(handle.fileno())
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


@contextmanager
def uncached_open(folder: Path, size: int) -> Iterator[tuple[OpenFile, int]]:
    """A new uncached file of ``size`` bytes, open through the VFS, and a probe fd on it."""
    uncached_file(folder / "big.bin", size)
    probe = os.open(folder / "big.bin", os.O_RDONLY)
    file = VFS.open_root(str(folder)).open_file("/big.bin", os.O_RDONLY)
    try:
        yield file, probe
    finally:
        file.close()
        os.close(probe)


def wait_cached(probe: int, offset: int) -> bool:
    """Whether the page at ``offset`` comes into the cache within 10 s."""
    deadline = time.monotonic() + 10
    while not cached(probe, offset) and time.monotonic() < deadline:
        time.sleep(0.05)
    return cached(probe, offset)


def test_a_sequential_reader_has_the_kernel_read_ahead(tmp_path: Path) -> None:
    far = READ_AHEAD  # beyond what the kernel reads ahead by itself (checked first)
    with uncached_open(tmp_path, 3 * READ_AHEAD) as (_, probe):
        assert not cached(probe, far), f"{tmp_path} keeps files cached: the test needs a disk"
        os.pread(probe, MiB, 0)
        os.pread(probe, MiB, MiB)
        time.sleep(0.5)
        assert not cached(probe, far), "the kernel alone reads this far ahead here"
    with uncached_open(tmp_path, 3 * READ_AHEAD) as (file, probe):
        assert len(file.read(0, MiB)) == MiB
        assert len(file.read(MiB, MiB)) == MiB  # goes on where it stopped
        assert wait_cached(probe, far), "nothing read ahead of a sequential reader"


def test_a_reader_that_jumps_has_nothing_read_ahead(tmp_path: Path) -> None:
    with uncached_open(tmp_path, 3 * READ_AHEAD) as (file, probe):
        assert len(file.read(0, 4096)) == 4096
        assert len(file.read(READ_AHEAD, 4096)) == 4096  # a jump, not a sequel
        time.sleep(0.5)
        assert not cached(probe, READ_AHEAD + READ_AHEAD // 2)


def test_a_reader_that_goes_back_far_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    uncached_file(path, 4 * READ_AHEAD)
    file = VFS.open_root(str(tmp_path)).open_file("/big.bin", os.O_RDONLY)
    try:
        for offset in range(0, 3 * READ_AHEAD, MiB):  # the read-ahead reaches the end
            file.read(offset, MiB)
        uncached_file(path, 4 * READ_AHEAD)  # the same inode, dropped from the cache again
        probe = os.open(path, os.O_RDONLY)
        try:
            file.read(0, MiB)
            file.read(MiB, MiB)  # a second pass from the start
            assert wait_cached(probe, READ_AHEAD), "no read-ahead on a second pass"
        finally:
            os.close(probe)
    finally:
        file.close()
