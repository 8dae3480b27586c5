"""Flatten an OTLP ExportTraceServiceRequest into span rows for the store.

For each span: the canonical ``record`` (lossless JSON of span, resource, scope and ingest facts)
and the typed governance columns derived from it. The derivation understands our ``govtrace.*``
keys, the OTel GenAI conventions, OpenLLMetry (``traceloop.*``), OpenInference and the MCP SDK's
own spans, with that precedence.

``derive_columns`` works from the record alone, so ``verify-store`` can re-derive every column.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from govtrace.collector.auth import Identity
from govtrace.collector.decode import SPAN_KINDS, STATUS_CODES, any_value, hex_id, key_values
from govtrace.collector.errors import BadRequest
from govtrace.collector.redaction import Redactor
from govtrace.collector.schema import SPAN_ARROW_SCHEMA, SPAN_COLUMNS
from govtrace.instrumentation import attributes as A

_MIN_TIME_NS = 946_684_800 * 10**9  # 2000-01-01: anything earlier is a clock or encoding bug
_MAX_FUTURE_NS = 24 * 3600 * 10**9  # more than a day ahead of the collector's clock
# Rows become Arrow columns this many at a time: a large request's Python objects (several KB per
# span) never pile up, only its compact columns do.
CHUNK_ROWS = 1024


@dataclass
class Batch:
    """Normalized rows of one request, plus what was rejected and why."""

    table: pa.Table | None = None  # None only while the request is being normalized or handed over
    ipc: pa.Buffer | None = None  # the table as an Arrow IPC stream, when it arrived as one (handoff)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    mismatched: int = 0  # spans claiming an agent their credential does not own (flagged or rejected)
    redacted: int = 0  # spans with at least one redaction
    columnar: int = 0  # rows normalized by the columnar path (``columnar.py``), the rest by Python
    leaf_hashes: bytes = b""  # the ledger's leaf hash of each row's record, 32 bytes each (decode workers)

    @property
    def accepted(self) -> int:
        return self.table.num_rows


@dataclass(frozen=True)
class IngestPolicy:
    """What the collector does to spans beyond validation: identity checks and redaction."""

    identity_mismatch: str = "flag"  # flag | reject
    redactor: Redactor | None = None
    columnar: bool = False  # protobuf requests may take the columnar path (``columnar.py``)


_NO_POLICY = IngestPolicy()


def normalize_request(request: Any, *, identity: Identity | None = None, policy: IngestPolicy | None = None,
                      received_ns: int | None = None) -> Batch:
    """Rows for the store from one OTLP request.

    With an authenticated ``identity``, its principal is stamped into every record's ``ingest``
    section (covered by the ledger hash) and each span's claimed agent id is checked against the
    agents that identity may speak for.
    """
    return normalize_spans(request, identity=identity, policy=policy, received_ns=received_ns)[0]


def normalize_spans(request: Any, *, identity: Identity | None = None, policy: IngestPolicy | None = None,
                    received_ns: int | None = None, only: set[int] | None = None) -> tuple[Batch, list[int]]:
    """``normalize_request`` restricted to the spans numbered in ``only`` (their positions in the
    request, counted across all resources and scopes; None: all), and the position of each row.

    The columnar path (``columnar.py``) hands the spans it does not handle itself to this one.
    """
    received_ns = received_ns or time.time_ns()
    policy = policy or _NO_POLICY
    redactor = policy.redactor
    rows: list[dict[str, Any]] = []
    positions: list[int] = []
    position = -1
    tables: list[pa.Table] = []
    batch = Batch()
    for resource_spans in request.resource_spans:
        try:
            resource = key_values(resource_spans.resource.attributes)
        except BadRequest as exc:
            _reject(batch, f"resource attributes: {exc}", sum(len(s.spans) for s in resource_spans.scope_spans))
            position += sum(len(s.spans) for s in resource_spans.scope_spans)
            continue
        resource_claim = _claimed_agent(resource)
        resource_redactions: list[dict[str, Any]] = []
        if redactor is not None:
            redactor.redact_attributes(resource, "/resource", resource_redactions)
        from_resource = resource_columns(resource)
        for scope_spans in resource_spans.scope_spans:
            try:
                scope = {
                    "name": scope_spans.scope.name,
                    "version": scope_spans.scope.version,
                    "attributes": key_values(scope_spans.scope.attributes),
                }
            except BadRequest as exc:
                _reject(batch, f"scope attributes: {exc}", len(scope_spans.spans))
                position += len(scope_spans.spans)
                continue
            scope_redactions: list[dict[str, Any]] = []
            if redactor is not None:
                redactor.redact_attributes(scope["attributes"], "/scope/attributes", scope_redactions)
            for span in scope_spans.spans:
                position += 1
                if only is not None and position not in only:
                    continue
                problem = _invalid(span, received_ns)
                if problem:
                    _reject(batch, problem)
                    continue
                try:
                    row = _row(span, resource, scope, from_resource, resource_claim,
                               [*resource_redactions, *scope_redactions], identity, policy, received_ns, batch)
                except (BadRequest, TypeError, ValueError) as exc:  # one bad span never sinks the batch
                    _reject(batch, f"span {span.span_id.hex()}: {exc}")
                    continue
                if row is not None:
                    rows.append(row)
                    positions.append(position)
                    if len(rows) == CHUNK_ROWS:
                        tables.append(rows_to_table(rows))
                        rows = []
    tables.append(rows_to_table(rows))
    batch.table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    return batch, positions


def _row(span: Any, resource: dict[str, Any], scope: dict[str, Any], from_resource: dict[str, Any],
         resource_claim: str | None, redactions: list[dict[str, Any]], identity: Identity | None,
         policy: IngestPolicy, received_ns: int, batch: Batch) -> dict[str, Any] | None:
    """The stored row of one valid span, or None when the ingest policy rejects it."""
    record = _record(span, resource, scope, identity.principal if identity else None, received_ns)
    if identity is not None:
        claim = _claimed_agent(record["attributes"]) or resource_claim
        mismatch = claim is not None and not identity.may_speak_for(claim)
        if mismatch:
            batch.mismatched += 1
            if policy.identity_mismatch == "reject":
                _reject(batch, f"span {record['span_id']}: principal {identity.principal!r} "
                               f"may not speak for agent {claim!r}")
                return None
        record["ingest"]["identity_mismatch"] = mismatch
    if policy.redactor is not None:
        _redact_span(policy.redactor, record, redactions)
        if redactions:
            record["ingest"]["redactions"] = redactions
            batch.redacted += 1
    row = derive_columns(record, from_resource)
    row["record"] = canonical_json(record)
    return row


def _reject(batch: Batch, problem: str, count: int = 1) -> None:
    if count <= 0:
        return
    batch.rejected += count
    if len(batch.reasons) < 5:
        batch.reasons.append(problem)


def _claimed_agent(attributes: dict[str, Any]) -> str | None:
    """The agent id a span or resource claims, as ``derive_columns`` reads it (before redaction)."""
    value = attributes.get(A.GEN_AI_AGENT_ID)
    return None if value is None or value == "" else _text(value)


def _redact_span(redactor: Redactor, record: dict[str, Any], found: list[dict[str, Any]]) -> None:
    redactor.redact_attributes(record["attributes"], "/attributes", found)
    for i, event in enumerate(record["events"]):
        redactor.redact_attributes(event["attributes"], f"/events/{i}/attributes", found)
    for i, link in enumerate(record["links"]):
        redactor.redact_attributes(link["attributes"], f"/links/{i}/attributes", found)
    message = record["status"]["message"]
    if message:
        record["status"]["message"] = redactor.redact_text(message, "/status/message", found)


def canonical_json(value: Any) -> str:
    """Deterministic compact JSON: sorted keys, no spaces, UTF-8 text.

    The ledger hashes the stored text itself, so determinism is a convenience for humans and
    tests, not a requirement of verification.
    """
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    columns = {
        name: pa.array([row.get(name) for row in rows], type=arrow_type)
        for name, _, arrow_type in SPAN_COLUMNS
        if name != "seq"
    }
    columns["seq"] = pa.nulls(len(rows), type=pa.int64())
    return pa.table({name: columns[name] for name in SPAN_ARROW_SCHEMA.names}, schema=SPAN_ARROW_SCHEMA)


def _invalid(span: Any, received_ns: int) -> str | None:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return f"span {span.span_id.hex() or '?'}: trace_id must be 16 non-zero bytes"
    if len(span.span_id) != 8 or not any(span.span_id):
        return f"span in trace {span.trace_id.hex()}: span_id must be 8 non-zero bytes"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return f"span {span.span_id.hex()}: parent_span_id must be 8 bytes"
    if span.start_time_unix_nano < _MIN_TIME_NS:
        return f"span {span.span_id.hex()}: start time before 2000-01-01"
    if span.start_time_unix_nano > received_ns + _MAX_FUTURE_NS:
        return f"span {span.span_id.hex()}: start time more than a day in the future"
    if span.end_time_unix_nano and span.end_time_unix_nano < span.start_time_unix_nano:
        return f"span {span.span_id.hex()}: ends before it starts"
    if span.end_time_unix_nano > received_ns + _MAX_FUTURE_NS:
        return f"span {span.span_id.hex()}: end time more than a day in the future"
    return None


def _record(span: Any, resource: dict, scope: dict, principal: str | None, received_ns: int) -> dict[str, Any]:
    return {
        "trace_id": hex_id(span.trace_id),
        "span_id": hex_id(span.span_id),
        "parent_span_id": hex_id(span.parent_span_id) if span.parent_span_id else None,
        "trace_state": span.trace_state or None,
        "flags": span.flags,
        "name": span.name,
        "kind": SPAN_KINDS[span.kind] if 0 <= span.kind < len(SPAN_KINDS) else str(span.kind),
        "start_ns": span.start_time_unix_nano,
        "end_ns": span.end_time_unix_nano,
        "attributes": key_values(span.attributes),
        "events": [
            {"name": e.name, "time_ns": e.time_unix_nano, "attributes": key_values(e.attributes)}
            for e in span.events
        ],
        "links": [
            {
                "trace_id": hex_id(link.trace_id),
                "span_id": hex_id(link.span_id),
                "attributes": key_values(link.attributes),
            }
            for link in span.links
        ],
        "status": {
            "code": STATUS_CODES[span.status.code] if 0 <= span.status.code < 3 else str(span.status.code),
            "message": span.status.message,
        },
        "dropped": {
            "attributes": span.dropped_attributes_count,
            "events": span.dropped_events_count,
            "links": span.dropped_links_count,
        },
        "resource": resource,
        "scope": scope,
        "ingest": {"principal": principal, "received_ns": received_ns},
    }


# --- derivation of typed columns from a record --------------------------------------------------

_OI_KINDS = {"TOOL": "execute_tool", "AGENT": "invoke_agent", "LLM": "chat", "RETRIEVER": "retrieval",
             "EMBEDDING": "embeddings", "CHAIN": "chain", "GUARDRAIL": "guardrail"}
_TRACELOOP_KINDS = {"tool": "execute_tool", "agent": "invoke_agent", "workflow": "invoke_workflow", "task": "task"}
_TL = "traceloop.association.properties."

# Span attribute keys feeding each typed column, in precedence order: our keys and the GenAI
# conventions first, then OpenLLMetry, then OpenInference.
SPAN_KEYS: dict[str, tuple[str, ...]] = {
    "error_type": (A.ERROR_TYPE,),
    "agent_id": (A.GEN_AI_AGENT_ID,),
    "agent_name": (A.GEN_AI_AGENT_NAME, "agent.name", _TL + "lc_agent_name"),
    "agent_owner": (A.AGENT_OWNER,),
    "agent_credential": (A.AGENT_CREDENTIAL,),
    "operation": (A.GEN_AI_OPERATION_NAME,),
    "tool_name": (A.GEN_AI_TOOL_NAME, "tool.name"),
    "tool_call_id": (A.GEN_AI_TOOL_CALL_ID, "tool.id"),
    "conversation_id": (A.GEN_AI_CONVERSATION_ID, "session.id", _TL + "session_id", _TL + "thread_id"),
    "model": (A.GEN_AI_REQUEST_MODEL, A.GEN_AI_RESPONSE_MODEL, "llm.model_name"),
    "input_tokens": (A.GEN_AI_USAGE_INPUT_TOKENS, "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"),
    "output_tokens": (A.GEN_AI_USAGE_OUTPUT_TOKENS, "gen_ai.usage.completion_tokens", "llm.token_count.completion"),
    "cost_amount": (A.COST_AMOUNT, A.GEN_AI_USAGE_COST_AMOUNT, "llm.cost.total"),
    "cost_currency": (A.COST_CURRENCY, A.GEN_AI_USAGE_COST_CURRENCY),
    "cost_source": (A.COST_SOURCE,),
    "policy_decision_id": (A.POLICY_DECISION_ID,),
    "policy_effect": (A.POLICY_EFFECT,),
    "policy_id": (A.POLICY_ID,),
    "policy_rule_id": (A.POLICY_RULE_ID,),
    "policy_version": (A.POLICY_VERSION,),
    "policy_tier": (A.POLICY_TIER,),
    "policy_mode": (A.POLICY_MODE,),
    "policy_boundary": (A.POLICY_BOUNDARY,),
    "escalation_id": (A.OVERSIGHT_ESCALATION_ID,),
    "escalation_outcome": (A.OVERSIGHT_OUTCOME,),
    "escalation_routed_to": (A.OVERSIGHT_ROUTED_TO,),
    "escalation_sla_seconds": (A.OVERSIGHT_SLA_SECONDS,),
    "approver_id": (A.OVERSIGHT_APPROVER_ID,),
    "approver_role": (A.OVERSIGHT_APPROVER_ROLE,),
    "decided_at": (A.OVERSIGHT_DECIDED_AT,),
    "data_resource": (A.DATA_RESOURCE, "mcp.resource.uri", "gen_ai.data_source.id"),
    "data_operation": (A.DATA_OPERATION,),
    "data_classification": (A.DATA_CLASSIFICATION,),
    "data_record_count": (A.DATA_RECORD_COUNT,),
    "acting_for": (A.DELEGATION_ACTING_FOR, "user.id", "enduser.id", _TL + "user_id"),
    "delegating_agent": (A.DELEGATION_DELEGATING_AGENT,),
    "delegation_depth": (A.DELEGATION_DEPTH,),
    "arguments_digest": (A.ACTION_ARGUMENTS_DIGEST, A.OVERSIGHT_ARGUMENTS_DIGEST),
    "action_target": (A.ACTION_TARGET,),
    "action_amount": (A.ACTION_AMOUNT,),
    "action_reversible": (A.ACTION_REVERSIBLE,),
}
# Resource attributes that fill a column when the span does not say (static identity).
RESOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "service_name": (A.SERVICE_NAME,),
    "agent_id": (A.GEN_AI_AGENT_ID,),
    "agent_name": (A.GEN_AI_AGENT_NAME,),
    "agent_owner": (A.AGENT_OWNER,),
    "agent_credential": (A.AGENT_CREDENTIAL,),
}
_INT64 = {"input_tokens", "output_tokens", "data_record_count"}
_INT32 = {"policy_tier", "delegation_depth"}
_FLOAT = {"cost_amount", "escalation_sla_seconds", "action_amount"}
_BOOL = {"action_reversible"}

# key -> (column, rank): one dict lookup per attribute instead of one per candidate key.
_KEY_RANK: dict[str, tuple[str, int]] = {
    key: (column, rank) for column, keys in SPAN_KEYS.items() for rank, key in enumerate(keys)
}


def resource_columns(resource: dict[str, Any]) -> dict[str, Any]:
    """Columns a resource supplies to all of its spans; computed once per resource."""
    out = {}
    for column, keys in RESOURCE_KEYS.items():
        for key in keys:
            value = resource.get(key)
            if value is not None and value != "":
                out[column] = _convert(column, value)
                break
    return out


def derive_columns(record: dict[str, Any], from_resource: dict[str, Any] | None = None) -> dict[str, Any]:
    """The typed columns of one stored record (also used by verification to re-derive them)."""
    attrs = record["attributes"]
    if from_resource is None:
        from_resource = resource_columns(record["resource"])
    found: dict[str, tuple[int, Any]] = {}
    for key, value in attrs.items():
        hit = _KEY_RANK.get(key)
        if hit is None or value is None or value == "":
            continue
        column, rank = hit
        previous = found.get(column)
        if previous is None or rank < previous[0]:
            found[column] = (rank, value)
    columns = {column: _convert(column, value) for column, (_, value) in found.items()}
    for column, value in from_resource.items():
        if columns.get(column) is None:
            columns[column] = value

    if columns.get("operation") is None:
        columns["operation"] = _operation_fallback(attrs)
    if columns.get("tool_name") is None:
        columns["tool_name"] = _tool_name_fallback(record, attrs, columns.get("operation"))
    status = record["status"]["code"]
    if columns.get("error_type") is None and status == "ERROR":
        exception = next((e for e in record["events"] if e["name"] == "exception"), None)
        columns["error_type"] = _text((exception or {}).get("attributes", {}).get("exception.type") or "_OTHER")
    if columns.get("cost_amount") is not None:
        columns.setdefault("cost_source", "reported")
        if columns.get("cost_currency") is None:
            columns["cost_currency"] = "USD"

    scope_name = record["scope"]["name"] or ""
    start_ns, end_ns = record["start_ns"], record["end_ns"]
    ingest = record["ingest"]
    columns.update({
        "received_at": ingest["received_ns"],
        "trace_id": record["trace_id"],
        "trace_key": int(record["trace_id"][:16], 16),
        "link_trace_ids": sorted({link["trace_id"] for link in record["links"]}) or None,
        "span_id": record["span_id"],
        "parent_span_id": record["parent_span_id"],
        "name": record["name"],
        "kind": record["kind"],
        "start_time": start_ns,
        "end_time": end_ns or None,
        "duration_ms": (end_ns - start_ns) / 1e6 if end_ns else None,
        "status_code": status,
        "status_message": record["status"]["message"] or None,
        "scope_name": scope_name or None,
        "flavor": _flavor(scope_name, attrs),
        "principal": ingest["principal"],
        "identity_mismatch": ingest.get("identity_mismatch"),
    })
    return columns


def _operation_fallback(attrs: dict[str, Any]) -> str | None:
    # _text, not str(): a non-string kind must render the same before and after a JSON round trip
    # (a dict's repr follows insertion order; the stored record's keys are sorted).
    oi_kind = attrs.get("openinference.span.kind")
    if oi_kind:
        return _OI_KINDS.get(_text(oi_kind).upper(), _text(oi_kind).lower())
    tl_kind = attrs.get("traceloop.span.kind")
    if tl_kind:
        return _TRACELOOP_KINDS.get(_text(tl_kind), _text(tl_kind))
    if attrs.get("mcp.method.name") == "tools/call":
        return A.OP_EXECUTE_TOOL
    return None


def _tool_name_fallback(record: dict[str, Any], attrs: dict[str, Any], operation: str | None) -> str | None:
    if attrs.get("traceloop.span.kind") == "tool":
        return _text(attrs.get("traceloop.entity.name"))
    if operation == A.OP_EXECUTE_TOOL and "tools/call " in record["name"]:
        return record["name"].rsplit("tools/call ", 1)[1].strip() or None
    return None


def _convert(column: str, value: Any) -> Any:
    if column in _INT64:
        return _int(value)
    if column in _INT32:
        return _int32(value)
    if column in _FLOAT:
        return _float(value)
    if column in _BOOL:
        return _bool(value)
    return _text(value)


def _flavor(scope_name: str, attrs: dict[str, Any]) -> str:
    if scope_name.startswith("govtrace"):
        return "govtrace"
    if scope_name.startswith("openinference") or "openinference.span.kind" in attrs:
        return "openinference"
    if any(key.startswith("traceloop.") for key in attrs):
        return "openllmetry"
    if scope_name.startswith("mcp") or "mcp.method.name" in attrs:
        return "mcp"
    if scope_name.startswith("opentelemetry.instrumentation.genai") or A.GEN_AI_OPERATION_NAME in attrs:
        return "otel_genai"
    return "other"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _int(value: Any) -> int | None:
    """An integer column's value; None unless it is a whole number that fits BIGINT (a double of
    1e19 or a string of twenty digits would otherwise fail the whole request's Arrow conversion)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            return None
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else None
    return None


def _int32(value: Any) -> int | None:
    number = _int(value)
    return number if number is not None and -(2**31) <= number < 2**31 else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


__all__ = ["Batch", "IngestPolicy", "normalize_request", "derive_columns", "canonical_json", "rows_to_table", "any_value"]
