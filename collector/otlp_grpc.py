"""OTLP/gRPC TraceService receiver.

The request arrives as raw bytes (no generated deserializer), so that a malformed body becomes
``INVALID_ARGUMENT`` from our decoder instead of gRPC's generic deserialization error.

Overload answers ``UNAVAILABLE`` with a ``google.rpc.RetryInfo`` in the trailers, the OTLP way of
saying when to come back (the OTel SDK exporters honour it), plus a plain ``retry-after``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from govtrace.collector.auth import Identity
from govtrace.collector.errors import IngestError, Unauthenticated
from govtrace.collector.ingest import IngestService
from govtrace.collector.tls import grpc_peer_cn

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"

# Authenticates a call from its metadata (lower-case keys) and the client certificate's common
# name; returns the sender's identity or raises Unauthenticated.
Authenticator = Callable[[dict[str, str], str | None], Identity]


class GrpcReceiver:
    def __init__(
        self,
        ingest: IngestService,
        address: str,
        *,
        max_workers: int = 32,
        authenticate: Authenticator | None = None,
        credentials: grpc.ServerCredentials | None = None,
    ):
        self.ingest = ingest
        self.authenticate = authenticate
        limit = ingest.max_body_bytes + 1024
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="govtrace-grpc"),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", 4 * 1024 * 1024),
                # Backpressure before memory: at most this many calls per connection are open at
                # once (clients queue the rest on their side), and no bandwidth-delay probing, so
                # the transport does not buffer megabytes of requests no thread has taken yet.
                ("grpc.max_concurrent_streams", max_workers),
                ("grpc.http2.bdp_probe", 0),
            ],
            # Calls beyond this are refused by gRPC itself with RESOURCE_EXHAUSTED (which OTel SDKs
            # retry). Calls waiting for a thread have not had their message read yet, so the memory
            # budget, checked first thing in each call, bounds what requests hold.
            maximum_concurrent_rpcs=max_workers * 8,
        )
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self._export, request_deserializer=None, response_serializer=_serialize
                )
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        if credentials is not None:
            self.port = self.server.add_secure_port(address, credentials)
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen for OTLP/gRPC on {address}")
        self.host = address.rsplit(":", 1)[0]

    def start(self) -> None:
        self.server.start()

    def stop(self, grace: float = 5.0) -> None:
        self.server.stop(grace).wait()

    def _export(self, body: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        try:
            identity = None
            if self.authenticate is not None:
                metadata = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
                try:
                    identity = self.authenticate(metadata, grpc_peer_cn(context))
                except Unauthenticated:
                    self.ingest.count_unauthenticated()
                    raise
            # gRPC has already undone any grpc-encoding compression.
            result = self.ingest.export(body, content_type="protobuf", identity=identity)
        except IngestError as exc:
            if exc.retry_after_seconds:
                context.set_trailing_metadata(_retry_metadata(exc.retry_after_seconds))
            context.abort(grpc.StatusCode[exc.grpc_code], str(exc))
        response = ExportTraceServiceResponse()
        if result.rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=result.rejected, error_message=result.message)
            )
        return response


def _retry_metadata(seconds: float) -> tuple[tuple[str, str | bytes], ...]:
    whole = int(seconds)
    info = RetryInfo(retry_delay=Duration(seconds=whole, nanos=int((seconds - whole) * 1e9)))
    return (("google.rpc.retryinfo-bin", info.SerializeToString()), ("retry-after", str(max(1, round(seconds)))))


def _serialize(message: ExportTraceServiceResponse) -> bytes:
    return message.SerializeToString()
