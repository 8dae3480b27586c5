"""Request bodies and decoded tables cross between the receiving process and its decode workers as
files in a private folder on tmpfs (``/dev/shm``), not through the process pool's pipes.

Measured under full load, the pipes cost the receiving process about 40 % of its CPU: a 470 KB
body pickled and pushed through 64 KB of pipe buffer, then a 1.2 MB table the same way back, each
in dozens of blocking writes and reads. A tmpfs file is written once, memory-mapped by the reader,
and unlinked at once: the decoded table is used in place (Arrow reads IPC zero-copy from the map),
and its bytes are also what the intake journal writes, so the table is never serialized twice.

Each collector process gets its own folder ``govtrace-<pid>-*``; it is removed on close, and a
folder whose process is gone (a collector killed with SIGKILL) is removed by the next start.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pyarrow as pa

PREFIX = "govtrace-"


def default_root() -> str:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


class Handoff:
    """The receiving side: a private folder, names for files in it, cleanup."""

    def __init__(self, root: str | None = None):
        root = root or default_root()
        remove_stale(root)
        self.folder = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root)
        self._names = itertools.count()
        self._lock = threading.Lock()

    def path(self, kind: str) -> str:
        with self._lock:
            number = next(self._names)
        return os.path.join(self.folder, f"{kind}-{number}")

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def write_bytes(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def take_bytes(path: str) -> bytes:
    """Read a handed-over file and remove it."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    finally:
        unlink(path)


def write_table(path: str, table: pa.Table) -> None:
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


def take_table(path: str) -> tuple[pa.Table, pa.Buffer]:
    """A handed-over table, zero-copy from the file's memory map (which lives as long as the table
    or its buffer does), and the IPC stream bytes it was read from. The file is removed."""
    try:
        buffer = pa.memory_map(path).read_buffer()
    finally:
        unlink(path)
    return pa.ipc.open_stream(buffer).read_all(), buffer


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_stale(root: str) -> None:
    """Folders of collector processes that no longer run (tmpfs keeps them until reboot)."""
    for folder in Path(root).glob(f"{PREFIX}*-*"):
        try:
            pid = int(folder.name[len(PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _running(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
