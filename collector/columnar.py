"""Columnar normalization of OTLP/protobuf requests: the same rows as ``normalize_request``,
built by Arrow kernels instead of a Python loop per span.

``ptars`` decodes the protobuf request straight into Arrow arrays; the typed columns and each
span's canonical ``record`` JSON are then computed a column at a time. Per span this costs a small
fraction of the Python path, which at tens of thousands of spans per second is most of the
collector's CPU (docs/configuration.md#sizing).

Only spans of the common shape take this path: valid ids and times, attributes whose values are
strings, integers, booleans or finite doubles under distinct keys, no events or links, nothing a
redaction detector could match, no key that needs the OpenInference / OpenLLMetry / MCP fallbacks.
Every other span is normalized by ``normalize_spans`` itself, so its row is the Python path's by
construction; the tests compare the two paths on fixtures and fuzzed spans byte for byte.
A request this module cannot decode at all (malformed, nested values past the parser's limits) is
left whole to the Python path (``normalize_protobuf`` returns None). An authenticated sender's
principal and identity-mismatch flag are computed here too (``_Ingest``); spans a ``reject``
policy refuses are left to the Python path, which gives the reason.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from govtrace.collector.auth import ANY_AGENT, Identity
from govtrace.collector.decode import SPAN_KINDS, STATUS_CODES, parse_protobuf
from govtrace.collector.errors import BadRequest
from govtrace.collector.normalize import (
    _BOOL,
    _FLOAT,
    _INT32,
    _INT64,
    _KEY_RANK,
    _MAX_FUTURE_NS,
    _MIN_TIME_NS,
    RESOURCE_KEYS,
    Batch,
    IngestPolicy,
    _claimed_agent,
    canonical_json,
    normalize_spans,
    resource_columns,
)
from govtrace.collector.redaction import _SECRET_KEY, Redactor
from govtrace.collector.schema import SPAN_ARROW_SCHEMA
from govtrace.instrumentation import attributes as A

try:  # an optional accelerator: without it every request takes the Python path
    import ptars
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    _HANDLER = ptars.HandlerPool([ExportTraceServiceRequest.DESCRIPTOR.file]).get_for_message(
        ExportTraceServiceRequest.DESCRIPTOR)
except Exception:  # noqa: BLE001 - missing, or a build that does not match this protobuf
    _HANDLER = None

AVAILABLE = _HANDLER is not None

# Keys whose presence makes a column depend on fallbacks the columnar path does not implement
# (operation and tool name from OpenInference / OpenLLMetry / MCP attributes, their flavors).
_FALLBACK_KEYS = frozenset({"openinference.span.kind", "traceloop.span.kind", "mcp.method.name"})
_COLUMNS = sorted({column for column, _ in _KEY_RANK.values()})
_COLUMN_ID = {column: i for i, column in enumerate(_COLUMNS)}
_KIND_NAMES = pa.array(SPAN_KINDS)
_STATUS_NAMES = pa.array(STATUS_CODES)
_HEX = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2").view(np.uint16)
_ZERO_TRACE = pa.scalar(b"\x00" * 16, pa.binary())
_ZERO_SPAN = pa.scalar(b"\x00" * 8, pa.binary())
_STRING, _INT, _BOOLEAN, _DOUBLE = 0, 1, 2, 3  # an attribute value's kind


def normalize_protobuf(body: bytes, *, identity: Identity | None = None, policy: IngestPolicy | None = None,
                       received_ns: int) -> Batch | None:
    """The rows of one serialized ExportTraceServiceRequest, or None to leave it to the Python path."""
    if _HANDLER is None:
        return None
    policy = policy or IngestPolicy()
    trigger = _trigger_pattern(policy.redactor)
    if trigger is False:
        return None
    try:
        decoded = _HANDLER.list_to_record_batch([body])
    except Exception:  # noqa: BLE001 - malformed: the Python path salvages what it can and says why
        return None
    request = _Request.of(decoded, policy.redactor)
    if request is None:
        return None
    attrs = _Attributes(request.fields["attributes"])
    slow = _slow_spans(request, attrs, received_ns, trigger, policy.redactor)
    ingest = _Ingest.of(request, attrs, identity, received_ns)
    if ingest.mismatch is not None:
        slow |= ingest.undecided
        if policy.identity_mismatch == "reject":  # rejected, with their reason, by the Python path
            slow |= ingest.mismatch
    fast = ~slow
    if not fast.any():
        return None
    batch = Batch()
    table = _rows(request, attrs, fast, ingest)
    batch.mismatched = int(ingest.mismatch[fast].sum()) if ingest.mismatch is not None else 0
    positions = np.flatnonzero(fast)
    if slow.any():
        try:
            parsed = parse_protobuf(body)
        except BadRequest:  # a part protobuf refuses (ptars is laxer): the Python path salvages the rest
            return None
        rest, rest_positions = normalize_spans(parsed, identity=identity, policy=policy, received_ns=received_ns,
                                               only=set(np.flatnonzero(slow).tolist()))
        batch.rejected, batch.reasons, batch.redacted = rest.rejected, rest.reasons, rest.redacted
        batch.mismatched += rest.mismatched
        if rest.table.num_rows:
            table = pa.concat_tables([table, rest.table])
            order = np.argsort(np.concatenate([positions, np.asarray(rest_positions, dtype=np.int64)]), kind="stable")
            table = table.take(pa.array(order))
    batch.table = table
    batch.columnar = len(positions)
    return batch


class _Request:
    """One decoded request, flattened: a row per span with its resource's and scope's facts."""

    def __init__(self, spans: pa.StructArray, span_resource: np.ndarray, span_scope: np.ndarray,
                 resources: list[dict[str, Any]], scopes: list[dict[str, Any]]):
        self.spans = spans
        self.span_resource = span_resource
        self.span_scope = span_scope
        self.resources = resources
        self.scopes = scopes
        self.fields = {name: spans.field(name) for name in (
            "trace_id", "span_id", "parent_span_id", "trace_state", "name", "kind", "start_time_unix_nano",
            "end_time_unix_nano", "attributes", "dropped_attributes_count", "events", "dropped_events_count",
            "links", "dropped_links_count", "flags")}
        # An unset status is code 0 (UNSET) with an empty message, as protobuf reads it.
        status = spans.field("status")
        code, message = (status.flatten()[status.type.get_field_index(name)] for name in ("code", "message"))
        self.fields["status_code"] = pc.fill_null(code, 0)
        self.fields["status_message"] = pc.fill_null(message, "")

    @classmethod
    def of(cls, decoded: pa.RecordBatch, redactor: Redactor | None) -> _Request | None:
        resource_spans = decoded.column(0).flatten()
        scope_lists = resource_spans.field("scope_spans")
        scope_spans = scope_lists.flatten()
        span_lists = scope_spans.field("spans")
        spans = span_lists.flatten()
        scope_resource = pc.list_parent_indices(scope_lists).to_numpy()
        span_scope = pc.list_parent_indices(span_lists).to_numpy()
        resources = []
        for resource in resource_spans.field("resource").to_pylist():
            attributes = _plain_attributes((resource or {}).get("attributes") or [], redactor, "/resource")
            if attributes is None:
                return None
            resources.append({"json": canonical_json(attributes), "columns": resource_columns(attributes),
                              "claim": _claimed_agent(attributes)})
        scopes = []
        for scope in scope_spans.field("scope").to_pylist():
            scope = scope or {}
            attributes = _plain_attributes(scope.get("attributes") or [], redactor, "/scope/attributes")
            if attributes is None:
                return None
            name = scope.get("name") or ""
            scopes.append({
                "json": canonical_json({"name": name, "version": scope.get("version") or "", "attributes": attributes}),
                "name": name,
                "flavor": _scope_flavor(name),
            })
        return cls(spans, scope_resource[span_scope] if len(span_scope) else span_scope, span_scope, resources, scopes)


def _plain_attributes(pairs: list[dict[str, Any]], redactor: Redactor | None, pointer: str) -> dict[str, Any] | None:
    """A resource's or scope's attributes as ``key_values`` gives them, or None where a value is
    not a plain scalar or holds something to redact (the request is left to the Python path)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        value = pair["value"]
        if value is None:
            return None
        if value.get("string_value") is not None:
            out[pair["key"]] = value["string_value"]
        elif value.get("int_value") is not None:
            out[pair["key"]] = value["int_value"]
        elif value.get("bool_value") is not None:
            out[pair["key"]] = value["bool_value"]
        elif value.get("double_value") is not None and math.isfinite(value["double_value"]):
            out[pair["key"]] = value["double_value"]
        else:
            return None
    if redactor is not None:
        found: list[dict[str, Any]] = []
        redactor.redact_attributes(out, pointer, found)
        if found:
            return None
    return out


