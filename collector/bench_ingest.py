"""End-to-end ingest benchmarks: separate sender processes push pre-built OTLP requests over gRPC
to a real ``govtrace serve`` process; durable spans/s, Export latency, the collector's CPU time and
its peak memory are measured from the outside.

Modes: ``plain`` runs the collector with its defaults, ``bare`` with redaction off, ``hardened``
with bearer-token authentication and every redaction detector on, so the cost of hardening is
one subtraction. ``run_overload_bench`` sends far more than the collector can take, with large
requests and many in flight, and reports how its memory and refusals behave.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import duckdb

BENCH_TOKEN = "gt_bench-sender-token"  # generated per run would add nothing: the collector is local
BENCH_READER = "gt_bench-reader-token"
MODES = {
    "plain": {},
    "bare": {"GOVTRACE_REDACT": "none"},
    "hardened": {"GOVTRACE_REDACT": "api_key,bearer_token,card_number,email"},
}


def run_ingest_bench(
    *,
    seconds: float = 20.0,
    senders: int = 2,
    concurrency: int = 8,
    spans_per_request: int = 512,
    distinct_requests: int = 16,
    db: str | None = None,
    progress: bool = True,
    mode: str = "plain",
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="govtrace-bench-"))
    db_path = Path(db) if db else workdir / "bench.duckdb"
    env = {**MODES[mode], **(extra_env or {})}
    metadata: tuple[tuple[str, str], ...] = ()
    if mode == "hardened":
        env["GOVTRACE_AUTH_TOKENS_FILE"] = str(_tokens_file(workdir))
        metadata = (("authorization", f"Bearer {BENCH_TOKEN}"),)
    server = _start_server(db_path, env)
    sampler = _MemorySampler(server["proc"].pid)
    try:
        results = _drive(server["grpc"], senders, concurrency, spans_per_request, distinct_requests, seconds,
                         progress, metadata, sampler)
        peak_rss_mb = round(_tree_peak_hwm(server["proc"].pid) / 2**20, 1)
        cpu_seconds = _tree_cpu_seconds(server["proc"].pid)
        status = _status(server["http"])
    finally:
        sampler.stop()
        _stop_server(server)
    acked = sum(r["spans"] for r in results)
    latencies = sorted(lat for r in results for lat in r["latencies"])
    elapsed = max(r["elapsed"] for r in results)
    return {
        "benchmark": "ingest",
        "mode": mode,
        "senders": senders,
        "concurrency_per_sender": concurrency,
        "spans_per_request": spans_per_request,
        "seconds": round(elapsed, 2),
        "acknowledged_spans": acked,
        "stored_spans": _stored(db_path),
        "durable_spans_per_second": round(acked / elapsed) if elapsed else 0,
        "export_latency_ms_p50": round(_percentile(latencies, 50) * 1000, 1) if latencies else None,
        "export_latency_ms_p99": round(_percentile(latencies, 99) * 1000, 1) if latencies else None,
        "retryable_rejections": sum(r["errors"] for r in results),
        "collector_peak_rss_mb": peak_rss_mb,
        "collector_tree_peak_rss_mb": round(sampler.peak / 2**20, 1),
        "collector_cpu_seconds": round(cpu_seconds, 1),
        "spans_per_collector_cpu_second": round(acked / cpu_seconds) if cpu_seconds else None,
        "writer_seconds": round(status.get("store_write_seconds", 0.0), 1),
        "dedupe_seconds": round(status.get("store_dedupe_seconds", 0.0), 1),
        "commits": status.get("store_commits", 0),
        "mean_commit_spans": round(status.get("store_spans_stored", 0) / max(1, status.get("store_commits", 0))),
        "journal_syncs": status.get("journal_syncs", 0),
        "acks_held_back": status.get("store_acks_held_back", 0),
        # Spans normalized by the columnar path (collector/columnar.py) rather than the Python one.
        "columnar_share": round(status.get("ingest_spans_columnar", 0) / max(1, status.get("ingest_spans_accepted", 0)), 3),
        "cpu_count": os.cpu_count(),
    }


def run_overload_bench(
    *,
    seconds: float = 20.0,
    senders: int = 2,
    concurrency: int = 64,
    spans_per_request: int = 4096,
    memory_limit_bytes: int = 1024**3,
    db: str | None = None,
    progress: bool = True,
    kill_at_end: bool = False,
) -> dict[str, Any]:
    """More in flight than the memory budget admits: refusals, retries and the peak memory.

    ``kill_at_end`` ends the collector with SIGKILL instead of a drained shutdown (faster, and
    what it acknowledged must be in the file all the same)."""
    workdir = Path(tempfile.mkdtemp(prefix="govtrace-overload-"))
    db_path = Path(db) if db else workdir / "overload.duckdb"
    server = _start_server(db_path, {"GOVTRACE_MEMORY_LIMIT_BYTES": str(memory_limit_bytes)})
    sampler = _MemorySampler(server["proc"].pid)
    try:
        results = _drive(server["grpc"], senders, concurrency, spans_per_request, 2, seconds, progress, (), sampler,
                         grace=2.0)
        hwm = _tree_peak_hwm(server["proc"].pid)
        by_process = {_role(pid): round(_proc_field(pid, "VmHWM") / 2**20, 1) for pid in _tree(server["proc"].pid)}
        status = _status(server["http"])
    finally:
        sampler.stop()
        _stop_server(server, kill=kill_at_end)
    acked = sum(r["spans"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    return {
        "benchmark": "overload",
        "memory_limit_bytes": memory_limit_bytes,
        "request_budget_bytes": status.get("memory_budget_bytes"),
        "request_budget_peak_bytes": status.get("memory_budget_peak_bytes"),
        "rss_ceiling_bytes": status.get("memory_rss_ceiling_bytes"),
        "rss_refusals": status.get("memory_rss_refusals"),
        "senders": senders,
        "in_flight_offered": senders * concurrency,
        "spans_per_request": spans_per_request,
        "seconds": round(elapsed, 2),
        "acknowledged_spans": acked,
        "durable_spans_per_second": round(acked / elapsed) if elapsed else 0,
        "retryable_rejections": sum(r["errors"] for r in results),
        "collector_peak_rss_bytes": hwm,  # sum of each process's own peak: an upper bound
        "collector_tree_peak_rss_bytes": sampler.peak,  # peak of the sum, sampled every 50 ms
        "collector_peak_rss_mb": round(hwm / 2**20, 1),
        "peak_rss_mb_by_process": by_process,
    }


# --- senders ----------------------------------------------------------------------------------

def _drive(endpoint: str, senders: int, concurrency: int, spans: int, distinct: int, seconds: float,
           progress: bool, metadata: tuple[tuple[str, str], ...], sampler: _MemorySampler,
           grace: float = 60.0) -> list[dict[str, Any]]:
    context = mp.get_context("spawn")  # no fork of a process that holds gRPC threads
    queue = context.Queue()
    start_at = time.time() + 2.0 + 0.05 * distinct * max(1, spans // 512)  # senders build requests first
    procs = [
        context.Process(target=_sender,
                        args=(endpoint, n, concurrency, spans, distinct, start_at, seconds, queue, metadata, grace))
        for n in range(senders)
    ]
    for proc in procs:
        proc.start()
    sampler.start()
    _wait_with_progress(start_at + seconds, progress)
    results = [queue.get(timeout=seconds + 180) for _ in procs]
    for proc in procs:
        proc.join()
    return results


def _sender(endpoint: str, index: int, concurrency: int, spans: int, distinct: int, start_at: float,
            seconds: float, queue: mp.Queue, metadata: tuple[tuple[str, str], ...] = (),
            grace: float = 60.0) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from govtrace.collector.loadgen import FreshIds, RawExporter, build_request

    # Every request sent is distinct (fresh trace and span ids), as real traffic is: a few templates
    # are built before the clock starts, and ids are rewritten in place for each send. A refused
    # request is sent again, as an SDK exporter would, after the pause the collector asked for.
    templates = [FreshIds(build_request(spans, seed=index * 1_000_003 + i)) for i in range(distinct)]
    exporter = RawExporter(endpoint, timeout=60)
    latencies: list[float] = []
    counts = {"spans": 0, "errors": 0}
    lock = threading.Lock()
    while time.time() < start_at:
        time.sleep(0.01)
    began = time.perf_counter()
    deadline = began + seconds

    def loop(worker: int) -> None:
        i = worker
        body = None
        while time.perf_counter() < deadline:
            if body is None:
                body = templates[i % len(templates)].fresh().body
                i += 1
            t0 = time.perf_counter()
            try:
                # Requests still in flight ``grace`` seconds after the end are given up, not counted.
                exporter.timeout = max(0.5, deadline + grace - t0)
                exporter.send(body, metadata)
            except grpc.RpcError as exc:
                with lock:
                    counts["errors"] += 1
                trailers = dict(exc.trailing_metadata() or ())
                time.sleep(min(float(trailers.get("retry-after", 0.05)), max(0.0, deadline - time.perf_counter())))
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
                counts["spans"] += spans
            body = None

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(loop, range(concurrency)))
    elapsed = time.perf_counter() - began
    exporter.close()
    queue.put({"spans": counts["spans"], "errors": counts["errors"], "latencies": latencies, "elapsed": elapsed})


# --- the collector process ------------------------------------------------------------------------

def _tokens_file(folder: Path) -> Path:
    from govtrace.collector.auth import token_hash

    path = folder / "tokens.yaml"
    path.write_text(f"agents:\n  - principal: bench\n    agent_ids: ['*']\n    token_sha256: {token_hash(BENCH_TOKEN)}\n"
                    f"readers:\n  - user: bench\n    role: viewer\n    token_sha256: {token_hash(BENCH_READER)}\n")
    return path


def _start_server(db: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    # The collector's log goes to a file beside the database: a pipe nobody reads would fill up and
    # stall the collector mid-benchmark.
    log = open(str(db) + ".log", "w")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "govtrace.collector.cli", "serve", "--db", str(db),
         "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--json"],
        stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, **(env or {})},
    )
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise RuntimeError(f"collector did not start: {Path(str(db) + '.log').read_text()[-2000:]}")
    ready = json.loads(line)
    return {"proc": proc, "grpc": ready["grpc"], "http": ready["http"]}


def _stop_server(server: dict[str, Any], kill: bool = False) -> None:
    proc = server["proc"]
    if kill:
        children = _tree(proc.pid)[1:]
        proc.kill()
        proc.wait()
        for child in children:  # decode workers would notice on their own; do not wait for them
            try:
                os.kill(child, 9)
            except OSError:
                pass
        return
    proc.terminate()
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _status(http_url: str) -> dict[str, Any]:
    import urllib.request

    request = urllib.request.Request(http_url + "/api/v1/status", headers={"Authorization": f"Bearer {BENCH_READER}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except OSError:
        return {}


def _stored(db_path: Path) -> int:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM spans").fetchall()[0][0]
    finally:
        con.close()


def _tree(pid: int) -> list[int]:
    from govtrace.collector.admission import child_pids

    return [pid, *child_pids(pid)]


def _proc_field(pid: int, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _role(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return str(pid)
    kind = "decode worker" if "spawn_main" in command else "resource tracker" if "resource_tracker" in command \
        else "collector"
    return f"{kind} {pid}"


def _tree_peak_hwm(pid: int) -> int:
    """Sum of each process's own peak resident size (VmHWM): an upper bound of the tree's peak."""
    return sum(_proc_field(member, "VmHWM") for member in _tree(pid))


def _tree_cpu_seconds(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return total / ticks


class _MemorySampler:
    """Peak of the summed resident size of the collector's processes, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, sum(_proc_field(member, "VmRSS") for member in _tree(self.pid)))


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
