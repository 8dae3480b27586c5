"""Error types of the ingest path and their one mapping to gRPC codes and HTTP statuses.

Two kinds only: bad input, which the sender must not retry, and overload, which it should retry
later. Receivers raise these and translate them here, nowhere else. gRPC codes are named, not
imported: the decode workers raise these errors and have no use for grpc (tens of MB each).
"""

from __future__ import annotations


class IngestError(Exception):
    grpc_code = "INTERNAL"  # the name of a grpc.StatusCode
    http_status = 500
    retry_after_seconds: float | None = None


class BadRequest(IngestError):
    """Malformed or unacceptable input: never retried."""

    grpc_code = "INVALID_ARGUMENT"
    http_status = 400


class PayloadTooLarge(BadRequest):
    grpc_code = "RESOURCE_EXHAUSTED"
    http_status = 413


class UnsupportedMediaType(BadRequest):
    http_status = 415


class Unauthenticated(IngestError):
    grpc_code = "UNAUTHENTICATED"
    http_status = 401


class PermissionDenied(IngestError):
    grpc_code = "PERMISSION_DENIED"
    http_status = 403


class Overloaded(IngestError):
    """The queue is full or the store is busy: retry after a pause."""

    grpc_code = "UNAVAILABLE"
    http_status = 503

    def __init__(self, message: str, retry_after_seconds: float = 1.0):
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