def _scope_flavor(name: str) -> str | None:
    """The flavor a scope name decides on its own (``normalize._flavor``), None if the span's keys decide."""
    if name.startswith("govtrace"):
        return "govtrace"
    if name.startswith("openinference"):
        return "openinference"
    if name.startswith("mcp"):
        return "mcp"
    if name.startswith("opentelemetry.instrumentation.genai"):
        return "otel_genai"
    return None


def _trigger_pattern(redactor: Redactor | None) -> str | None | bool:
    """One RE2 pattern that matches every string in which a detector could match (a superset of
    ``Redactor.triggered``); None without redaction; False when custom patterns make that unsure."""
    if redactor is None:
        return None
    if redactor.has_custom_patterns:  # Python regular expressions, not RE2
        return False
    text, lower, digits = redactor.trigger_literals()
    parts = [_re2_literal(literal) for literal in text]
    parts += ["(?i:" + _re2_literal(word) + ")" for word in lower]
    parts += [f"[0-9](?:[ \\-]*[0-9]){{{len(run) - 1}}}" for run in digits]
    return "|".join(parts) or None


def _re2_literal(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "\\" + c for c in text)


class _Attributes:
    """The spans' attributes, flattened: one entry per key/value pair, with typed value arrays."""

    def __init__(self, lists: pa.ListArray):
        self.parent = pc.list_parent_indices(lists).to_numpy()
        flat = lists.flatten()
        encoded = pc.dictionary_encode(flat.field("key"))
        self.keys: list[str] = encoded.dictionary.to_pylist()
        self.key_index = encoded.indices.to_numpy()
        value = flat.field("value")
        self.value_valid = value.is_valid().to_numpy(zero_copy_only=False)
        fields = dict(zip([f.name for f in value.type], value.flatten(), strict=True))  # parent nulls applied
        self.strings, self.ints, self.bools, self.doubles = (
            fields["string_value"], fields["int_value"], fields["bool_value"], fields["double_value"])
        self.empty = pc.fill_null(pc.equal(pc.binary_length(self.strings), 0), False).to_numpy(zero_copy_only=False)
        self.others = [fields[name] for name in ("array_value", "kvlist_value", "bytes_value", "string_value_strindex")
                       if name in fields]
        self.kinds = np.full(len(self.key_index), _STRING, dtype=np.int64)
        for kind, values in ((_INT, self.ints), (_BOOLEAN, self.bools), (_DOUBLE, self.doubles)):
            self.kinds[values.is_valid().to_numpy(zero_copy_only=False)] = kind
        # The typed column each entry's key feeds (-1: none).
        self.column_of = np.array([_COLUMN_ID[_KEY_RANK[key][0]] if key in _KEY_RANK else -1
                                   for key in self.keys] or [-1])[self.key_index]
        # Entries in (span, key) order, the record's order (Python sorts str by code point, as UTF-8
        # bytes sort).
        by_key = sorted(range(len(self.keys)), key=self.keys.__getitem__)
        key_rank = np.empty(max(len(by_key), 1), dtype=np.int64)
        key_rank[by_key] = np.arange(len(by_key))
        self.order = np.lexsort((key_rank[self.key_index], self.parent))


