"""Overhead of the enforcement point on the hot path: one tier-1 tool call, span included.

``bench_policy_overhead(n)`` times ``AgentTelemetry.tool_call`` + ``PolicyEnforcementPoint.run`` (scope,
delegation, rate-limit, envelope and tier evaluation against a 7-rule policy, the decision recorded on
the span with ``record_policy``, a no-op tool) with a span processor that drops finished spans, so
export is excluded. It also times the same call when the request carries a cost estimate (recorded
on the span and accounted against three envelopes) and the bare span, so the policy's share shows.

    python -m govtrace.instrumentation.policy bench 20000
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

from govtrace.instrumentation.enforcement import ToolRequest
from govtrace.instrumentation.policy.loader import load_policy_text
from govtrace.instrumentation.policy.pep import PolicyEnforcementPoint
from govtrace.instrumentation.telemetry import AgentTelemetry

BENCH_POLICY = """
id: bench
oversight:
  approval: {timeout_seconds: 60}
rules:
  - {id: amount-over-100, tier: 2, when: {amount: {gt: 100}}}
  - {id: amount-over-5000, tier: 3, when: {amount: {gt: 5000}}}
  - {id: pii, tier: 3, when: {classification: [pii, restricted]}}
  - {id: irreversible, tier: 3, when: {reversible: false}}
  - {id: bulk, tier: 2, when: {record_count: {gte: 1000}}}
  - {id: mass, tier: 3, when: {record_count: {gte: 10000}}}
  - {id: sox, tier: 3, when: {regulatory_scope: [sox]}}
agents:
  bench-agent:
    scopes:
      tools: [catalog.search, vendor.*, purchase_order.*]
      resources: ["erp://catalog/*", "erp://vendors/*"]
      operations: [read, write]
    rate_limits:
      - {calls: 100000000, per_seconds: 60}
    envelope: {per_task: 1000000000, per_hour: 1000000000, per_day: 1000000000}
"""


class _DropProcessor(SpanProcessor):
    """Finished spans go nowhere: the SDK builds them, nothing exports them."""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_policy_overhead(n: int = 20_000, *, warmup: int = 2_000) -> dict[str, Any]:
    """Median µs per tool call of span + policy evaluation + decision recording (export excluded).

    Returns ``median_us`` (span + policy), ``p90_us``, ``p99_us``, ``span_only_median_us`` (the same span
    without the enforcement point), ``policy_median_us`` (the difference of the medians) and
    ``with_cost_median_us`` (span + policy when the call also records and accounts a cost estimate).
    """
    telemetry = AgentTelemetry("bench-agent", processor=_DropProcessor())
    pep = PolicyEnforcementPoint(load_policy_text(BENCH_POLICY), agent_id="bench-agent")
    arguments = {"query": "laptops", "limit": 10}
    request = ToolRequest(agent_id="bench-agent", tool="catalog.search", arguments=arguments,
                          resource="erp://catalog/laptops", operation="read", classification="internal",
                          record_count=10, amount=None, reversible=True, task_id="bench-task")
    costed = dataclasses.replace(request, estimated_cost=0.0001)

    def tool() -> int:
        return 1

    def with_policy() -> None:
        with telemetry.tool_call("catalog.search", arguments=arguments) as call:
            pep.run(call, request, tool)

    def with_policy_and_cost() -> None:
        with telemetry.tool_call("catalog.search", arguments=arguments) as call:
            pep.run(call, costed, tool)

    def span_only() -> None:
        with telemetry.tool_call("catalog.search", arguments=arguments):
            tool()

    def timed(fn, count: int) -> list[float]:
        out = []
        clock = time.perf_counter_ns
        for _ in range(count):
            t0 = clock()
            fn()
            out.append((clock() - t0) / 1000.0)
        return out

    gc_was_enabled = gc.isenabled()
    try:
        timed(with_policy, warmup)
        timed(with_policy_and_cost, warmup)
        timed(span_only, warmup)
        gc.disable()
        # Interleave in blocks so drift (frequency scaling, neighbours) hits both alike.
        policy_times: list[float] = []
        cost_times: list[float] = []
        span_times: list[float] = []
        block = max(1, min(1000, n // 10))
        done = 0
        while done < n:
            k = min(block, n - done)
            policy_times += timed(with_policy, k)
            cost_times += timed(with_policy_and_cost, k)
            span_times += timed(span_only, k)
            done += k
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
        telemetry.shutdown()
    median = statistics.median(policy_times)
    span_median = statistics.median(span_times)
    return {
        "n": n,
        "median_us": round(median, 2),
        "p90_us": round(_percentile(policy_times, 0.90), 2),
        "p99_us": round(_percentile(policy_times, 0.99), 2),
        "span_only_median_us": round(span_median, 2),
        "policy_median_us": round(median - span_median, 2),
        "with_cost_median_us": round(statistics.median(cost_times), 2),
        "target_median_us": 50.0,
        "within_target": median <= 50.0,
    }
