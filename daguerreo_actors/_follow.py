"""Reading a growing log file line by line, as ``tail -F`` does.

:func:`follow_lines` yields complete lines (a half-written last line waits
until its newline arrives). At the end of the file it waits ``interval``
seconds and looks again; a file that shrank was truncated (read again from
its start), a path that now names another file was rotated (the old file is
read to its end, then the new one from its start), a path that vanished is
waited for. The caller stops it (Ctrl-C, or by closing the generator).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TextIO


def follow_lines(
    path: str,
    *,
    interval: float = 0.1,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    handle: TextIO | None = None
    inode: tuple[int, int] | None = None
    partial = ""
    try:
        while True:
            if handle is None:
                handle, inode = _open(path)
                partial = ""
                if handle is None:
                    sleep(interval)
                    continue
            chunk = handle.readline()
            if chunk:
                partial += chunk
                if partial.endswith("\n"):
                    line, partial = partial, ""
                    yield line
                continue
            # At the end of what is there: truncated, rotated, or just idle.
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                stat = None
            if stat is None or (stat.st_dev, stat.st_ino) != inode:
                handle.close()
                handle = None
                if stat is None:
                    sleep(interval)
                continue
            if stat.st_size < handle.tell():
                handle.seek(0)
                partial = ""
                continue
            sleep(interval)
    finally:
        if handle is not None:
            handle.close()


def _open(path: str) -> tuple[TextIO | None, tuple[int, int] | None]:
    try:
        handle = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        return None, None
    stat = os.fstat(handle.fileno())
    return handle, (stat.st_dev, stat.st_ino)