def _slow_spans(request: _Request, attrs: _Attributes, received_ns: int, trigger: str | None,
                redactor: Redactor | None) -> np.ndarray:
    """Which spans the Python path must normalize (True), as a boolean array over the spans."""
    f = request.fields
    n = len(request.spans)
    trace_len = pc.binary_length(f["trace_id"])
    span_len = pc.binary_length(f["span_id"])
    parent_len = pc.binary_length(f["parent_span_id"])
    start, end = f["start_time_unix_nano"], f["end_time_unix_nano"]
    # Times are uint64: compared with int64 bounds, Arrow would cast them and fail past 2**63 - 1.
    earliest = pa.scalar(_MIN_TIME_NS, pa.uint64())
    latest = pa.scalar(received_ns + _MAX_FUTURE_NS, pa.uint64())
    zero = pa.scalar(0, pa.uint64())
    kind, code, message = f["kind"], f["status_code"], f["status_message"]
    checks = [
        pc.not_equal(trace_len, 16), pc.equal(f["trace_id"], _ZERO_TRACE),
        pc.not_equal(span_len, 8), pc.equal(f["span_id"], _ZERO_SPAN),
        pc.and_(pc.not_equal(parent_len, 0), pc.not_equal(parent_len, 8)),
        pc.less(start, earliest), pc.greater(start, latest), pc.greater(end, latest),
        pc.and_(pc.not_equal(end, zero), pc.less(end, start)),
        pc.or_(pc.less(kind, 0), pc.greater_equal(kind, len(SPAN_KINDS))),
        pc.or_(pc.less(code, 0), pc.greater_equal(code, len(STATUS_CODES))),
        pc.greater(pc.list_value_length(f["events"]), 0),
        pc.greater(pc.list_value_length(f["links"]), 0),
        pc.match_substring(f["name"], "tools/call "),
    ]
    for text in (f["name"], f["trace_state"], message):
        checks.append(pa.array(_holding(text, _is_control)))
    if trigger is not None:
        checks.append(pa.array(_redacted(message, trigger, redactor)))
    slow = np.zeros(n, dtype=bool)
    for check in checks:
        slow |= check.to_numpy(zero_copy_only=False)

    bad_value = pc.invert(pc.or_kleene(pc.or_kleene(attrs.strings.is_valid(), attrs.ints.is_valid()),
                                       pc.or_kleene(attrs.bools.is_valid(), pc.is_finite(attrs.doubles))))
    bad_value = pc.fill_null(bad_value, True).to_numpy(zero_copy_only=False)
    for other in attrs.others:
        bad_value |= other.is_valid().to_numpy(zero_copy_only=False)
    bad_value |= _holding(attrs.strings, _is_control)
    if trigger is not None:  # values under the keys redaction leaves alone are not looked at
        kept = np.array([key in redactor.keep_keys for key in attrs.keys] or [False], dtype=bool)[attrs.key_index]
        checked = pc.if_else(pa.array(kept), pa.scalar(None, pa.string()), attrs.strings) if kept.any() else attrs.strings
        bad_value |= _redacted(checked, trigger, redactor)
    # Per distinct key (a few dozen per request): does it force the Python path, and which column is it for?
    key_slow = np.array([_key_needs_python(key, redactor) for key in attrs.keys] or [False], dtype=bool)
    bad_value |= key_slow[attrs.key_index]
    # A value of a type its column does not take as is (a string count, a double id): Python converts it.
    column_of, kinds = attrs.column_of, attrs.kinds
    accepts = _ACCEPTS[np.maximum(column_of, 0)]
    bad_value |= (column_of >= 0) & ~accepts[np.arange(len(kinds)), kinds] & ~attrs.empty
    # Duplicate keys in one span: the Python path keeps the last; rare, left to it.
    sorted_parent, sorted_key = attrs.parent[attrs.order], attrs.key_index[attrs.order]
    duplicate = np.zeros(len(sorted_key), dtype=bool)
    if len(sorted_key) > 1:
        duplicate[1:] = (sorted_parent[1:] == sorted_parent[:-1]) & (sorted_key[1:] == sorted_key[:-1])
    if bad_value.any():
        slow[np.unique(attrs.parent[bad_value])] = True
    if duplicate.any():
        slow[np.unique(sorted_parent[duplicate])] = True
    return slow


