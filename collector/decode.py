"""Small pure functions that turn OTLP wire values into plain Python values.

Lossless by construction: every AnyValue kind maps to one JSON shape, and the two JSON cannot
express natively are tagged (``{"$bytes": base64}`` and ``{"$double": "NaN"}``).
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from govtrace.collector.errors import BadRequest, PayloadTooLarge

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


@dataclass
class Salvaged:
    """The parts of a request that parse, and what had to be left out."""

    request: ExportTraceServiceRequest
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)


def parse_protobuf_salvaging(body: bytes) -> Salvaged:
    """Parse a request; if it does not parse as a whole, keep every span that parses on its own.

    One span with invalid UTF-8 or values nested past the parser's limit must not sink the other
    spans of its batch. The request's framing (resource spans, scope spans, spans) is walked on the
    wire, and each resource, scope and span is parsed separately; a span whose resource or scope
    does not parse is rejected with it. Only a request whose framing itself is broken (truncated,
    not protobuf) is refused whole.
    """
    try:
        return Salvaged(parse_protobuf(body))
    except BadRequest as whole:
        first_error = str(whole)
    out = Salvaged(ExportTraceServiceRequest())
    try:
        for r, resource_bytes in enumerate(_fields(body, 1)):
            scopes = list(_fields(resource_bytes, 2))
            spans_of = [list(_fields(scope, 2)) for scope in scopes]
            resource = _parse_part(Resource, b"".join(_fields(resource_bytes, 1)))
            if resource is None:
                _reject(out, sum(map(len, spans_of)), f"resource #{r}: does not parse (invalid UTF-8 or nesting)")
                continue
            resource_spans = out.request.resource_spans.add()
            resource_spans.resource.CopyFrom(resource)
            for s, (scope_bytes, spans) in enumerate(zip(scopes, spans_of, strict=True)):
                scope = _parse_part(InstrumentationScope, b"".join(_fields(scope_bytes, 1)))
                if scope is None:
                    _reject(out, len(spans), f"resource #{r} scope #{s}: does not parse")
                    continue
                scope_spans = resource_spans.scope_spans.add()
                scope_spans.scope.CopyFrom(scope)
                for i, span_bytes in enumerate(spans):
                    span = _parse_part(Span, span_bytes)
                    if span is None:
                        _reject(out, 1, f"resource #{r} scope #{s} span #{i}: does not parse "
                                        "(invalid UTF-8 or values nested too deep)")
                    else:
                        scope_spans.spans.append(span)
    except _WireError:
        raise BadRequest(first_error) from None
    return out


class _WireError(Exception):
    pass


def _reject(out: Salvaged, count: int, reason: str) -> None:
    out.rejected += count
    if len(out.reasons) < 5:
        out.reasons.append(reason)


def _parse_part(message_type: Any, data: bytes) -> Any:
    message = message_type()
    try:
        message.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError):
        return None
    return message


def _fields(data: bytes, wanted: int):
    """The payloads of length-delimited field ``wanted`` in one message's wire bytes."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise _WireError("length past the end")
            if number == wanted:
                yield data[pos:pos + length]
            pos += length
        else:
            raise _WireError(f"wire type {wire_type}")
        if pos > end:
            raise _WireError("field past the end")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _WireError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


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
    for resource_spans in _dicts(document.get("resourceSpans") or document.get("resource_spans")):
        for scope_spans in _dicts(resource_spans.get("scopeSpans") or resource_spans.get("scope_spans")):
            for span in _dicts(scope_spans.get("spans")):
                _convert_ids(span)
                for link in _dicts(span.get("links")):
                    _convert_ids(link)


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list; anything else is left for the protobuf parser to refuse."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _convert_ids(obj: dict[str, Any]) -> None:
    for name in ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"):
        value = obj.get(name)
        if isinstance(value, str) and value:
            try:
                obj[name] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            except ValueError:
                # Not hex: an empty id, which validation then rejects for this span alone.
                obj[name] = ""
