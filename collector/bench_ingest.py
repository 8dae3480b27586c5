"""End-to-end ingest benchmark: separate sender processes push pre-built OTLP requests over gRPC
to a real ``govtrace serve`` process; durable spans/s, Export latency and the collector's peak
memory are measured from the outside.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb


def run_ingest_bench(
    *,
    seconds: float = 20.0,
    senders: int = 2,
    concurrency: int = 8,
    spans_per_request: int = 512,
    distinct_requests: int = 16,
    db: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="govtrace-bench-"))
    db_path = Path(db) if db else workdir / "bench.duckdb"
    server = _start_server(db_path)
    try:
        grpc_endpoint = server["grpc"]
        context = mp.get_context("spawn")  # no fork of a process that holds gRPC threads
        queue = context.Queue()
        start_at = time.time() + 2.0 + 0.05 * distinct_requests  # let every sender build its requests first
        procs = [
            context.Process(
                target=_sender,
                args=(grpc_endpoint, n, concurrency, spans_per_request, distinct_requests, start_at, seconds, queue),
            )
            for n in range(senders)
        ]
        for proc in procs:
            proc.start()
        _wait_with_progress(start_at + seconds, progress)
        results = [queue.get(timeout=seconds + 120) for _ in procs]
        for proc in procs:
            proc.join()
        peak_rss_mb = _peak_rss_mb(server["proc"].pid)
    finally:
        _stop_server(server)
    acked = sum(r["spans"] for r in results)
    latencies = sorted(lat for r in results for lat in r["latencies"])
    errors = sum(r["errors"] for r in results)
    con = duckdb.connect(str(db_path), read_only=True)
    stored = con.execute("SELECT count(*) FROM spans").fetchall()[0][0]
    con.close()
    elapsed = max(r["elapsed"] for r in results)
    return {
        "benchmark": "ingest",
        "senders": senders,
        "concurrency_per_sender": concurrency,
        "spans_per_request": spans_per_request,
        "seconds": round(elapsed, 2),
        "acknowledged_spans": acked,
        "stored_spans": stored,
        "durable_spans_per_second": round(acked / elapsed) if elapsed else 0,
        "export_latency_ms_p50": round(_percentile(latencies, 50) * 1000, 1) if latencies else None,
        "export_latency_ms_p99": round(_percentile(latencies, 99) * 1000, 1) if latencies else None,
        "retryable_rejections": errors,
        "collector_peak_rss_mb": peak_rss_mb,
        "cpu_count": os.cpu_count(),
    }


def _sender(endpoint: str, index: int, concurrency: int, spans: int, distinct: int, start_at: float,
            seconds: float, queue: mp.Queue) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from govtrace.collector.loadgen import FreshIds, RawExporter, build_request

    # Every request sent is distinct (fresh trace and span ids), as real traffic is: a few templates
    # are built before the clock starts, and ids are rewritten in place for each send.
    templates = [FreshIds(build_request(spans, seed=index * 1_000_003 + i)) for i in range(distinct)]
    exporter = RawExporter(endpoint, timeout=60)
    latencies: list[float] = []
    counts = {"spans": 0, "errors": 0}
    while time.time() < start_at:
        time.sleep(0.01)
    began = time.perf_counter()
    deadline = began + seconds

    def loop(worker: int) -> None:
        i = worker
        while time.perf_counter() < deadline:
            body = templates[i % len(templates)].fresh().body
            i += 1
            t0 = time.perf_counter()
            try:
                exporter.send(body)
            except grpc.RpcError:
                counts["errors"] += 1
                time.sleep(0.05)
                continue
            latencies.append(time.perf_counter() - t0)
            counts["spans"] += spans

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(loop, range(concurrency)))
    elapsed = time.perf_counter() - began
    exporter.close()
    queue.put({"spans": counts["spans"], "errors": counts["errors"], "latencies": latencies, "elapsed": elapsed})


def _start_server(db: Path) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "govtrace.collector.cli", "serve", "--db", str(db),
         "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    import json

    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"collector did not start: {proc.stderr.read()}")
    ready = json.loads(line)
    return {"proc": proc, "grpc": ready["grpc"], "http": ready["http"]}


def _stop_server(server: dict[str, Any]) -> None:
    proc = server["proc"]
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _percentile(values: list[float], pct: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1] if pct < 100 else values[-1]


def _wait_with_progress(until: float, progress: bool) -> None:
    if not progress:
        time.sleep(max(0.0, until - time.time()))
        return
    from tqdm import tqdm

    total = max(1, int(until - time.time()))
    with tqdm(total=total, desc="ingest bench", unit="s", file=sys.stderr) as bar:
        while time.time() < until:
            time.sleep(1)
            bar.update(1)