def _redacted(strings: pa.Array, trigger: str, redactor: Redactor) -> np.ndarray:
    """Which strings the redactor would change. RE2 picks the candidates (a superset of the
    redactor's own trigger test; non-ASCII text always, since case folding differs), the redactor
    itself decides on them, so the answer is exactly the Python path's."""
    candidates = pc.or_kleene(pc.match_substring_regex(strings, trigger), pc.invert(pc.string_is_ascii(strings)))
    candidates = pc.fill_null(candidates, False)
    out = np.zeros(len(strings), dtype=bool)
    where = np.flatnonzero(candidates.to_numpy(zero_copy_only=False))
    for index, text in zip(where, strings.filter(candidates).to_pylist(), strict=True):
        found: list[dict[str, Any]] = []
        redactor.redact_text(text, "", found)
        out[index] = bool(found)
    return out


def _accepted_kinds(column: str) -> list[bool]:
    """Value kinds (string, int, bool, double) a column converts exactly as the Python path does."""
    if column in _INT64 or column in _INT32:
        return [False, True, True, False]
    if column in _FLOAT:
        return [False, True, False, True]
    if column in _BOOL:
        return [False, False, True, False]
    return [True, True, True, False]  # text: json.dumps of an int or a bool is its Arrow cast


_TEXT = frozenset(_COLUMNS) - _INT64 - _INT32 - _FLOAT - _BOOL
_ACCEPTS = np.array([_accepted_kinds(column) for column in _COLUMNS], dtype=bool)


