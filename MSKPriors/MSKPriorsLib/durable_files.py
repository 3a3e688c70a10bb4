"""Making archive files durable: early write-back, fsync of files and of folders.

How to use::

    from MSKPriorsLib.durable_files import fsync_folders, fsync_path, start_writeback

    start_writeback(descriptor)          # right after the last write; returns at once
    ...                                  # more files written meanwhile
    fsync_path(path)                     # waits for what is still in flight
    fsync_folders({path.parent})         # the folder entries (renames, new files)

Syncing a batch of files after the page cache took them costs one journal commit for the
batch instead of one per file. :func:`start_writeback` lets the disk start on a file's data
while the next one is received (Linux ``sync_file_range``; elsewhere it does nothing, and
the later fsync does all the work), so the fsync of a batch mostly finds its data written.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

# Linux sync_file_range flag: start write-out of the range's dirty pages, do not wait.
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """The C library's ``sync_file_range``, or None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()


def start_writeback(descriptor: int) -> None:
    """Ask the kernel to start writing a file's dirty pages to disk now, without waiting.

    Only a hint: it makes nothing durable (the file still needs :func:`fsync_path`), and it
    does nothing where the system has no such call.
    """
    if _sync_file_range is None:
        return
    if _sync_file_range(descriptor, 0, 0, _SYNC_FILE_RANGE_WRITE) != 0:
        logger.debug("sync_file_range failed (errno %d); the fsync will do it", ctypes.get_errno())


def fsync_path(path: Path) -> None:
    """Flush a file's content and size to the disk (returns once they are there)."""
    # Windows flushes only through a handle opened for writing.
    flags = os.O_RDONLY if os.name == "posix" else os.O_RDWR | getattr(os, "O_BINARY", 0)
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folders(folders: Iterable[Path]) -> None:
    """Flush folder entries (files renamed into them, folders created in them) to the disk.

    Only POSIX systems can open a folder for this; elsewhere it does nothing (NTFS journals
    its metadata).
    """
    if os.name != "posix":
        return
    for folder in sorted(set(folders)):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
