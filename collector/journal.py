"""The intake journal: accepted rows reach disk before their request is acknowledged.

Acknowledging only after a DuckDB commit ties throughput to how many requests senders keep in
flight: with 16 requests of 512 spans in flight no commit can hold more than 8 k rows, and small
commits pay the fixed costs (the duplicate check, the WAL sync, the ledger state) over and over,
while a checkpoint stalls every waiting sender. So the normalized rows of each accepted request are
appended to this journal and synced first; the request is acknowledged then, and the writer
inserts queued rows into DuckDB in large batches afterwards.

Each frame is one request's rows as an Arrow IPC stream, the exact table the writer inserts, so a
replay stores exactly what a running collector would have stored (no re-decoding, no dependence on
settings changed in between). Frames carry increasing ids; the writer records the last id it
committed (``intake_journal.last_frame``) in the same transaction as the rows, so after a crash the
next start inserts exactly the frames after that id, and segment files wholly at or below it are
deleted.

A frame acknowledged is synced together with every byte before it, so a crash can tear only frames
that were never acknowledged, at the end: reading stops at the first frame whose header, length or
checksum does not hold.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

log = logging.getLogger(__name__)

MAGIC = b"GTJ1"
# magic, frame id, payload length, CRC-32 of (frame id, payload)
HEADER = struct.Struct("<4sQII")
SEGMENT_BYTES = 64 * 1024 * 1024
SUFFIX = ".journal"


@dataclass(frozen=True)
class Frame:
    id: int
    table: pa.Table


def journal_path(db_path: str | Path) -> Path:
    """The intake journal's directory beside a database file."""
    return Path(str(db_path) + ".intake")


class JournalError(OSError):
    """The journal could not be written; the request must not be acknowledged."""