def _key_needs_python(key: str, redactor: Redactor | None) -> bool:
    if key in _FALLBACK_KEYS or key.startswith("traceloop."):
        return True
    if any(ord(c) < 0x20 for c in key):
        return True
    if redactor is not None:
        if not key.isascii():
            return True
        if redactor.secret_keys and key not in redactor.keep_keys and _SECRET_KEY.search(key):
            return True
    return False


class _Ingest:
    """What the collector adds to each record's ``ingest``: the sender's principal and whether a
    span claims an agent the sender may not speak for (``normalize._row``)."""

    def __init__(self, received_ns: int, principal: str | None = None, mismatch: np.ndarray | None = None,
                 undecided: np.ndarray | None = None):
        self.received_ns = received_ns
        self.principal = principal
        self.mismatch = mismatch  # per span; None without an authenticated sender
        self.undecided = undecided  # spans whose claim only the Python path reads (a non-text agent id)

    @classmethod
    def of(cls, request: _Request, attrs: _Attributes, identity: Identity | None, received_ns: int) -> _Ingest:
        if identity is None:
            return cls(received_ns)
        n = len(request.spans)
        claims = pa.array([r["claim"] for r in request.resources], pa.string()).take(pa.array(request.span_resource))
        undecided = np.zeros(n, dtype=bool)
        if A.GEN_AI_AGENT_ID in attrs.keys:
            entries = np.flatnonzero(attrs.key_index == attrs.keys.index(A.GEN_AI_AGENT_ID))
            values = attrs.strings.take(pa.array(entries))
            is_text = values.is_valid().to_numpy(zero_copy_only=False)
            undecided[attrs.parent[entries[~is_text]]] = True
            stated = entries[is_text & (pc.fill_null(pc.binary_length(values), 0).to_numpy() > 0)]
            index = np.full(n, -1, dtype=np.int64)
            index[attrs.parent[stated]] = stated  # an empty agent id claims nothing: the resource's counts
            claims = pc.coalesce(attrs.strings.take(pa.array(index, mask=index < 0)), claims)
        if ANY_AGENT in identity.agent_ids:
            mismatch = np.zeros(n, dtype=bool)
        else:
            allowed = pc.is_in(claims, value_set=pa.array(sorted(identity.agent_ids), pa.string()))
            mismatch = pc.and_(claims.is_valid(), pc.invert(allowed)).to_numpy(zero_copy_only=False)
        return cls(received_ns, identity.principal, mismatch, undecided)

    def json(self, fast: np.ndarray) -> list:
        """The ``ingest`` object of each kept span as JSON fragments (keys sorted)."""
        if self.mismatch is None:
            return [f'{{"principal":null,"received_ns":{self.received_ns}}}']
        flags = pa.array(["false", "true"]).take(pa.array(self.mismatch[fast].astype(np.int64)))
        return ['{"identity_mismatch":', flags,
                f',"principal":{canonical_json(self.principal)},"received_ns":{self.received_ns}}}']


# --- the rows of the spans that take this path -------------------------------------------------

