"""A collector killed with SIGKILL right after acknowledging keeps every acknowledged span."""

from __future__ import annotations

import threading

import duckdb
import grpc
from govtrace.collector.loadgen import RawExporter, build_request


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
    server.kill()  # SIGKILL while requests are in flight
    killed.set()
    for sender in senders:
        sender.join(30)
    exporter.close()
    with lock:
        expected = set(acknowledged)

    # The file opens cleanly after the crash (WAL replay) and holds every acknowledged span.
    con = duckdb.connect(str(db), read_only=True)
    stored = {row[0] for row in con.execute("SELECT span_id FROM spans").fetchall()}
    seqs = [row[0] for row in con.execute("SELECT seq FROM spans ORDER BY seq").fetchall()]
    con.close()
    assert expected - stored == set(), f"{len(expected - stored)} acknowledged spans were lost"
    assert seqs == list(range(len(seqs))), "sequence numbers have gaps or duplicates after the crash"

    # A restarted collector serves again on the same file.
    restarted = serve_process(db)
    again = RawExporter(restarted.grpc_endpoint)
    built = build_request(8, seed=424242)
    again.send(built.body)
    again.close()
    restarted.stop()
    con = duckdb.connect(str(db), read_only=True)
    count = con.execute(
        f"SELECT count(*) FROM spans WHERE span_id IN ({','.join('?' * len(built.span_ids))})", list(built.span_ids)
    ).fetchone()[0]
    con.close()
    assert count == len(built.span_ids)
