"""TLS on both receivers, and mutual TLS identifying a sender by its client certificate.

Certificates are made for each test run with ``cryptography``: a CA, a server certificate for
127.0.0.1, client certificates from that CA and from a stranger's CA.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import ssl

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from govtrace.collector.auth import token_hash
from govtrace.collector.config import load_config
from govtrace.collector.loadgen import EXPORT_METHOD, build_request
from govtrace.collector.server import Collector

TOKEN = "gt_tls-test-token"


class _Authority:
    def __init__(self, name: str):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            self._builder(self.name, self.key.public_key())
            .issuer_name(self.name)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, common_name: str, *, server: bool = False) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key.public_key())
        builder = builder.issuer_name(self.name)
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return _pem(cert), key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())

    @property
    def pem(self) -> bytes:
        return _pem(self.cert)

    @staticmethod
    def _builder(subject: x509.Name, public_key) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (x509.CertificateBuilder().subject_name(subject).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1)))


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca, stranger = _Authority("govtrace test CA"), _Authority("someone else's CA")
    files = {"ca": folder / "ca.pem"}
    files["ca"].write_bytes(ca.pem)
    for name, (cert, key) in {"server": ca.issue("127.0.0.1", server=True),
                              "billing": ca.issue("billing.agents.example"),
                              "unregistered": ca.issue("nobody.agents.example"),
                              "stranger": stranger.issue("billing.agents.example")}.items():
        files[name] = folder / f"{name}.pem"
        files[name].write_bytes(cert)
        files[f"{name}_key"] = folder / f"{name}.key"
        files[f"{name}_key"].write_bytes(key)
    return files


def _collector(tmp_path, pki, *, mutual: bool) -> Collector:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"""
agents:
  - principal: billing-service
    agent_ids: ["*"]
    token_sha256: {token_hash(TOKEN)}
    client_cn: billing.agents.example
""")
    settings = {"db": str(tmp_path / "tls.duckdb"), "grpc": "127.0.0.1:0", "http": "127.0.0.1:0",
                "decode_workers": 0, "auth_tokens_file": str(tokens),
                "tls_cert": str(pki["server"]), "tls_key": str(pki["server_key"])}
    if mutual:
        settings["tls_client_ca"] = str(pki["ca"])
    collector = Collector(load_config(None, settings, environ={}))
    collector.start()
    return collector


def _grpc_send(endpoint: str, credentials: grpc.ChannelCredentials | None, metadata=()) -> ExportTraceServiceResponse:
    channel = grpc.secure_channel(endpoint, credentials) if credentials else grpc.insecure_channel(endpoint)
    try:
        export = channel.unary_unary(EXPORT_METHOD, request_serializer=lambda b: b,
                                     response_deserializer=ExportTraceServiceResponse.FromString)
        return export(build_request(4).body, timeout=10, metadata=metadata or None)
    finally:
        channel.close()


def _client_credentials(pki, client: str | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    return grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes(),
                                        private_key=pki[f"{client}_key"].read_bytes(),
                                        certificate_chain=pki[client].read_bytes())


def _https_post(collector: Collector, pki, client: str | None = None, token: str | None = None) -> int:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if client:
        context.load_cert_chain(str(pki[client]), str(pki[f"{client}_key"]))
    connection = http.client.HTTPSConnection("127.0.0.1", collector.http.port, context=context, timeout=10)
    headers = {"Content-Type": "application/x-protobuf"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request("POST", "/v1/traces", body=build_request(4).body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def _principals(collector: Collector) -> list[tuple]:
    cursor = collector.store.cursor()
    try:
        return cursor.execute("SELECT principal, count(*) FROM spans GROUP BY ALL ORDER BY ALL").fetchall()
    finally:
        cursor.close()


def test_both_receivers_speak_tls_and_a_plaintext_client_gets_nowhere(tmp_path, pki):
    collector = _collector(tmp_path, pki, mutual=False)
    try:
        assert collector.http_url.startswith("https://")
        _grpc_send(collector.grpc_endpoint, _client_credentials(pki), (("authorization", f"Bearer {TOKEN}"),))
        assert _https_post(collector, pki, token=TOKEN) == 200
        with pytest.raises(grpc.RpcError) as failure:
            _grpc_send(collector.grpc_endpoint, None, (("authorization", f"Bearer {TOKEN}"),))
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        plain = http.client.HTTPConnection("127.0.0.1", collector.http.port, timeout=10)
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            plain.request("POST", "/v1/traces", body=b"x", headers={"Content-Type": "application/x-protobuf"})
            plain.getresponse().read()
        plain.close()
        assert _principals(collector) == [("billing-service", 8)]
    finally:
        collector.stop()


def test_mutual_tls_identifies_a_sender_by_its_certificate_without_a_token(tmp_path, pki):
    collector = _collector(tmp_path, pki, mutual=True)
    try:
        _grpc_send(collector.grpc_endpoint, _client_credentials(pki, "billing"))
        assert _https_post(collector, pki, client="billing") == 200
        assert _principals(collector) == [("billing-service", 8)]
    finally:
        collector.stop()


def test_mutual_tls_refuses_certificates_it_did_not_issue_or_does_not_know(tmp_path, pki):
    collector = _collector(tmp_path, pki, mutual=True)
    try:
        with pytest.raises(grpc.RpcError) as failure:
            _grpc_send(collector.grpc_endpoint, _client_credentials(pki, "stranger"))
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails
        with pytest.raises(grpc.RpcError) as failure:
            _grpc_send(collector.grpc_endpoint, _client_credentials(pki))  # no client certificate at all
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as failure:
            _grpc_send(collector.grpc_endpoint, _client_credentials(pki, "unregistered"))
        assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED  # valid, but names no principal
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _https_post(collector, pki, client="stranger")
        assert _https_post(collector, pki, client="unregistered") == 401
        assert _principals(collector) == []
    finally:
        collector.stop()
