"""OTLP/HTTP receiver (``POST /v1/traces``) and the read API, on one threaded HTTP server.

Ingest: protobuf or JSON bodies, optionally gzip. Reads: ``POST /api/v1/query`` runs one
read-only SELECT on the live database and answers with an Arrow IPC stream, so the CLI and the
dashboard read while the collector ingests, without opening the live file themselves.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from govtrace.collector.errors import BadRequest, IngestError, PayloadTooLarge, UnsupportedMediaType
from govtrace.collector.ingest import IngestService
from govtrace.collector.read_api import ReadService
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ARROW_STREAM = "application/vnd.apache.arrow.stream"

# Authenticates a request from its headers; returns the principal or raises Unauthenticated.
Authenticator = Callable[[dict[str, str]], str | None]


class HttpReceiver:
    def __init__(
        self,
        ingest: IngestService,
        reads: ReadService,
        host: str,
        port: int,
        *,
        authenticate: Authenticator | None = None,
        authenticate_reader: Callable[[dict[str, str]], tuple[str | None, str | None]] | None = None,
        ssl_context: Any = None,
    ):
        handler = _make_handler(ingest, reads, authenticate, authenticate_reader)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
        self.host, self.port = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, name="govtrace-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _make_handler(
    ingest: IngestService,
    reads: ReadService,
    authenticate: Authenticator | None,
    authenticate_reader: Callable[[dict[str, str]], tuple[str | None, str | None]] | None,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "govtrace"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            log.debug("%s " + format, self.address_string(), *args)

        def do_GET(self) -> None:
            if self.path in ("/healthz", "/health"):
                self._send(200, JSON, json.dumps({"status": "ok"}).encode())
            elif self.path == "/api/v1/status":
                self._guard_read(lambda user, role: self._send(200, JSON, json.dumps(reads.status()).encode()))
            else:
                self._send(404, JSON, json.dumps({"error": f"no such path {self.path}"}).encode())

        def do_POST(self) -> None:
            if self.path == "/v1/traces":
                self._ingest()
            elif self.path == "/api/v1/query":
                self._guard_read(self._query)
            elif self.path == "/api/v1/access":
                self._guard_read(self._access)
            else:
                self._drain()
                self._send(404, JSON, json.dumps({"error": f"no such path {self.path}"}).encode())

        # --- ingest ---------------------------------------------------------------------------
        def _ingest(self) -> None:
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            is_json = content_type == JSON
            try:
                if content_type not in (PROTOBUF, JSON):
                    self._drain()
                    raise UnsupportedMediaType(
                        f"Content-Type {content_type or '(none)'!r} is not supported: use {PROTOBUF} or {JSON}"
                    )
                body = self._read_body(ingest.max_body_bytes)
                principal = authenticate(self._lower_headers()) if authenticate else None
                result = ingest.export(
                    body,
                    content_type="json" if is_json else "protobuf",
                    encoding=self.headers.get("Content-Encoding"),
                    principal=principal,
                )
            except IngestError as exc:
                self._send_error(exc, is_json)
                return
            response = ExportTraceServiceResponse()
            if result.rejected:
                response.partial_success.rejected_spans = result.rejected
                response.partial_success.error_message = result.message
            if is_json:
                payload: dict[str, Any] = {}
                if result.rejected:
                    payload["partialSuccess"] = {"rejectedSpans": str(result.rejected), "errorMessage": result.message}
                self._send(200, JSON, json.dumps(payload).encode())
            else:
                self._send(200, PROTOBUF, response.SerializeToString())

        # --- reads ----------------------------------------------------------------------------
        def _guard_read(self, action: Callable[[str | None, str | None], None]) -> None:
            try:
                user, role = authenticate_reader(self._lower_headers()) if authenticate_reader else (
                    self.headers.get("X-Govtrace-User"), self.headers.get("X-Govtrace-Role"))
                action(user, role)
            except IngestError as exc:
                self._send_error(exc, True)

        def _query(self, user: str | None, role: str | None) -> None:
            request = self._json_body()
            sql, params = request.get("sql"), request.get("params") or []
            if not isinstance(sql, str) or not isinstance(params, list):
                raise BadRequest("the body must be {\"sql\": \"SELECT ...\", \"params\": [...]}")
            payload = reads.query_arrow(sql, params, user=user, role=role, purpose=self.headers.get("X-Govtrace-Purpose"))
            self._send(200, ARROW_STREAM, payload)

        def _access(self, user: str | None, role: str | None) -> None:
            request = self._json_body()
            reads.record_access(user, role, str(request.get("action", "view")), str(request.get("target", "")),
                                str(request.get("detail", "")))
            self._send(200, JSON, b"{}")

        # --- plumbing -------------------------------------------------------------------------
        def _json_body(self) -> dict[str, Any]:
            body = self._read_body(1024 * 1024)
            try:
                value = json.loads(body or b"{}")
            except json.JSONDecodeError as exc:
                raise BadRequest(f"body is not JSON: {exc}") from None
            if not isinstance(value, dict):
                raise BadRequest("body must be a JSON object")
            return value

        def _read_body(self, limit: int) -> bytes:
            length_header = self.headers.get("Content-Length")
            if length_header is None:
                if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
                    return self._read_chunked(limit)
                raise BadRequest("Content-Length is required")
            try:
                length = int(length_header)
            except ValueError:
                raise BadRequest("Content-Length is not a number") from None
            if length < 0:
                raise BadRequest("Content-Length is negative")
            if length > limit:
                self.close_connection = True
                raise PayloadTooLarge(f"body of {length} bytes exceeds the maximum of {limit}")
            return self.rfile.read(length)

        def _read_chunked(self, limit: int) -> bytes:
            chunks, total = [], 0
            while True:
                size_line = self.rfile.readline(1024)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadRequest("malformed chunked body") from None
                if size == 0:
                    self.rfile.readline(1024)
                    return b"".join(chunks)
                total += size
                if total > limit:
                    self.close_connection = True
                    raise PayloadTooLarge(f"body exceeds the maximum of {limit} bytes")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)

        def _drain(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = 0
            if 0 < length <= 64 * 1024 * 1024:
                self.rfile.read(length)
            elif length:
                self.close_connection = True

        def _lower_headers(self) -> dict[str, str]:
            return {k.lower(): v for k, v in self.headers.items()}

        def _send_error(self, exc: IngestError, as_json: bool) -> None:
            headers = {}
            if exc.retry_after_seconds:
                headers["Retry-After"] = str(max(1, int(exc.retry_after_seconds)))
            body = json.dumps({"code": exc.http_status, "message": str(exc)}).encode()
            self._send(exc.http_status, JSON, body, headers)

        def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

    return Handler
