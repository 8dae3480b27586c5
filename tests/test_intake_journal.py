"""The intake journal: frames survive, torn tails are cut, and a restart stores exactly the frames
that were acknowledged but not committed."""

from __future__ import annotations

import time

import duckdb
import pyarrow as pa

from govtrace.analytics.reader import FileReader
from govtrace.collector.decode_pool import decode_batch
from govtrace.collector.journal import IntakeJournal
from govtrace.collector.loadgen import build_request
from govtrace.collector.store import Store, journal_path


def _table(spans: int, seed: int) -> pa.Table:
    return decode_batch(build_request(spans, seed=seed).body, "protobuf", None, 1 << 26, None, time.time_ns()).table


def _append(journal: IntakeJournal, table: pa.Table) -> int:
    ids: list[int] = []
    journal.append(table, ids.append)
    return ids[0]


def test_frames_come_back_exactly_and_numbering_continues_after_them(tmp_path):
    journal = IntakeJournal(tmp_path / "j")
    journal.start()
    tables = [_table(8, seed) for seed in range(3)]
    ids = [_append(journal, table) for table in tables]
    journal.close()
    assert ids == [1, 2, 3]

    reopened = IntakeJournal(tmp_path / "j")
    frames = list(reopened.frames_after(1))
    assert [frame.id for frame in frames] == [2, 3]
    assert all(frame.table.equals(table) for frame, table in zip(frames, tables[1:], strict=True))
    reopened.start()
    assert _append(reopened, tables[0]) == 4


def test_reading_stops_at_a_torn_or_corrupted_frame(tmp_path):
    journal = IntakeJournal(tmp_path / "j")
    journal.start()
    for seed in range(3):
        _append(journal, _table(8, seed))
    journal.close()
    (segment,) = list((tmp_path / "j").glob("*.journal"))
    data = segment.read_bytes()

    segment.write_bytes(data[:-100])  # the last frame cut short, as by a crash mid-write
    torn = IntakeJournal(tmp_path / "j")
    assert [frame.id for frame in torn.frames_after(0)] == [1, 2]
    assert torn.stats["torn_bytes"] > 0

    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # one bit pattern changed inside the second frame
    segment.write_bytes(bytes(flipped))
    assert [frame.id for frame in IntakeJournal(tmp_path / "j").frames_after(0)] == [1]


def test_only_wholly_committed_segments_are_deleted(tmp_path):
    journal = IntakeJournal(tmp_path / "j", segment_bytes=1)  # every frame opens a new segment
    journal.start()
    for seed in range(4):
        _append(journal, _table(4, seed))
    assert len(journal.segments()) == 4
    journal.release_through(2)
    assert [first for first, _ in journal.segments()] == [3, 4]
    journal.release_through(10)
    assert [first for first, _ in journal.segments()] == [4], "the segment being appended to stays"
    journal.close(last_committed=4)
    assert journal.segments() == []


def test_a_restart_stores_acknowledged_uncommitted_frames_once_and_skips_committed_ones(tmp_path, capsys):
    db = tmp_path / "store.duckdb"
    committed, pending = _table(16, 1), _table(16, 2)
    with Store(db) as store:
        store.submit(committed)
        store.wait_committed()
    with duckdb.connect(str(db)) as con:
        last = con.execute("SELECT last_frame FROM intake_journal").fetchall()[0][0]
    assert last == 1

    # As if a run had acknowledged two frames and crashed before committing the second: the first
    # is already in the database (its segment not yet deleted), the second only in the journal.
    crashed = IntakeJournal(journal_path(str(db)))
    crashed.start()
    _append(crashed, committed)
    _append(crashed, pending)
    crashed.close()

    # A reader of the file alone is told what it cannot see yet.
    reader = FileReader(db)
    reader.con.close()
    assert "1 acknowledged request(s)" in capsys.readouterr().err

    store = Store(db)
    store.start()
    try:
        assert store.stats["spans_replayed"] == 16
        con = store.cursor()
        span_ids = [row[0] for row in con.execute("SELECT span_id FROM spans ORDER BY seq").fetchall()]
        events = con.execute("SELECT count FROM ingest_events WHERE event = 'journal_replayed'").fetchall()
        con.close()
    finally:
        store.close()
    assert span_ids == committed.column("span_id").to_pylist() + pending.column("span_id").to_pylist()
    assert events == [(16,)]
    assert not list(journal_path(str(db)).glob("*.journal")), "a clean stop leaves the journal empty"


def test_without_the_journal_the_store_acknowledges_after_the_commit(tmp_path):
    with Store(tmp_path / "plain.duckdb", journal=False) as store:
        assert not store.journaled
        receipt = store.submit(_table(8, 3)).result(timeout=30)
        assert receipt.stored == 8
    assert not journal_path(str(tmp_path / "plain.duckdb")).exists()


def test_acknowledgements_wait_while_the_writer_is_a_batch_behind(tmp_path):
    with Store(tmp_path / "flow.duckdb", max_batch_spans=64) as store:
        with store._cond:  # the writer cannot take anything while this is held
            store._queued_spans = 1000
        began = time.monotonic()
        store.wait_for_room(0.3)
        assert time.monotonic() - began >= 0.3, "more than a quarter batch queued: the ack waits"
        with store._cond:
            store._queued_spans = 0
        began = time.monotonic()
        store.wait_for_room(5)
        assert time.monotonic() - began < 1


def test_the_status_shows_the_journal_at_work(collector):
    from govtrace.collector.loadgen import RawExporter

    exporter = RawExporter(collector.grpc_endpoint)
    for seed in range(3):
        exporter.send(build_request(16, seed=seed).body)
    exporter.close()
    status = collector.reads.status()
    assert status["spans"] == 48
    assert status["journal_frames"] == 3 and status["journal_bytes"] > 0 and status["journal_syncs"] >= 1
    assert status["journal_replayed_frames"] == 0 and status["store_spans_replayed"] == 0


def test_a_journal_that_cannot_be_replayed_stops_the_start_and_is_kept(tmp_path):
    db = tmp_path / "keep.duckdb"
    Store(db).close()
    folder = journal_path(str(db))
    journal = IntakeJournal(folder)
    journal.start()
    payload = b"not an arrow stream"
    from govtrace.collector.journal import HEADER, MAGIC, _crc

    with open(folder / "00000000000000000002.journal", "wb") as handle:  # intact frame, unreadable rows
        handle.write(HEADER.pack(MAGIC, 2, len(payload), _crc(2, payload)) + payload)
    journal.close()
    store = Store(db)
    try:
        store.start()
    except OSError as exc:
        assert "kept there for the next start" in str(exc)
    else:
        raise AssertionError("a journal that cannot be stored must stop the start")
    finally:
        store.close()
    assert (folder / "00000000000000000002.journal").exists(), "nothing acknowledged is deleted"