def _rows(request: _Request, attrs: _Attributes, fast: np.ndarray, ingest: _Ingest) -> pa.Table:
    received_ns = ingest.received_ns
    if fast.all():
        f = request.fields
    else:
        mask = pa.array(fast)
        f = {name: array.filter(mask) for name, array in request.fields.items()}
    n = int(fast.sum())
    span_resource = request.span_resource[fast]
    span_scope = request.span_scope[fast]
    # Attribute entries of the spans kept, renumbered, in (span, key) order: the record's key order.
    new_index = np.cumsum(fast) - 1
    keep = fast[attrs.parent]
    order = attrs.order[keep[attrs.order]]
    parent = new_index[attrs.parent]

    columns: dict[str, pa.Array] = {}
    _typed_columns(columns, attrs, keep, parent, n)
    for column in RESOURCE_KEYS:
        from_resource = pa.array([r["columns"].get(column) for r in request.resources], type=pa.string())
        filled = from_resource.take(pa.array(span_resource))
        columns[column] = pc.coalesce(columns[column], filled) if column in columns else filled

    trace_ids, span_ids = _hex(f["trace_id"]), _hex(f["span_id"])
    parent_hex = _hex(f["parent_span_id"])
    parent_ids = pc.if_else(pc.equal(pc.binary_length(f["parent_span_id"]), 0), pa.scalar(None, pa.string()), parent_hex)
    start = pc.cast(f["start_time_unix_nano"], pa.int64())
    end = pc.cast(f["end_time_unix_nano"], pa.int64())
    has_end = pc.not_equal(end, 0)
    code, message = f["status_code"], f["status_message"]
    status_names = _STATUS_NAMES.take(code)
    kind_names = _KIND_NAMES.take(f["kind"])
    null_text = pa.scalar(None, pa.string())

    if "error_type" in columns:
        error_type = columns["error_type"]
    else:
        error_type = pa.nulls(n, pa.string())
    columns["error_type"] = pc.if_else(pc.and_(pc.is_null(error_type), pc.equal(code, 2)), "_OTHER", error_type)
    cost = columns.get("cost_amount")
    if cost is not None:
        has_cost = pc.is_valid(cost)
        for column, default in (("cost_source", "reported"), ("cost_currency", "USD")):
            current = columns.get(column, pa.nulls(n, pa.string()))
            columns[column] = pc.if_else(pc.and_(has_cost, pc.is_null(current)), default, current)

    scope_names = pa.array([s["name"] or None for s in request.scopes], type=pa.string())
    scope_flavor = pa.array([s["flavor"] for s in request.scopes], type=pa.string())
    has_operation_key = _has_key(attrs, A.GEN_AI_OPERATION_NAME, keep, parent, n)
    flavor = pc.coalesce(scope_flavor.take(pa.array(span_scope)),
                         pc.if_else(pa.array(has_operation_key), "otel_genai", "other"))
    duration = np.where(has_end.to_numpy(zero_copy_only=False),
                        (end.to_numpy() - start.to_numpy()).astype(np.float64) / 1e6, np.nan)
    trace_key = _data(f["trace_id"]).reshape(n, 16)[:, :8].copy().view(">u8")

    columns.update({
        "received_at": pa.array(np.full(n, received_ns, dtype=np.int64)),
        "trace_id": trace_ids,
        "trace_key": pa.array(trace_key.ravel().astype(np.uint64)),
        "link_trace_ids": pa.nulls(n, pa.list_(pa.string())),
        "span_id": span_ids,
        "parent_span_id": parent_ids,
        "name": f["name"],
        "kind": kind_names,
        "start_time": start,
        "end_time": pc.if_else(has_end, end, pa.scalar(None, pa.int64())),
        "duration_ms": pa.array(duration, mask=~has_end.to_numpy(zero_copy_only=False)),
        "status_code": status_names,
        "status_message": pc.if_else(pc.equal(message, ""), null_text, message),
        "scope_name": scope_names.take(pa.array(span_scope)),
        "flavor": flavor,
        "principal": pa.nulls(n, pa.string()) if ingest.principal is None else pa.array([ingest.principal] * n, pa.string()),
        "identity_mismatch": pa.nulls(n, pa.bool_()) if ingest.mismatch is None else pa.array(ingest.mismatch[fast]),
    })

    record = _records(request, f, attrs, order, parent, n, span_resource, span_scope, trace_ids, span_ids,
                      parent_ids, kind_names, status_names, ingest.json(fast))
    out = {}
    for field in SPAN_ARROW_SCHEMA:
        if field.name == "seq":
            out["seq"] = pa.nulls(n, pa.int64())
        elif field.name == "record":
            out["record"] = record
        elif field.name in columns:
            column = columns[field.name]
            out[field.name] = column if column.type == field.type else pc.cast(column, field.type)
        else:
            out[field.name] = pa.nulls(n, field.type)
    return pa.table(out, schema=SPAN_ARROW_SCHEMA)


