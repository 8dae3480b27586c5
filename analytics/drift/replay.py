"""Recorded agent runs (AgentDojo, tau-bench) turned into OTLP spans and sent to a real collector.

One trace per run: an ``invoke_agent`` root, one ``chat`` span per LLM turn and one
``execute_tool`` span per call, with the attributes an instrumented agent would set (tool name,
arguments as JSON, the arguments digest, the target where an argument names one, ``error.type``).
The datasets record only each run's total wall clock, so that duration is spread evenly over the
steps: per-step latencies are synthetic and say nothing. tau-bench records no time at all, so its
spans have zero duration.

Labels (hijacked, task ids, attack) never become attributes: each run's labels go to a side table
keyed by trace id that only the evaluation reads.

The stock SDK exporter delivers a few thousand spans a second, so requests are built here as
``ExportTraceServiceRequest`` protobufs and sent over gRPC in batches.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from govtrace.instrumentation import attributes as A
from govtrace.instrumentation.telemetry import arguments_digest

SCOPE_NAME = "govtrace.analytics.drift.replay"
_SPAN_KIND_INTERNAL = 1
_STATUS_ERROR = 2

# Argument names that say whom or what an action is aimed at. An instrumented agent sets
# govtrace.action.target itself; for recorded runs this list is the replay's choice.
TARGET_KEYS = ("recipient", "recipients", "to", "iban", "email", "user_email", "user", "user_id", "channel",
               "url", "participants", "cc", "bcc")


@dataclass
class AgentRun:
    """One recorded run in the shape the replay needs, with its labels kept apart."""

    key: str  # unique within a replay: the trace id is derived from it
    agent_id: str
    service_name: str
    model: str | None
    calls: list[dict[str, Any]]  # {function, args, error}
    llm_turns: int
    duration_s: float | None  # None: the dataset recorded no time
    error: str | None = None
    start_ns: int = 0
    labels: dict[str, Any] = field(default_factory=dict)

    @property
    def trace_id(self) -> bytes:
        return hashlib.sha256(self.key.encode()).digest()[:16]

    @property
    def span_count(self) -> int:
        return 1 + self.llm_turns + len(self.calls)


# --- reading the datasets ------------------------------------------------------------------------

def read_agentdojo(path: str | Path) -> list[dict[str, Any]]:
    """The recorded AgentDojo runs, one dict per run, in file order."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def read_tau_bench(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def agentdojo_run(record: dict[str, Any], *, agent_id: str, key: str, model: str | None = None) -> AgentRun:
    return AgentRun(
        key=key,
        agent_id=agent_id,
        service_name=f"agentdojo-{record['suite']}",
        model=model if model is not None else record["model"],
        calls=[{"function": c["function"], "args": c["args"], "error": c.get("error")} for c in record["calls"]],
        llm_turns=int(record.get("n_llm_turns") or 0),
        duration_s=record.get("duration_s"),
        error=record.get("error"),
        labels={name: record.get(name) for name in (
            "suite", "config", "model", "defence", "attack", "kind", "user_task_id", "injection_task_id",
            "is_injection", "injection_succeeded", "injection_seen_at", "utility")},
    )


def tau_bench_run(record: dict[str, Any], *, agent_id: str, key: str) -> AgentRun:
    return AgentRun(
        key=key,
        agent_id=agent_id,
        service_name=f"tau-bench-{record['domain']}",
        model=record["model"],
        calls=[{"function": c["function"], "args": c["args"], "error": c.get("error")} for c in record["calls"]],
        llm_turns=int(record.get("n_llm_turns") or 0),
        duration_s=None,
        labels={"suite": record["domain"], "model": record["model"], "kind": "user_task",
                "user_task_id": str(record["task_id"]), "trial": record["trial"], "reward": record["reward"]},
    )


def schedule(runs: Iterable[AgentRun], start_ns: int, gap_s: float = 1.0) -> int:
    """Give runs consecutive start times (each after the previous ends); return the end time."""
    moment = start_ns
    for run in runs:
        run.start_ns = moment
        moment += int(((run.duration_s or 0.0) + gap_s) * 1e9)
    return moment


# --- runs to OTLP --------------------------------------------------------------------------------

def target_of(args: Any) -> str | None:
    """The argument value an action is aimed at, if one of its arguments names a target."""
    if not isinstance(args, dict):
        return None
    for name in TARGET_KEYS:
        value = args.get(name)
        if value in (None, "", []):
            continue
        if isinstance(value, list):
            return ",".join(sorted(str(v) for v in value))
        return str(value)
    return None


def build_requests(runs: Iterable[AgentRun], max_spans: int = 4096) -> Iterator[tuple[ExportTraceServiceRequest, int]]:
    """Export requests of at most about ``max_spans`` spans (a run is never split), with span counts."""
    request, scopes, count = ExportTraceServiceRequest(), {}, 0
    for run in runs:
        if count and count + run.span_count > max_spans:
            yield request, count
            request, scopes, count = ExportTraceServiceRequest(), {}, 0
        resource_key = (run.service_name, run.agent_id)
        scope = scopes.get(resource_key)
        if scope is None:
            resource_spans = request.resource_spans.add()
            _set_attributes(resource_spans.resource.attributes,
                            {A.SERVICE_NAME: run.service_name, A.GEN_AI_AGENT_ID: run.agent_id})
            scope = resource_spans.scope_spans.add()
            scope.scope.name = SCOPE_NAME
            scopes[resource_key] = scope
        _add_run(scope.spans, run)
        count += run.span_count
    if count:
        yield request, count


