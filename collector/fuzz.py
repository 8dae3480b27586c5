"""Fuzzing the ingest decoder: arbitrary bytes, mutated real requests, OTLP/JSON-shaped junk and
generated requests with hostile values all go through the real decode and normalize code.

The property is the collector's contract with untrusted input: a request either decodes into a
batch (valid spans stored, the rest counted as rejected) or is refused with ``BadRequest``;
nothing else may escape, and every stored record must be canonical JSON whose typed columns
re-derive exactly from it (what ``verify-store`` checks later) and whose redaction pointers resolve.

The test suite runs a bounded budget (``tests/test_fuzz_decode.py``); a longer run::

    python -m govtrace.collector.fuzz --seconds 600

Needs ``hypothesis`` (the dev extra).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from govtrace.collector.auth import Identity
from govtrace.collector.decode_pool import PolicySettings, decode_batch
from govtrace.collector.errors import BadRequest
from govtrace.collector.loadgen import build_request
from govtrace.collector.normalize import Batch, IngestPolicy, canonical_json, derive_columns
from govtrace.collector.schema import DERIVED_COLUMNS

MAX_BYTES = 4 * 1024 * 1024
NOW_NS = 1_763_700_000_000_000_000
POLICY = PolicySettings(identity_mismatch="flag", redact="api_key,bearer_token,email,card_number").build()
IDENTITY = Identity("fuzzer", frozenset({"agent-01", "agent-02"}))
EXECUTIONS: Counter[str] = Counter()


# --- the property -------------------------------------------------------------------------------

def check(body: bytes, content_type: str = "protobuf", encoding: str | None = None,
          policy: IngestPolicy = POLICY, target: str = "bytes") -> Batch | None:
    """Decode one body as the collector would; raise AssertionError if the contract is broken."""
    EXECUTIONS[target] += 1
    try:
        batch = decode_batch(body, content_type, encoding, MAX_BYTES, IDENTITY, NOW_NS, policy)
    except BadRequest:
        return None
    assert batch.rejected >= 0 and batch.table.num_rows >= 0
    table = batch.table
    for i, field in enumerate(table.schema):  # timestamps as their int64 nanoseconds
        if pa.types.is_timestamp(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.int64()))
    for row in table.to_pylist():
        text = row["record"]
        record = json.loads(text)
        assert canonical_json(record) == text, "stored record is not canonical JSON"
        derived = derive_columns(record)
        for column in DERIVED_COLUMNS:
            assert _same(row[column], derived.get(column)), \
                f"column {column}: stored {row[column]!r}, derived {derived.get(column)!r}"
        for redaction in record["ingest"].get("redactions", []):
            assert set(redaction) == {"pointer", "detector", "count"}
            _resolve(record, redaction["pointer"])
    return batch


def _same(stored: Any, derived: Any) -> bool:
    if isinstance(stored, float) and isinstance(derived, float):
        return stored == derived or (math.isnan(stored) and math.isnan(derived))
    return stored == derived


def _resolve(document: Any, pointer: str) -> Any:
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


# --- inputs -------------------------------------------------------------------------------------

SEEDS = [build_request(n, seed=n, start_ns=NOW_NS - 60 * 10**9).body for n in (1, 3, 8)]

def _array(values: list[AnyValue]) -> AnyValue:
    value = AnyValue()
    value.array_value.values.extend(values)
    return value


def _kvlist(pairs: list[tuple[str, AnyValue]]) -> AnyValue:
    value = AnyValue()
    value.kvlist_value.values.extend(KeyValue(key=k, value=v) for k, v in pairs)
    return value


any_values = st.recursive(
    st.one_of(
        st.text(max_size=40).map(lambda s: AnyValue(string_value=s)),
        st.sampled_from(["sk-proj-" + "A" * 24, "Bearer abcdefgh12345678", "x@y.example", "4111111111111111",
                         "password=hunter2hunter2", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_sig_sig"]
                        ).map(lambda s: AnyValue(string_value=s)),
        st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda i: AnyValue(int_value=i)),
        st.floats(allow_nan=True, allow_infinity=True).map(lambda f: AnyValue(double_value=f)),
        st.booleans().map(lambda b: AnyValue(bool_value=b)),
        st.binary(max_size=16).map(lambda b: AnyValue(bytes_value=b)),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(_array),
        st.lists(st.tuples(st.text(max_size=8), inner), max_size=4).map(_kvlist),
    ),
    max_leaves=16,
)


attribute_keys = st.one_of(st.text(max_size=20), st.sampled_from(
    ["gen_ai.agent.id", "gen_ai.tool.name", "gen_ai.operation.name", "gen_ai.usage.input_tokens",
     "govtrace.cost.amount", "govtrace.policy.tier", "govtrace.action.reversible", "openinference.span.kind",
     "traceloop.span.kind", "http.request.header.authorization", "user.id", "mcp.method.name"]))
attributes = st.lists(st.tuples(attribute_keys, any_values), max_size=6)
ids = st.one_of(st.binary(min_size=0, max_size=20), st.binary(min_size=16, max_size=16), st.just(b"\0" * 16))
times = st.one_of(st.integers(min_value=0, max_value=2**64 - 1),
                  st.integers(min_value=NOW_NS - 10**12, max_value=NOW_NS + 10**12))


@st.composite
def requests(draw) -> bytes:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(KeyValue(key=k, value=v) for k, v in draw(attributes))
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = draw(st.text(max_size=12))
        for _ in range(draw(st.integers(0, 3))):
            span = scope_spans.spans.add()
            span.trace_id = draw(ids)
            span.span_id = draw(st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=10)))
            span.parent_span_id = draw(st.one_of(st.just(b""), st.binary(max_size=9)))
            span.name = draw(st.text(max_size=30))
            span.kind = draw(st.integers(0, 8))
            span.start_time_unix_nano = draw(times)
            span.end_time_unix_nano = draw(times)
            span.attributes.extend(KeyValue(key=k, value=v) for k, v in draw(attributes))
            span.status.code = draw(st.integers(0, 4))
            span.status.message = draw(st.text(max_size=30))
            for _ in range(draw(st.integers(0, 2))):
                event = span.events.add()
                event.name = draw(st.text(max_size=10))
                event.attributes.extend(KeyValue(key=k, value=v) for k, v in draw(attributes))
    return request.SerializeToString()


@st.composite
def mutated(draw) -> bytes:
    body = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(0, len(body) - 1)))
        if kind == "flip" and body:
            body[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and body:
            del body[at:at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del body[at:]
    return bytes(body)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_documents = st.recursive(
    json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner,
                                                                                     max_size=4)),
    max_leaves=30,
)


@st.composite
def otlp_json(draw) -> bytes:
    """OTLP/JSON-shaped documents with junk where the schema expects something else."""
    span = {"traceId": draw(st.one_of(st.text(max_size=34), st.just("5b8efff798038103d269b633813fc60c"))),
            "spanId": draw(st.one_of(st.text(max_size=18), st.just("eee19b7ec3c1b174"))),
            "name": draw(json_documents), "startTimeUnixNano": draw(st.one_of(json_leaf, st.just(str(NOW_NS)))),
            "attributes": draw(st.one_of(json_documents, st.just([{"key": "k", "value": {"stringValue": "v"}}])))}
    document = {"resourceSpans": [{"resource": draw(json_documents), "scopeSpans": [{"spans": [span]}]}]}
    return json.dumps(document).encode()


# --- runs ---------------------------------------------------------------------------------------

def targets(max_examples: int) -> list:
    configured = settings(max_examples=max_examples, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))

    @configured
    @given(st.binary(max_size=2048))
    def raw_bytes(body: bytes) -> None:
        check(body, target="bytes")

    @configured
    @given(mutated())
    def mutated_requests(body: bytes) -> None:
        check(body, target="mutated")

    @configured
    @given(requests())
    def generated_requests(body: bytes) -> None:
        check(body, target="generated")

    @configured
    @given(otlp_json())
    def json_bodies(body: bytes) -> None:
        check(body, content_type="json", target="json")

    @configured
    @given(st.binary(max_size=256), st.sampled_from(["gzip", "deflate"]))
    def compressed(body: bytes, encoding: str) -> None:
        check(body, encoding=encoding, target="compressed")

    return [raw_bytes, mutated_requests, generated_requests, json_bodies, compressed]


def mutate_quickly(rounds: int, rng: random.Random) -> None:
    """Plain random mutation of real requests, without hypothesis's bookkeeping: many more
    executions per second for the long run (hypothesis's targets find structure, this finds volume)."""
    for _ in range(rounds):
        body = bytearray(rng.choice(SEEDS))
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(body)) if body else 0
            choice = rng.random()
            if choice < 0.5 and body:
                body[at] ^= 1 << rng.randrange(8)
            elif choice < 0.7:
                body[at:at] = rng.randbytes(rng.randint(1, 8))
            elif choice < 0.9 and body:
                del body[at:at + rng.randint(1, 8)]
            else:
                del body[at:]
        check(bytes(body), target="mutated_fast")


def run(seconds: float, examples_per_round: int = 500, seed: int | None = None) -> Counter[str]:
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for target in targets(examples_per_round):
            target()
        mutate_quickly(20 * examples_per_round, rng)
    return EXECUTIONS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m govtrace.collector.fuzz",
                                     description="Fuzz the OTLP decoder and normalizer for a time budget.")
    parser.add_argument("--seconds", type=float, default=300.0, help="time budget (default 300)")
    args = parser.parse_args(argv)
    began = time.monotonic()
    counts = run(args.seconds)
    elapsed = time.monotonic() - began
    print(json.dumps({"executions": sum(counts.values()), "by_target": dict(counts), "seconds": round(elapsed, 1),
                      "executions_per_second": round(sum(counts.values()) / elapsed), "failures": 0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
