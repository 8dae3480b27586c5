"""OTLP/gRPC TraceService receiver.

The request arrives as raw bytes (no generated deserializer), so that a malformed body becomes
``INVALID_ARGUMENT`` from our decoder instead of gRPC's generic deserialization error.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from govtrace.collector.errors import IngestError
from govtrace.collector.ingest import IngestService
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"

# Authenticates a call from its metadata; returns the principal or raises Unauthenticated.
Authenticator = Callable[[dict[str, str]], str | None]


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
            ],
            maximum_concurrent_rpcs=max_workers * 4,
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
            principal = None
            if self.authenticate is not None:
                principal = self.authenticate({k.lower(): v for k, v in context.invocation_metadata()})
            encoding = dict(context.invocation_metadata()).get("grpc-encoding")
            del encoding  # grpc already decompressed the message
            result = self.ingest.export(body, content_type="protobuf", principal=principal)
        except IngestError as exc:
            if exc.retry_after_seconds:
                context.set_trailing_metadata((("retry-after", str(int(exc.retry_after_seconds))),))
            context.abort(exc.grpc_code, str(exc))
        response = ExportTraceServiceResponse()
        if result.rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=result.rejected, error_message=result.message)
            )
        return response


def _serialize(message: ExportTraceServiceResponse) -> bytes:
    return message.SerializeToString()
