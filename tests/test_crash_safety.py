"""A collector killed with SIGKILL right after acknowledging keeps every acknowledged span."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import grpc

from govtrace.collector.admission import child_pids
from govtrace.collector.loadgen import RawExporter, build_request


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_until_gone(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"processes outlived their collector: {[p for p in pids if _alive(p)]}"
        time.sleep(0.05)


def test_every_acknowledged_span_survives_sigkill(serve_process, tmp_path):
    db = tmp_path / "crash.duckdb"
    server = serve_process(db)
    exporter = RawExporter(server.grpc_endpoint, timeout=10)
    acknowledged: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()
    enough = threading.Event()

    def send_until_killed(seed: int) -> None:
        for i in range(10_000):
            built = build_request(64, seed=seed * 100_000 + i)
            try:
                exporter.send(built.body)
            except grpc.RpcError:
                return  # the collector is gone: this request was never acknowledged
            with lock:
                acknowledged.extend(built.span_ids)
                if len(acknowledged) >= 2_000:
                    enough.set()
            if killed.is_set():
                return

    senders = [threading.Thread(target=send_until_killed, args=(n,)) for n in range(4)]
    for sender in senders:
        sender.start()
    assert enough.wait(60), "the collector did not acknowledge 2,000 spans in time"
    workers = child_pids(server.proc.pid)
    assert workers, "the collector runs its decode workers as child processes"
    server.kill()  # SIGKILL while requests are in flight
    killed.set()
    for sender in senders:
        sender.join(30)
    exporter.close()
    with lock:
        expected = set(acknowledged)

    # Its decode workers do not outlive it (they would hold memory forever).
    _wait_until_gone(workers)

    # A restarted collector first stores what the crash left in the intake journal (acknowledged,
    # not yet committed), then serves again on the same file.
    restarted = serve_process(db)
    again = RawExporter(restarted.grpc_endpoint)
    built = build_request(8, seed=424242)
    again.send(built.body)
    again.close()
    restarted.stop()

    # The file opens cleanly (WAL replay) and holds every acknowledged span, once, gap-free.
    con = duckdb.connect(str(db), read_only=True)
    stored = [row[0] for row in con.execute("SELECT span_id FROM spans").fetchall()]
    seqs = [row[0] for row in con.execute("SELECT seq FROM spans ORDER BY seq").fetchall()]
    con.close()
    assert expected - set(stored) == set(), f"{len(expected - set(stored))} acknowledged spans were lost"
    assert set(built.span_ids) <= set(stored)
    assert len(stored) == len(set(stored)), "a span was stored twice"
    assert seqs == list(range(len(seqs))), "sequence numbers have gaps or duplicates after the crash"
    # Everything journaled is committed after a clean stop, so the journal holds nothing any more.
    assert not list((db.parent / (db.name + ".intake")).glob("*.journal"))


def test_a_killed_decode_worker_is_replaced_and_its_senders_are_told_to_retry(tmp_path):
    import os
    import signal

    from govtrace.collector.config import load_config
    from govtrace.collector.server import Collector

    config = load_config(None, {"db": str(tmp_path / "worker.duckdb"), "grpc": "127.0.0.1:0", "http": "127.0.0.1:0",
                                "decode_workers": 1}, environ={})
    with Collector(config) as collector:
        exporter = RawExporter(collector.grpc_endpoint, timeout=30)
        exporter.send(build_request(8, seed=1).body)
        [worker] = list(collector.decoder._pool._processes)  # the pool's one worker process
        os.kill(worker, signal.SIGKILL)
        _wait_until_gone([worker])
        outcomes = []
        for _ in range(3):  # an exporter's retries
            try:
                exporter.send(build_request(8, seed=2).body)
                outcomes.append("ok")
                break
            except grpc.RpcError as exc:
                outcomes.append(exc.code())
        exporter.close()
        assert outcomes[-1] == "ok", outcomes
        assert set(outcomes[:-1]) <= {grpc.StatusCode.UNAVAILABLE}
        cursor = collector.store.cursor()
        assert cursor.execute("SELECT count(*) FROM spans").fetchall() == [(16,)]
        cursor.close()
