"""Bodies and tables cross to and from decode workers through tmpfs files that never outlive use."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest

from govtrace.collector import handoff
from govtrace.collector.decode_pool import Decoder
from govtrace.collector.loadgen import build_request


def test_a_table_comes_back_zero_copy_and_its_file_is_gone(tmp_path):
    table = pa.table({"a": list(range(1000)), "b": [str(i) for i in range(1000)]})
    path = str(tmp_path / "t")
    handoff.write_table(path, table)
    back, ipc = handoff.take_table(path)
    assert not os.path.exists(path)
    assert back.equals(table)
    assert pa.ipc.open_stream(ipc).read_all().equals(table), "the buffer is the table's IPC stream"


def test_decoding_through_workers_leaves_no_files_behind(tmp_path):
    decoder = Decoder(workers=1)
    try:
        built = build_request(64, seed=5)
        batch = decoder(built.body, "protobuf", None, 1 << 24)
        assert batch.table.column("span_id").to_pylist() == list(built.span_ids)
        assert batch.ipc is not None
        assert os.listdir(decoder._handoff.folder) == []
    finally:
        decoder.close()
    assert not os.path.exists(decoder._handoff.folder)


def test_the_folder_of_a_collector_that_died_is_removed_by_the_next_one(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{handoff.PREFIX}{int(dead.stdout)}-x1"
    stale.mkdir()
    (stale / "table-0").write_bytes(b"left over")
    mine = tmp_path / f"{handoff.PREFIX}{os.getpid()}-x2"
    mine.mkdir()
    fresh = handoff.Handoff(str(tmp_path))
    try:
        assert not stale.exists(), "a dead process's folder is removed"
        assert mine.exists(), "a running process's folder is left alone"
    finally:
        fresh.close()


def test_when_tmpfs_is_full_bodies_and_tables_go_through_the_pool_instead(tmp_path):
    decoder = Decoder(workers=1)
    folder = decoder._handoff.folder
    try:
        # No file can be created there, as when a small /dev/shm is full.
        decoder._handoff.folder = str(tmp_path / "missing" / "folder")
        built = build_request(32, seed=6)
        batch = decoder(built.body, "protobuf", None, 1 << 24)
        assert batch.table.column("span_id").to_pylist() == list(built.span_ids)
    finally:
        decoder._handoff.folder = folder
        decoder.close()
    assert not os.path.exists(folder)


WORKER_LIBRARIES = """
from govtrace.collector.decode_pool import Decoder
from govtrace.collector.loadgen import build_request

decoder = Decoder(workers=1)
assert decoder(build_request(64, seed=6).body, "protobuf", None, 1 << 24).table.num_rows == 64
[worker] = decoder.worker_pids()
with open(f"/proc/{worker}/maps") as maps:
    print(" ".join(sorted({line.split()[-1] for line in maps if ".so" in line})))
decoder.close()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_a_decode_worker_loads_neither_duckdb_nor_grpc_nor_pandas():
    # Each MB a worker rests at is taken from the memory budget for requests in flight. (In a fresh
    # interpreter: a spawned worker also imports its parent's main module, here pytest's.)
    run = subprocess.run([sys.executable, "-c", WORKER_LIBRARIES], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    libraries = run.stdout
    assert "pyarrow" in libraries  # the maps were read
    for unwanted in ("_duckdb", "/grpc/", "/pandas/", "/cryptography/"):
        assert unwanted not in libraries, f"a decode worker loaded {unwanted.strip('/')}"