class IntakeJournal:
    """Append-only segment files ``<first frame id>.journal`` in one directory."""

    def __init__(self, directory: str | Path, segment_bytes: int = SEGMENT_BYTES):
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()  # orders frames: id, bytes in the file, queue position
        self._sync_lock = threading.Lock()  # one fdatasync at a time covers every writer before it
        self._fd: int | None = None
        self._segment_size = 0
        self._written = 0  # bytes appended since start, across segments
        self._synced = 0
        self._next_id = 1
        self._started = False  # set once any replay is done: only then may close() clear the folder
        self.stats = {"frames": 0, "bytes": 0, "syncs": 0, "replayed_frames": 0, "torn_bytes": 0}

    # --- recovery -------------------------------------------------------------------------------
    def segments(self) -> list[tuple[int, Path]]:
        """(first frame id, path) of every segment, oldest first."""
        found = []
        for path in self.directory.glob(f"*{SUFFIX}") if self.directory.is_dir() else ():
            try:
                found.append((int(path.name[: -len(SUFFIX)]), path))
            except ValueError:
                continue
        return sorted(found)

    def frames_after(self, last_committed: int) -> Iterator[Frame]:
        """Every intact frame with an id above ``last_committed``, in order. Also sets where new
        frames are numbered from."""
        highest = last_committed
        for _, path in self.segments():
            for frame_id, payload in _read_segment(path, self.stats):
                highest = max(highest, frame_id)
                if frame_id > last_committed:
                    self.stats["replayed_frames"] += 1
                    yield Frame(frame_id, pa.ipc.open_stream(payload).read_all())
        self._next_id = highest + 1

    def pending_frames(self, last_committed: int) -> int:
        """How many intact frames are not yet in the database (for readers of a stopped collector)."""
        return sum(1 for _, path in self.segments() for frame_id, _ in _read_segment(path, {}) if frame_id > last_committed)

    # --- appending ------------------------------------------------------------------------------
    def start(self) -> None:
        """Open a fresh segment for new frames (after any replay)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # span data: owner only, like the keys
        self._open_segment()
        self._started = True

    def append(self, table: pa.Table, enqueue: Callable[[int], None], ipc: pa.Buffer | None = None) -> int:
        """Write ``table`` as the next frame, hand its id to ``enqueue`` (in frame order), and return
        once the frame is on disk. ``ipc``: the table already as an Arrow IPC stream, if at hand.
        Raises ``JournalError`` if it could not be written or synced."""
        payload = ipc if ipc is not None else _ipc_bytes(table)
        with self._lock:
            if self._fd is None:
                raise JournalError("the intake journal is closed")
            if self._segment_size and self._segment_size + HEADER.size + len(payload) > self.segment_bytes:
                self._rotate()
            frame_id = self._next_id
            header = HEADER.pack(MAGIC, frame_id, len(payload), _crc(frame_id, payload))
            size = len(header) + len(payload)
            try:
                _write_all(self._fd, header, payload)
            except OSError as exc:
                # A partial frame would hide every later one from replay: cut it off again.
                self._truncate_back()
                raise JournalError(f"intake journal write failed: {exc}") from exc
            self._next_id += 1
            self._segment_size += size
            self._written += size
            end = self._written
            self.stats["frames"] += 1
            self.stats["bytes"] += size
            enqueue(frame_id)
        self._sync_through(end)
        return frame_id

    def release_through(self, last_committed: int) -> None:
        """Delete segments whose every frame is committed (never the one being appended to)."""
        segments = self.segments()
        for (_, path), (next_first, _) in zip(segments, segments[1:], strict=False):
            if next_first - 1 <= last_committed:
                _unlink(path)

    def close(self, last_committed: int | None = None) -> None:
        """Stop appending; with everything committed, the journal's files are removed."""
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
        if self._started and last_committed is not None and last_committed >= self._next_id - 1:
            for _, path in self.segments():
                _unlink(path)

    # --- internals ------------------------------------------------------------------------------
    def _sync_through(self, end: int) -> None:
        with self._sync_lock:
            if self._synced >= end:
                return  # another thread's sync already covered this frame
            with self._lock:
                fd, target = self._fd, self._written
            if fd is None:
                raise JournalError("the intake journal was closed before the frame was synced")
            try:
                os.fdatasync(fd)
            except OSError as exc:
                raise JournalError(f"intake journal sync failed: {exc}") from exc
            self._synced = target
            self.stats["syncs"] += 1

    def _open_segment(self) -> None:
        path = self.directory / f"{self._next_id:020d}{SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._segment_size = os.fstat(self._fd).st_size
        _sync_directory(self.directory)  # the new file's name must survive a crash too

    def _rotate(self) -> None:
        os.fdatasync(self._fd)
        os.close(self._fd)
        self._synced = self._written  # everything in the closed segment is on disk
        self._open_segment()

    def _truncate_back(self) -> None:
        try:
            os.ftruncate(self._fd, self._segment_size)
        except OSError:
            log.exception("could not cut a partial frame off the intake journal")


def _read_segment(path: Path, stats: dict) -> Iterator[tuple[int, memoryview]]:
    try:
        data = path.read_bytes()
    except OSError:
        log.exception("intake journal segment %s cannot be read", path)
        return
    view = memoryview(data)
    pos = 0
    while pos + HEADER.size <= len(data):
        magic, frame_id, length, crc = HEADER.unpack_from(data, pos)
        start, end = pos + HEADER.size, pos + HEADER.size + length
        if magic != MAGIC or end > len(data) or _crc(frame_id, view[start:end]) != crc:
            break
        yield frame_id, view[start:end]
        pos = end
    if pos < len(data):
        # Only a frame that was never acknowledged can be torn (see the module docstring).
        stats["torn_bytes"] = stats.get("torn_bytes", 0) + len(data) - pos
        log.warning("intake journal %s: %d bytes after the last intact frame ignored (a write cut short)",
                    path.name, len(data) - pos)


def _ipc_bytes(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _crc(frame_id: int, payload) -> int:
    return zlib.crc32(payload, zlib.crc32(frame_id.to_bytes(8, "little")))


def _write_all(fd: int, header: bytes, payload) -> None:
    written = os.writev(fd, [header, payload])
    if written < len(header) + len(payload):  # a short write (rare on files): finish it piece by piece
        rest = memoryview(header + bytes(payload))[written:]
        while rest:
            rest = rest[os.write(fd, rest):]


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # a committed segment that stays is harmless: the next release or start retries
        log.exception("could not delete the committed journal segment %s", path)
