"""OTLP/HTTP receiver (``POST /v1/traces``) and the read API, on one threaded HTTP server.

Ingest: protobuf or JSON bodies, optionally gzip. Reads: ``POST /api/v1/query`` runs one
read-only SELECT on the live database and answers with an Arrow IPC stream, so the CLI and the
dashboard read while the collector ingests, without opening the live file themselves.

Hostile clients are held to bounds: the TLS handshake happens on the connection's own thread (a
stalled handshake cannot block the accept loop), idle sockets time out, connections beyond a cap
get 503 at once, and an ingest body is admitted against the memory budget from its
``Content-Length`` before a byte of it is read.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from govtrace.collector.auth import Identity, ReaderIdentity, untrusted_reader
from govtrace.collector.errors import (
    BadRequest,
    IngestError,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
)
from govtrace.collector.ingest import IngestService
from govtrace.collector.read_api import ReadService
from govtrace.collector.tls import http_peer_cn

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
SOCKET_TIMEOUT_SECONDS = 30.0  # an idle or trickling client loses its thread after this
MAX_CONNECTIONS = 256

# Authenticates a request from its headers (lower-case keys) and the client certificate's common
# name; returns the sender's identity or raises Unauthenticated.
Authenticator = Callable[[dict[str, str], str | None], Identity]
ReaderAuthenticator = Callable[[dict[str, str]], ReaderIdentity]


class HttpReceiver:
    def __init__(
        self,
        ingest: IngestService,
        reads: ReadService,
        host: str,
        port: int,
        *,
        authenticate: Authenticator | None = None,
        authenticate_reader: ReaderAuthenticator | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ):
        handler = _make_handler(ingest, reads, authenticate, authenticate_reader)
        self.server = _Server((host, port), handler, ssl_context, max_connections)
        self.host, self.port = self.server.server_address[:2]
        self.scheme = "https" if ssl_context is not None else "http"
        self._thread = threading.Thread(target=self.server.serve_forever, name="govtrace-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, ssl_context: ssl.SSLContext | None, max_connections: int):
        super().__init__(address, handler)
        self.ssl_context = ssl_context
        self.slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(blocking=False):
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            request.settimeout(SOCKET_TIMEOUT_SECONDS)
            if self.ssl_context is not None:
                try:
                    request = self.ssl_context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as exc:
                    log.debug("TLS handshake with %s failed: %s", client_address, exc)
                    request.close()
                    return
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def _refuse_busy(request: socket.socket) -> None:
    """Too many connections: a plain-text 503 (best effort; a TLS client just sees a close)."""
    try:
        request.settimeout(1.0)
        request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n")
    except OSError:
        pass


def _make_handler(
    ingest: IngestService,
    reads: ReadService,
    authenticate: Authenticator | None,
    authenticate_reader: ReaderAuthenticator | None,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "govtrace"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            log.debug("%s " + format, self.address_string(), *args)

        def do_GET(self) -> None:
            self._body_consumed = False
            if self.path in ("/healthz", "/health"):
                self._send(200, JSON, json.dumps({"status": "ok"}).encode())
            elif self.path == "/api/v1/status":
                self._guard_read(lambda reader: self._send(200, JSON, json.dumps(reads.status(reader)).encode()))
            else:
                self._send(404, JSON, json.dumps({"error": f"no such path {self.path}"}).encode())

        def do_POST(self) -> None:
            self._body_consumed = False
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
            kind = "json" if is_json else "protobuf"
            encoding = self.headers.get("Content-Encoding")
            try:
                if content_type not in (PROTOBUF, JSON):
                    self._drain()
                    raise UnsupportedMediaType(
                        f"Content-Type {content_type or '(none)'!r} is not supported: use {PROTOBUF} or {JSON}"
                    )
                identity = None
                if authenticate is not None:
                    try:
                        identity = authenticate(self._lower_headers(), self._peer_cn())
                    except Unauthenticated:
                        ingest.count_unauthenticated()
                        self._drain()
                        raise
                # Admit before reading: an overloaded collector does not take in 16 MiB first.
                length = self._content_length()
                reservation = ingest.admit(ingest.max_body_bytes if length is None else length, kind, encoding)
                try:
                    body = self._read_body(ingest.max_body_bytes, length)
                except BaseException:
                    reservation.release()
                    raise
                result = ingest.export(body, content_type=kind, encoding=encoding, identity=identity,
                                       reservation=reservation)
            except IngestError as exc:
                # The unread body is discarded (not kept: it costs no memory budget) so that the
                # client, still sending, reads a clean 503 or 413 instead of a broken pipe.
                self._drain()
                self._send_error(exc)
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
        def _guard_read(self, action: Callable[[ReaderIdentity], None]) -> None:
            try:
                headers = self._lower_headers()
                reader = authenticate_reader(headers) if authenticate_reader else untrusted_reader(headers)
                action(reader)
            except IngestError as exc:
                self._drain()
                self._send_error(exc)

        def _query(self, reader: ReaderIdentity) -> None:
            request = self._json_body()
            sql, params = request.get("sql"), request.get("params") or []
            if not isinstance(sql, str) or not isinstance(params, list):
                raise BadRequest("the body must be {\"sql\": \"SELECT ...\", \"params\": [...]}")
            payload = reads.query_arrow(sql, params, reader=reader, purpose=self.headers.get("X-Govtrace-Purpose"))
            self._send(200, ARROW_STREAM, payload)

        def _access(self, reader: ReaderIdentity) -> None:
            request = self._json_body()
            reads.record_access(reader, str(request.get("action", "view")), str(request.get("target", "")),
                                str(request.get("detail", "")))
            self._send(200, JSON, b"{}")

        # --- plumbing -------------------------------------------------------------------------
        _body_consumed = False

        def _peer_cn(self) -> str | None:
            getpeercert = getattr(self.connection, "getpeercert", None)
            return http_peer_cn(getpeercert()) if getpeercert else None

        def _json_body(self) -> dict[str, Any]:
            body = self._read_body(1024 * 1024, self._content_length())
            try:
                value = json.loads(body or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadRequest(f"body is not JSON: {exc}") from None
            if not isinstance(value, dict):
                raise BadRequest("body must be a JSON object")
            return value

        def _content_length(self) -> int | None:
            """The declared body length; None for a chunked body."""
            length_header = self.headers.get("Content-Length")
            if length_header is None:
                if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
                    return None
                self._body_consumed = True  # nothing to read
                raise BadRequest("Content-Length is required")
            try:
                length = int(length_header)
            except ValueError:
                self.close_connection = True
                raise BadRequest("Content-Length is not a number") from None
            if length < 0:
                self.close_connection = True
                raise BadRequest("Content-Length is negative")
            return length

        def _read_body(self, limit: int, length: int | None) -> bytes:
            if length is None:
                return self._read_chunked(limit)
            if length > limit:
                raise PayloadTooLarge(f"body of {length} bytes exceeds the maximum of {limit}")  # drained by caller
            body = self.rfile.read(length)
            self._body_consumed = True
            if len(body) < length:
                self.close_connection = True
                raise BadRequest(f"body ended after {len(body)} of {length} bytes")
            return body

        def _read_chunked(self, limit: int) -> bytes:
            chunks, total = [], 0
            while True:
                size_line = self.rfile.readline(1024)
                try:
                    size = int(size_line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    raise BadRequest("malformed chunked body") from None
                if size == 0:
                    self.rfile.readline(1024)
                    self._body_consumed = True
                    return b"".join(chunks)
                total += size
                if total > limit or size < 0:
                    self.close_connection = True
                    raise PayloadTooLarge(f"body exceeds the maximum of {limit} bytes")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)

        def _drain(self) -> None:
            """Read and discard an unread body, in small pieces, so the connection stays usable and
            the client, still sending, sees the answer instead of a broken pipe. Bodies beyond four
            times the ingest maximum are not worth reading: the connection is closed instead."""
            if self._body_consumed:
                return
            self._body_consumed = True
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > 4 * ingest.max_body_bytes or self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                return
            while length > 0:
                piece = self.rfile.read(min(length, 64 * 1024))
                if not piece:
                    self.close_connection = True
                    return
                length -= len(piece)

        def _lower_headers(self) -> dict[str, str]:
            return {k.lower(): v for k, v in self.headers.items()}

        def _send_error(self, exc: IngestError) -> None:
            headers = {}
            if exc.retry_after_seconds:
                headers["Retry-After"] = str(max(1, round(exc.retry_after_seconds)))
            if isinstance(exc, Unauthenticated):
                headers["WWW-Authenticate"] = 'Bearer realm="govtrace"'
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