def _typed_columns(columns: dict[str, pa.Array], attrs: _Attributes, keep: np.ndarray, parent: np.ndarray,
                   n: int) -> None:
    """Each typed column from the highest-ranked non-empty attribute that feeds it (``derive_columns``)."""
    key_rank = np.array([_KEY_RANK[key][1] if key in _KEY_RANK else 0 for key in attrs.keys] or [0])
    column_of, kinds = attrs.column_of, attrs.kinds
    hit = keep & (column_of >= 0) & attrs.value_valid & ~attrs.empty
    entries = np.flatnonzero(hit)
    if not len(entries):
        return
    span, column, rank = parent[entries], column_of[entries], key_rank[attrs.key_index[entries]]
    order = np.lexsort((rank, column, span))
    span, column, entries = span[order], column[order], entries[order]
    first = np.ones(len(entries), dtype=bool)
    first[1:] = (span[1:] != span[:-1]) | (column[1:] != column[:-1])
    span, column, entries = span[first], column[first], entries[first]
    for column_id in np.unique(column):
        name = _COLUMNS[column_id]
        chosen = column == column_id
        index = np.full(n, -1, dtype=np.int64)
        index[span[chosen]] = entries[chosen]
        take = pa.array(index, mask=index < 0)
        only = np.unique(kinds[entries[chosen]])
        if len(only) == 1:  # the common case: one value type per column, taken as it is
            source = {_STRING: attrs.strings, _INT: attrs.ints, _BOOLEAN: attrs.bools, _DOUBLE: attrs.doubles}[only[0]]
            if (name in _INT64 and only[0] == _INT) or (name in _FLOAT and only[0] == _DOUBLE) \
                    or (name in _BOOL and only[0] == _BOOLEAN) or (name in _TEXT and only[0] == _STRING):
                columns[name] = source.take(take)
                continue
        ints, bools = attrs.ints.take(take), attrs.bools.take(take)
        if name in _INT64 or name in _INT32:
            values = pc.coalesce(ints, pc.cast(bools, pa.int64()))
            if name in _INT32:
                in_range = pc.and_(pc.greater_equal(values, -(2**31)), pc.less(values, 2**31))
                values = pc.if_else(in_range, values, pa.scalar(None, pa.int64()))
            columns[name] = values
        elif name in _FLOAT:
            columns[name] = pc.coalesce(attrs.doubles.take(take), pc.cast(ints, pa.float64(), safe=False))
        elif name in _BOOL:
            columns[name] = bools
        else:
            columns[name] = pc.coalesce(attrs.strings.take(take), pc.cast(ints, pa.string()), pc.cast(bools, pa.string()))


def _has_key(attrs: _Attributes, key: str, keep: np.ndarray, parent: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    if key in attrs.keys:
        entries = keep & (attrs.key_index == attrs.keys.index(key))
        out[parent[entries]] = True
    return out


# --- the canonical record ----------------------------------------------------------------------

def _records(request: _Request, f: dict[str, pa.Array], attrs: _Attributes, order: np.ndarray, parent: np.ndarray,
             n: int, span_resource: np.ndarray, span_scope: np.ndarray, trace_ids: pa.Array, span_ids: pa.Array,
             parent_ids: pa.Array, kind_names: pa.Array, status_names: pa.Array, ingest_json: list) -> pa.Array:
    """``canonical_json(record)`` of every span, assembled from JSON fragments (keys sorted)."""
    # '"key":' then the value; a string value's quotes come from the key fragment and the suffix.
    key_json = [orjson.dumps(key).decode() + ":" for key in attrs.keys] or [""]
    key_fragments = pa.array(key_json + [k + '"' for k in key_json], type=pa.string())
    keys = attrs.key_index[order]
    is_string = attrs.strings.is_valid().to_numpy(zero_copy_only=False)[order]
    prefixes = key_fragments.take(pa.array(keys + is_string * len(key_json)))
    suffixes = pa.array(['', '"']).take(pa.array(is_string.astype(np.int64)))
    pairs = pc.binary_join_element_wise(prefixes, _value_json(attrs, order), suffixes, "")
    counts = np.bincount(parent[order], minlength=n) if len(order) else np.zeros(n, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    attributes = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), pairs), ",")

    resource_json = pa.array([r["json"] for r in request.resources], type=pa.string()).take(pa.array(span_resource))
    scope_json = pa.array([s["json"] for s in request.scopes], type=pa.string()).take(pa.array(span_scope))
    trace_state = f["trace_state"]
    parts = [
        '{"attributes":{', attributes,
        '},"dropped":{"attributes":', _text(f["dropped_attributes_count"]),
        ',"events":', _text(f["dropped_events_count"]),
        ',"links":', _text(f["dropped_links_count"]),
        '},"end_ns":', _text(f["end_time_unix_nano"]),
        ',"events":[],"flags":', _text(f["flags"]),
        ',"ingest":', *ingest_json, ',"kind":"', kind_names,
        '","links":[],"name":', _quoted(f["name"]),
        ',"parent_span_id":', pc.fill_null(_wrap(parent_ids, '"', '"'), "null"),
        ',"resource":', resource_json,
        ',"scope":', scope_json,
        ',"span_id":"', span_ids,
        '","start_ns":', _text(f["start_time_unix_nano"]),
        ',"status":{"code":"', status_names,
        '","message":', _quoted(f["status_message"]),
        '},"trace_id":"', trace_ids,
        '","trace_state":', pc.if_else(pc.equal(trace_state, ""), "null", _quoted(trace_state)),
        "}",
    ]
    return pc.binary_join_element_wise(*parts, "")


