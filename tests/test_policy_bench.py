"""The overhead benchmark runs and reports its figures (the ≤ 50 µs target is measured, not asserted)."""

from __future__ import annotations

from govtrace.instrumentation.policy.bench import bench_policy_overhead


def test_the_benchmark_reports_median_percentiles_and_the_policy_share():
    result = bench_policy_overhead(200, warmup=50)
    assert result["n"] == 200
    assert 0 < result["span_only_median_us"] < result["median_us"] <= result["p99_us"]
    assert abs(result["policy_median_us"] - (result["median_us"] - result["span_only_median_us"])) <= 0.02
    assert result["target_median_us"] == 50.0
