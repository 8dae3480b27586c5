"""Small pure functions that turn OTLP wire values into plain Python values.

Lossless by construction: every AnyValue kind maps to one JSON shape, and the two JSON cannot
express natively are tagged (``{"$bytes": base64}`` and ``{"$double": "NaN"}``).
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from govtrace.collector.errors import BadRequest, PayloadTooLarge
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS_CODES = ("UNSET", "OK", "ERROR")
MAX_VALUE_DEPTH = 32


def any_value(value: Any, depth: int = 0) -> Any:
    """An OTLP AnyValue as a JSON-compatible Python value."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else {"$double": repr(number)}
    if depth >= MAX_VALUE_DEPTH:
        raise BadRequest(f"attribute value nested deeper than {MAX_VALUE_DEPTH} levels")
    if kind == "array_value":
        return [any_value(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return {"$bytes": base64.b64encode(value.bytes_value).decode("ascii")}
    return None


def key_values(kvs: Any) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        value = kv.value
        # Fast path: most attribute values are strings.
        out[kv.key] = value.string_value if value.WhichOneof("value") == "string_value" else any_value(value)
    return out


def hex_id(raw: bytes) -> str:
    return raw.hex()


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo Content-Encoding, refusing to inflate past ``max_bytes`` (gzip bombs)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r}: use gzip, deflate or identity")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding}: {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds the maximum of {max_bytes} bytes")
    if not inflater.eof:
        raise BadRequest(f"body is truncated {encoding}")
    return out


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise BadRequest(f"malformed OTLP protobuf: {exc}") from None
    return request


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """OTLP/JSON: like proto3 JSON, except that trace and span ids are hex, not base64."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"malformed OTLP JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("malformed OTLP JSON: the body must be an object")
    _hex_ids_to_base64(document)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise BadRequest(f"malformed OTLP JSON: {exc}") from None
    return request


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    for resource_spans in document.get("resourceSpans") or document.get("resource_spans") or []:
        for scope_spans in resource_spans.get("scopeSpans") or resource_spans.get("scope_spans") or []:
            for span in scope_spans.get("spans") or []:
                _convert_ids(span)
                for link in span.get("links") or []:
                    _convert_ids(link)


def _convert_ids(obj: dict[str, Any]) -> None:
    for field in ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"):
        value = obj.get(field)
        if isinstance(value, str) and value:
            try:
                obj[field] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            except ValueError:
                raise BadRequest(f"{field} {value!r} is not hex") from None