def _add_run(spans: Any, run: AgentRun) -> None:
    trace_id = run.trace_id
    steps = run.llm_turns + len(run.calls)
    total_ns = int((run.duration_s or 0.0) * 1e9)
    step_ns = total_ns // steps if steps else 0
    root_id = _span_id(trace_id, 0)
    root = spans.add()
    _fill(root, trace_id, root_id, None, f"invoke_agent {run.agent_id}", run.start_ns, run.start_ns + total_ns)
    root_attrs = {A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_AGENT, A.GEN_AI_AGENT_NAME: run.agent_id}
    if run.model:
        root_attrs[A.GEN_AI_REQUEST_MODEL] = run.model
    if run.error:
        root_attrs[A.ERROR_TYPE] = _error_type(run.error)
        root.status.code = _STATUS_ERROR
        root.status.message = str(run.error)[:200]
    _set_attributes(root.attributes, root_attrs)
    for index, (kind, payload) in enumerate(_steps(run)):
        start = run.start_ns + index * step_ns
        span = spans.add()
        span_id = _span_id(trace_id, index + 1)
        if kind == "chat":
            _fill(span, trace_id, span_id, root_id, f"chat {run.model or ''}".strip(), start, start + step_ns)
            attrs = {A.GEN_AI_OPERATION_NAME: A.OP_CHAT}
            if run.model:
                attrs[A.GEN_AI_REQUEST_MODEL] = run.model
            _set_attributes(span.attributes, attrs)
            continue
        call, position = payload
        tool = call["function"] or "<unnamed>"
        _fill(span, trace_id, span_id, root_id, f"execute_tool {tool}", start, start + step_ns)
        args = call["args"] if call["args"] is not None else {}
        attrs = {
            A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL,
            A.GEN_AI_TOOL_NAME: tool,
            A.GEN_AI_TOOL_CALL_ID: f"call_{position}",
            A.GEN_AI_TOOL_CALL_ARGUMENTS: json.dumps(args, sort_keys=True, ensure_ascii=False, default=str),
            A.ACTION_ARGUMENTS_DIGEST: arguments_digest(args),
        }
        target = target_of(args)
        if target:
            attrs[A.ACTION_TARGET] = target
        if call.get("error"):
            attrs[A.ERROR_TYPE] = _error_type(call["error"])
            span.status.code = _STATUS_ERROR
            span.status.message = str(call["error"])[:200]
        _set_attributes(span.attributes, attrs)


def _steps(run: AgentRun) -> list[tuple[str, Any]]:
    """LLM turns with the tool calls spread between them: the datasets do not say which turn
    issued which call, so calls are dealt evenly into the gaps after each turn but the last."""
    turns = run.llm_turns
    calls = list(enumerate(run.calls))
    if turns <= 1:
        return [("chat", None)] * turns + [("tool", (c, i)) for i, c in calls]
    gaps = turns - 1
    out: list[tuple[str, Any]] = []
    for turn in range(turns):
        out.append(("chat", None))
        if turn < gaps:
            out.extend(("tool", (c, i)) for i, c in calls[turn * len(calls) // gaps:(turn + 1) * len(calls) // gaps])
    return out


def _fill(span: Any, trace_id: bytes, span_id: bytes, parent: bytes | None, name: str, start: int, end: int) -> None:
    span.trace_id = trace_id
    span.span_id = span_id
    if parent:
        span.parent_span_id = parent
    span.name = name
    span.kind = _SPAN_KIND_INTERNAL
    span.start_time_unix_nano = start
    span.end_time_unix_nano = end


def _set_attributes(target: Any, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        kv = target.add()
        kv.key = key
        if isinstance(value, bool):
            kv.value.bool_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        elif isinstance(value, float):
            kv.value.double_value = value
        else:
            kv.value.string_value = str(value)


def _span_id(trace_id: bytes, index: int) -> bytes:
    raw = hashlib.blake2b(trace_id + index.to_bytes(4, "big"), digest_size=8).digest()
    return raw if any(raw) else b"\x00" * 7 + b"\x01"


def _error_type(error: str) -> str:
    # "ValueError: Channel does not exist!" -> "ValueError": the type, not the message.
    head = str(error).split(":", 1)[0].strip()
    return head if head and " " not in head and len(head) <= 64 else "tool_error"


# --- sending -------------------------------------------------------------------------------------

def send(endpoint: str, runs: list[AgentRun], *, max_spans: int = 4096, timeout: float = 60.0,
         progress: Callable[[int], None] | None = None) -> int:
    """Send runs to a collector's gRPC endpoint, waiting for each durable acknowledgement and
    retrying when it answers UNAVAILABLE (overloaded). Returns the number of spans stored."""
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    channel = grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=lambda message: message.SerializeToString(),
        response_deserializer=ExportTraceServiceResponse.FromString,
    )
    stored = 0
    try:
        for request, count in build_requests(runs, max_spans):
            for attempt in range(20):
                try:
                    reply = export(request, timeout=timeout)
                    break
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == 19:
                        raise
                    time.sleep(min(2.0, 0.05 * 2 ** attempt))  # back-off before a retry, not synchronisation
            rejected = reply.partial_success.rejected_spans
            if rejected:
                raise RuntimeError(f"collector rejected {rejected} spans: {reply.partial_success.error_message}")
            stored += count
            if progress:
                progress(count)
    finally:
        channel.close()
    return stored


def label_rows(runs: Iterable[AgentRun]) -> list[dict[str, Any]]:
    """The side table: one row of labels per run, keyed by the hex trace id."""
    return [{"trace_id": run.trace_id.hex(), "agent_id": run.agent_id, **run.labels} for run in runs]
