"""TLS for both receivers from one set of files: server certificate and key, and optionally a CA
whose client certificates are required (mutual TLS).

The client certificate's common name is how a mutual-TLS sender is identified (``client_cn`` in
the tokens file); both receivers read it the same way, from the verified peer certificate.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import grpc

from govtrace.collector.config import CollectorConfig


def grpc_credentials(config: CollectorConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert:
        return None
    key, cert = Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes()
    client_ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def http_context(config: CollectorConfig) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_client_ca:
        context.load_verify_locations(config.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def grpc_peer_cn(context: grpc.ServicerContext) -> str | None:
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode("utf-8", "replace") if names else None


def http_peer_cn(peer_certificate: dict[str, Any] | None) -> str | None:
    """Common name of a verified peer certificate, as ``SSLSocket.getpeercert()`` returns it."""
    for rdn in (peer_certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None