def _value_json(attrs: _Attributes, order: np.ndarray) -> pa.Array:
    take = pa.array(order)
    strings = attrs.strings.take(take)
    doubles = attrs.doubles.take(take)
    valid = doubles.is_valid().to_numpy(zero_copy_only=False)
    double_json = np.full(len(order), None, dtype=object)
    if valid.any():
        # orjson writes the shortest round-tripping form, as canonical_json does; one call for all.
        double_json[valid] = orjson.dumps(doubles.filter(doubles.is_valid()).to_numpy().tolist()).decode()[1:-1].split(",")
    return pc.coalesce(_escaped(strings), pc.cast(attrs.ints.take(take), pa.string()),
                       pc.cast(attrs.bools.take(take), pa.string()), pa.array(double_json, type=pa.string()))


def _quoted(strings: pa.Array) -> pa.Array:
    """JSON string literals of strings without control characters."""
    return _wrap(_escaped(strings), '"', '"')


def _escaped(strings: pa.Array) -> pa.Array:
    """The insides of JSON string literals (no control characters here: the only escapes are \\ and ")."""
    special = _holding(strings, _is_quote_or_backslash)
    if not special.any():
        return strings
    mask = pa.array(special)
    subset = strings.filter(mask)
    escaped = pc.replace_substring(pc.replace_substring(subset, "\\", "\\\\"), '"', '\\"')
    return pc.replace_with_mask(strings, mask, escaped)


def _is_control(data: np.ndarray) -> np.ndarray:
    return data < 0x20


def _is_quote_or_backslash(data: np.ndarray) -> np.ndarray:
    return (data == 0x22) | (data == 0x5C)


def _offsets(values: pa.Array) -> np.ndarray:
    """The value offsets of a string or binary array (zero-copy, its slice offset applied)."""
    return np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset: values.offset + len(values) + 1]


def _data(values: pa.Array) -> np.ndarray:
    """The bytes of a string or binary array's values, all together (zero-copy)."""
    offsets, buffer = _offsets(values), values.buffers()[2]
    if buffer is None or not len(values):
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(buffer, dtype=np.uint8)[offsets[0]:offsets[-1]]


def _holding(strings: pa.Array, test) -> np.ndarray:
    """Which strings hold a byte ``test`` picks out: one pass over all the bytes (null: False)."""
    out = np.zeros(len(strings), dtype=bool)
    hits = np.flatnonzero(test(_data(strings)))
    if len(hits):
        offsets = _offsets(strings)
        out[np.unique(np.searchsorted(offsets - offsets[0], hits, side="right") - 1)] = True
        if strings.null_count:
            out &= strings.is_valid().to_numpy(zero_copy_only=False)
    return out


def _wrap(strings: pa.Array, before: str, after: str) -> pa.Array:
    return pc.binary_join_element_wise(before, strings, after, "")


def _text(numbers: pa.Array) -> pa.Array:
    return pc.cast(numbers, pa.string())


def _hex(ids: pa.Array) -> pa.Array:
    """Lower-case hex of each binary value (``bytes.hex``), with a lookup table over all bytes at once."""
    offsets = _offsets(ids)
    hexed = _HEX[_data(ids)].tobytes()
    new_offsets = ((offsets - offsets[0]) * 2).astype(np.int32)
    return pa.StringArray.from_buffers(len(ids), pa.py_buffer(new_offsets.tobytes()), pa.py_buffer(hexed))
