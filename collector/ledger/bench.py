"""Quick throughput measurement of the ledger (not a test): ``python -m govtrace.collector.ledger.bench``.

Measures, for N records of about 1 KB:
1. leaf hashing + root in memory, through ``CompactRange`` in writer-sized batches (ingest path);
2. the same through ``merkle.root_from_leaf_hashes`` over all leaf hashes at once;
3. optionally (``--duckdb``) loading N rows into a temporary DuckDB file and running
   ``verify_store`` over them, which includes DuckDB's ORDER BY seq scan and Arrow streaming.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from . import merkle
from .merkle import CompactRange

BATCH = 32_768


def make_batch(start: int, n: int, size: int = 1000) -> list[bytes]:
    """Distinct ~``size``-byte JSON-ish records (distinct so no hashing shortcut is possible)."""
    pad = os.urandom(size // 2).hex()[: size - 60]
    return [f'{{"seq":{i},"name":"tool.call","attrs":"{pad}"}}'.encode() for i in range(start, start + n)]


def bench_memory(n: int, size: int) -> None:
    batches = [make_batch(s, min(BATCH, n - s), size) for s in range(0, n, BATCH)]
    total_bytes = sum(len(r) for b in batches for r in b)
    t0, c0 = time.perf_counter(), time.process_time()
    frontier = CompactRange()
    for b in batches:
        frontier.extend(merkle.leaf_hashes(b))
    root1 = frontier.root()
    t1, c1 = time.perf_counter(), time.process_time()
    hashes = [h for b in batches for h in merkle.leaf_hashes(b)]
    t2 = time.perf_counter()
    root2 = merkle.root_from_leaf_hashes(hashes)
    t3 = time.perf_counter()
    assert root1 == root2
    print(f"{n} records, {total_bytes / 1e6:.0f} MB")
    print(f"  leaf hash + CompactRange append + root: {t1 - t0:.2f} s wall, {c1 - c0:.2f} s CPU "
          f"({n / (t1 - t0) / 1e3:.0f} k records/s)")
    print(f"  leaf hash only:                         {t2 - t1:.2f} s")
    print(f"  root_from_leaf_hashes over all leaves:  {t3 - t2:.2f} s")


def bench_duckdb(n: int, size: int) -> None:
    import duckdb
    import pyarrow as pa

    from .sealer import Ledger
    from .signing import Signer
    from .verify import verify_store

    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(os.path.join(tmp, "bench.duckdb"))
        con.execute("SET enable_progress_bar = false")
        con.execute("CREATE TABLE spans (seq BIGINT, record VARCHAR)")
        signer = Signer.generate("bench.govtrace.local/log")
        ledger = Ledger(con, signer, "bench.govtrace.local/log", seal_every_events=100_000)
        t_append = 0.0
        t0 = time.perf_counter()
        for s in range(0, n, BATCH):
            recs = make_batch(s, min(BATCH, n - s), size)
            arrow_batch = pa.table({"seq": pa.array(range(s, s + len(recs)), pa.int64()),
                              "record": pa.array([r.decode() for r in recs], pa.string())})
            con.begin()
            con.register("arrow_batch", arrow_batch)
            con.execute("INSERT INTO spans SELECT * FROM arrow_batch")
            con.unregister("arrow_batch")
            ta = time.perf_counter()
            ledger.append(recs, first_seq=s)
            t_append += time.perf_counter() - ta
            con.commit()
            ledger.maybe_seal()
        ledger.seal()
        t1 = time.perf_counter()
        print(f"  DuckDB load of {n} rows with Ledger.append: {t1 - t0:.2f} s (of which append {t_append:.2f} s)")
        rss_before = _max_rss_mb()
        c1 = time.process_time()
        report = verify_store(con, [signer.public_key])
        t2, c2 = time.perf_counter(), time.process_time()
        print(f"  verify_store: {t2 - t1:.2f} s wall, {c2 - c1:.2f} s CPU ({n / (t2 - t1) / 1e3:.0f} k rows/s), "
              f"ok={report.ok}; "
              f"peak RSS {rss_before:.0f} MB before, {_max_rss_mb():.0f} MB after")
        con.close()


def _max_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--duckdb", action="store_true", help="also measure a DuckDB load and verify_store")
    parser.add_argument("--only-duckdb", action="store_true", help="skip the in-memory measurement")
    args = parser.parse_args()
    if not args.only_duckdb:
        bench_memory(args.n, args.size)
    if args.duckdb or args.only_duckdb:
        bench_duckdb(args.n, args.size)


if __name__ == "__main__":
    main()
