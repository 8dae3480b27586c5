"""DSSE envelopes over in-toto Statements: the bundle's signed manifest.

DSSE (github.com/secure-systems-lab/dsse) signs ``PAE(payloadType, payload)``::

    "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

and the envelope is ``{payload: base64(body), payloadType, signatures: [{keyid, sig}]}``. The body
is an in-toto Statement v1 whose subjects are every file of the bundle with its SHA-256. We write
the ~30 lines ourselves rather than depend on ``securesystemslib`` for them: an auditor can check
them against the spec, and the tests check interoperability with ``securesystemslib`` itself.

The signing key is the ledger's Ed25519 key, so an auditor pins one fingerprint for checkpoints
and bundles alike. ``keyid`` is that key's fingerprint, an unauthenticated hint as the spec says:
verification tries every trusted key.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from govtrace.collector.ledger.signing import PublicKey, Signer

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://govtrace.dev/evidence-export/v1"


class EnvelopeError(ValueError):
    """The envelope is malformed or not signed by a trusted key; the message says which."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what is actually signed."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def statement(subjects: Mapping[str, str], predicate: dict[str, Any]) -> dict[str, Any]:
    """in-toto Statement v1 over ``{path: sha256 hex}``, subjects sorted by path."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in sorted(subjects.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def sign_envelope(body: dict[str, Any], signer: Signer) -> dict[str, Any]:
    payload = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    signature = signer.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": signer.public_key.fingerprint, "sig": base64.b64encode(signature).decode()}],
    }


@dataclass(frozen=True)
class Opened:
    statement: dict[str, Any]
    signed_by: PublicKey
    subjects: dict[str, str]  # path -> sha256 hex


def open_envelope(envelope: Any, keys: Iterable[PublicKey]) -> Opened:
    """Verify an envelope against trusted keys and parse its Statement; raises ``EnvelopeError``."""
    keys = list(keys)
    if not isinstance(envelope, dict):
        raise EnvelopeError("the envelope is not a JSON object")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise EnvelopeError(f"payloadType is {envelope.get('payloadType')!r}, expected {PAYLOAD_TYPE}")
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = [(s.get("keyid"), base64.b64decode(s["sig"], validate=True)) for s in envelope["signatures"]]
    except (KeyError, TypeError, AttributeError, binascii.Error, ValueError) as exc:
        raise EnvelopeError(f"the envelope is malformed: {exc}") from None
    if not signatures:
        raise EnvelopeError("the envelope carries no signature")
    message = pae(PAYLOAD_TYPE, payload)
    signer = next((k for _, sig in signatures for k in keys if k.verify(message, sig)), None)
    if signer is None:
        hints = ", ".join(str(keyid) for keyid, _ in signatures)
        raise EnvelopeError(f"no signature verifies with a trusted key (signature key ids: {hints}): the manifest "
                            "was changed after signing or signed by another key")
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise EnvelopeError(f"the signed payload is not JSON: {exc}") from None
    if body.get("_type") != STATEMENT_TYPE or body.get("predicateType") != PREDICATE_TYPE:
        raise EnvelopeError(f"the payload is not a govtrace evidence Statement ({body.get('_type')!r}, "
                            f"{body.get('predicateType')!r})")
    subjects: dict[str, str] = {}
    for subject in body.get("subject") or []:
        name, digest = subject.get("name"), (subject.get("digest") or {}).get("sha256")
        if not isinstance(name, str) or not isinstance(digest, str) or name in subjects:
            raise EnvelopeError(f"malformed or repeated subject {subject!r}")
        subjects[name] = digest
    return Opened(body, signer, subjects)
