"""``export_bundle``: one agent and window from the store into a signed, offline-verifiable bundle.

Steps, in order (each is timed; ``govtrace bench export`` reports them):
1. record the export in the store's access log, before any data is read (no record, no bundle);
2. stream the member events through the ``Reader`` into ``data/events.parquet``, in seq chunks,
   hashing each disclosed record as its leaf;
3. every leaf hash of the log up to the head checkpoint, then one multi-leaf proof for all members
   (one pass over the leaves, not one per event) and a consistency proof from the anchor;
4. the tables, figures and readiness answers, computed from ``events.parquet`` alone by running the
   same ``queries.sql`` the bundle ships, so the report says only what the bundle reproduces;
5. the documents (OSCAL, HTML, completeness, redactions, registry, policies, VERIFY.md), then the
   manifest, ``SHA256SUMS`` and the DSSE envelope signed with the ledger key.
The bundle is built in a staging directory beside ``out`` and moved into place only when complete.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from govtrace.analytics.evidence import collect, completeness, dsse, layout, oscal, report
from govtrace.analytics.evidence import tables as T
from govtrace.analytics.evidence.analysis import QUESTIONS, analyse
from govtrace.analytics.evidence.events import MemberEvents, write_events
from govtrace.analytics.evidence.redaction import PROFILES
from govtrace.analytics.reader import Reader
from govtrace.collector.ledger import merkle
from govtrace.collector.ledger.proofs import build_multi_proof
from govtrace.collector.ledger.retention_log import sealed as sealed_retention
from govtrace.collector.ledger.signing import PublicKey, Signer, trusted_keys

DEFAULT_CHUNK_SEQS = 131_072


class ExportError(RuntimeError):
    """The export cannot be made; the message says why and what to do."""


@dataclass
class ExportResult:
    path: Path
    bundle_id: str
    events: int
    agent_events: int
    tree_size: int
    unsealed: int
    files: int
    bytes: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "bundle_id": self.bundle_id, "events": self.events,
                "agent_events": self.agent_events, "tree_size": self.tree_size, "unsealed": self.unsealed,
                "files": self.files, "bytes": self.bytes, "seconds": round(self.seconds, 2),
                "timings": {k: round(v, 2) for k, v in self.timings.items()}}


def export_bundle(reader: Reader, agent: str, since: datetime, until: datetime, out: str | Path, *,
                  signer: Signer, policy_files: Sequence[str | Path] = (), redaction: str = "none",
                  exported_by: str | None = None, role: str | None = None, now: datetime | None = None,
                  prices_file: str | Path | None = None, wait_seal_seconds: float = 0.0,
                  chunk_seqs: int = DEFAULT_CHUNK_SEQS, progress: Callable[[str], None] | None = None) -> ExportResult:
    """Write the evidence bundle for ``agent`` over ``[since, until)`` to ``out`` (a directory, or a ``.zip``)."""
    started = time.perf_counter()
    out = Path(out)
    since, until = _utc(since), _utc(until)
    if not agent:
        raise ExportError("an evidence bundle is for one agent: give its id")
    if since >= until:
        raise ExportError(f"the window is empty: {since.isoformat()} is not before {until.isoformat()}")
    if redaction not in PROFILES:
        raise ExportError(f"unknown redaction profile {redaction!r}: one of {', '.join(PROFILES)}")
    if out.exists():
        raise ExportError(f"{out} exists: evidence bundles are never overwritten")
    created = _utc(now or datetime.now(UTC))
    bundle_id = str(uuid.uuid4())
    exported_by = exported_by or "unknown"
    clock = _Clock(progress)

    verifier_keys, rotations = collect.ledger_keys(reader)
    stored = {PublicKey.from_verifier_key(k).fingerprint for k in verifier_keys}
    trusted = {k.fingerprint for k in trusted_keys([signer.public_key], rotations)}
    if not stored & trusted:
        raise ExportError(f"the signing key {signer.public_key.fingerprint} is not a ledger key of this store (nor "
                          "linked to one by rotation): use the store's key directory")
    _record_access(reader, agent, since, until, bundle_id, exported_by, role)
    clock.lap("access recorded")

    head, unsealed = _sealed_head(reader, agent, since, until, wait_seal_seconds)
    tree_size = head.checkpoint.tree_size

    staging = layout.staging_dir(out)
    try:
        for sub in ("data", "proofs", "keys", "reports", "oscal", "registry", "policy"):
            (staging / sub).mkdir()
        events = write_events(reader, staging, agent, since, until, tree_size, redaction, chunk_seqs)
        clock.lap("events written")
        leaves = collect.all_leaf_hashes(reader, tree_size, events.leaves)
        clock.lap("leaf hashes")
        checkpoints = _write_proofs(staging, events, leaves, head, reader)
        del leaves
        clock.lap("proofs")
        layout.write_json(staging / layout.KEYS, {"verifier_keys": verifier_keys, "rotations": rotations,
                                            "signing_key": signer.public_key.fingerprint})
        facts = {"bundle_id": bundle_id, "agent": agent, "since": since.isoformat(), "until": until.isoformat(),
                 "created_at": created.isoformat(), "exported_by": exported_by, "source": reader.source,
                 "generator_version": _version(), "origin": head.checkpoint.origin, "tree_size": tree_size,
                 "root": head.checkpoint.root_hash.hex(), "key_fingerprint": signer.public_key.fingerprint,
                 "head_checkpoint": head.seq_no}
        analysis = analyse(staging, agent, since, until, created, events, policy_files, prices_file, clock.lap)
        clock.lap("tables and figures")
        ingest = collect.ingest_events(reader, since, until)
        layout.write_json(staging / layout.COMPLETENESS, completeness.build(
            head=head.checkpoint, head_seq_no=head.seq_no, anchor=checkpoints[0],
            anchor_seq_no=checkpoints[1], unsealed=unsealed, ingest_events=ingest))
        layout.write_json(staging / layout.REDACTIONS, _redactions(redaction, events, collect.retention_log(reader),
                                                             head.checkpoint))
        _write_documents(staging, facts, analysis)
        clock.lap("documents")
        files = _seal(staging, facts, signer, events, created)
        clock.lap("signed")
        size = sum((staging / f).stat().st_size for f in layout.list_files(staging))
        layout.publish(staging, out)
        clock.lap("published")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(out, bundle_id, len(events.seqs), events.agent_events, tree_size, unsealed, files, size,
                        time.perf_counter() - started, clock.laps)


def _sealed_head(reader, agent, since, until, wait_seconds: float) -> tuple[collect.StoredCheckpoint, int]:
    """The latest checkpoint and how many of the window's events it leaves unsealed, waiting up to
    ``wait_seconds`` for a checkpoint that seals them all (a collector seals on its own clock)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            head = collect.head_checkpoint(reader)
            unsealed = collect.unsealed_count(reader, agent, since, until, head.checkpoint.tree_size)
        except collect.StoreError:
            if time.monotonic() >= deadline:
                raise
            head, unsealed = None, 1
        if head is not None and (not unsealed or time.monotonic() >= deadline):
            return head, unsealed
        time.sleep(0.25)


# --- proofs --------------------------------------------------------------------------------------


def _write_proofs(staging: Path, events: MemberEvents, leaves: list[bytes], head: collect.StoredCheckpoint, reader):
    """Check every member's leaf against the log, then write the multi-leaf and consistency proofs."""
    not_disclosed: dict[str, str] = {}
    # The members' leaves are the hashes of the bytes written to the bundle (``known`` above), so
    # the multi-proof's root check below is also the check that those bytes are the logged ones.
    for seq in events.seqs:
        if seq in events.leaves:
            if seq in events.withheld:
                not_disclosed[str(seq)] = leaves[seq].hex()
        else:
            tomb = events.erased[seq]["leaf_hash"]
            if leaves[seq] != tomb:
                raise collect.StoreError(f"the tombstone of seq {seq} does not match the log: run govtrace verify-store")
            not_disclosed[str(seq)] = tomb.hex()
    if events.seqs:
        proof = build_multi_proof(leaves, events.seqs, head.note).to_dict()
    else:
        proof = {"type": "govtrace/multi-inclusion-proof/v1", "tree_size": head.checkpoint.tree_size, "seqs": [],
                 "hashes": [], "checkpoint": head.note}
    proof["leaf_hashes"] = not_disclosed
    layout.write_json(staging / layout.PROOF, proof)
    anchor = collect.anchor_checkpoint(reader, events.seqs[0]) if events.seqs else None
    consistency: list[bytes] = []
    if anchor is not None:
        consistency = merkle.consistency_proof_from_parts(anchor.frontier, leaves[anchor.checkpoint.tree_size:])
        merkle.verify_consistency(anchor.checkpoint.tree_size, head.checkpoint.tree_size, anchor.checkpoint.root_hash,
                                  head.checkpoint.root_hash, consistency)
    layout.write_json(staging / layout.CHECKPOINTS, {
        "head": {"seq_no": head.seq_no, "note": head.note},
        "anchor": None if anchor is None else {"seq_no": anchor.seq_no, "note": anchor.note},
        "consistency": [h.hex() for h in consistency],
        "statement": "head: the checkpoint every event is proven against; anchor: the last checkpoint sealed before "
                     "the first event, with an RFC 9162 consistency proof to the head (the log only grew)",
    })
    return (None if anchor is None else anchor.checkpoint), (None if anchor is None else anchor.seq_no)


# --- documents -----------------------------------------------------------------------------------


def _redactions(profile: str, events: MemberEvents, log: list[dict[str, Any]], head) -> dict[str, Any]:
    sealed = sealed_retention(head)
    count = 0 if sealed is None else sealed[0]
    return {
        "profile": profile,
        "description": PROFILES[profile],
        "withheld": [{"seq": s, "erased": p} for s, p in sorted(events.withheld.items())],
        "erased": [{"seq": s, "retention_event_no": e["event_no"], "data_class": e["data_class"]}
                   for s, e in sorted(events.erased.items())],
        "retention_log": {"entries": [r["entry"] for r in log[:count]], "sealed_entries": count,
                          "statement": "the retention log up to what the head checkpoint signs: every deletion and "
                                       "legal hold, hash-chained"},
    }


def _write_documents(staging: Path, facts: dict[str, Any], analysis: dict[str, Any]) -> None:
    completeness_doc = json.loads((staging / layout.COMPLETENESS).read_text())
    redactions_doc = json.loads((staging / layout.REDACTIONS).read_text())
    (staging / layout.REPORT_HTML).write_text(report.readiness_html(
        facts, analysis["readiness"], analysis["figures"], completeness_doc, redactions_doc, analysis["policies"],
        analysis["registry"]))
    (staging / layout.VERIFY_MD).write_text(report.verify_md(facts))
    digests = {f"data/{t}.parquet": layout.sha256_file(staging / "data" / f"{t}.parquet") for t in analysis["tables"]}
    digests[layout.EVENTS] = layout.sha256_file(staging / layout.EVENTS)
    evidence = {q: [(path, digests[path]) for path in (f"data/{T.ANSWER_TABLES[q][0]}.parquet", layout.EVENTS)
                    if path in digests] for q in QUESTIONS}
    (staging / layout.OSCAL).write_bytes(oscal.build(
        bundle_id=facts["bundle_id"], agent=facts["agent"], since=datetime.fromisoformat(facts["since"]),
        until=datetime.fromisoformat(facts["until"]), created=datetime.fromisoformat(facts["created_at"]),
        answers=analysis["readiness"]["answers"], figures=analysis["figures"], evidence=evidence,
        registry_entry=analysis["registry"].get("entry")))
    problems = oscal.validate((staging / layout.OSCAL).read_bytes())
    if problems:
        raise ExportError("the OSCAL document does not validate: " + "; ".join(problems))


def _seal(staging: Path, facts: dict[str, Any], signer: Signer, events: MemberEvents, created: datetime) -> int:
    """Manifest, SHA256SUMS and the signed Statement over every file; returns the number of files."""
    listed = {name: layout.sha256_file(staging / name) for name in layout.list_files(staging)}
    layout.write_json(staging / layout.MANIFEST, {
        "type": "govtrace/evidence-bundle/v1", **facts,
        "counts": {"events": len(events.seqs), "agent_events": events.agent_events,
                   "withheld": len(events.withheld), "erased": len(events.erased)},
        "files": [{"path": n, "sha256": d, "bytes": (staging / n).stat().st_size, "media_type": layout.media_type(n)}
                  for n, d in sorted(listed.items())],
    })
    listed[layout.MANIFEST] = layout.sha256_file(staging / layout.MANIFEST)
    (staging / layout.SUMS).write_text("".join(f"{d}  {n}\n" for n, d in sorted(listed.items())))
    listed[layout.SUMS] = layout.sha256_file(staging / layout.SUMS)
    predicate = {
        "exportDefinition": {
            "exportType": "https://govtrace.dev/evidence-bundle/v1",
            "parameters": {"agent_id": facts["agent"], "since": facts["since"], "until": facts["until"]},
            "resolvedInputs": [{"name": f"checkpoint {facts['origin']} {facts['tree_size']}",
                                "digest": {"sha256": _head_note_digest(staging)}}],
        },
        "runDetails": {"exporter": {"id": "govtrace", "version": facts["generator_version"]},
                       "metadata": {"invocationId": facts["bundle_id"], "startedOn": created.isoformat(),
                                    "finishedOn": datetime.now(UTC).isoformat(), "exportedBy": facts["exported_by"]}},
    }
    envelope = dsse.sign_envelope(dsse.statement(listed, predicate), signer)
    layout.write_json(staging / layout.ENVELOPE, envelope)
    return len(listed) + 1


def _head_note_digest(staging: Path) -> str:
    import hashlib

    note = json.loads((staging / layout.CHECKPOINTS).read_text())["head"]["note"]
    return hashlib.sha256(note.encode()).hexdigest()


# --- helpers -------------------------------------------------------------------------------------


def _record_access(reader, agent, since, until, bundle_id, exported_by, role) -> None:
    """Every export is a read by a person: record it before reading, or do not export."""
    target = f"evidence bundle: agent {agent} [{since.isoformat()}, {until.isoformat()})"
    detail = json.dumps({"bundle_id": bundle_id, "exported_by": exported_by})
    try:
        if hasattr(reader, "record_access"):
            reader.record_access("export", target, detail)
            return
        con = getattr(reader, "con", None)
        if con is None:
            raise ExportError(f"{reader.source} offers no way to record the export in the access log")
        cursor = con.cursor()
        try:
            cursor.execute("INSERT INTO access_log VALUES (now(), ?, ?, 'export', ?, ?)",
                           [exported_by, role, target, detail])
        finally:
            cursor.close()
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to record means no export
        raise ExportError(f"cannot record this export in the store's access log ({exc}); export through a running "
                          "collector (--server) or from a database file opened read-write") from None


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _version() -> str:
    try:
        return metadata.version("govtrace")
    except metadata.PackageNotFoundError:
        return "unknown"


class _Clock:
    def __init__(self, progress: Callable[[str], None] | None) -> None:
        self.progress = progress
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now
        if self.progress is not None:
            self.progress(f"{name} ({self.laps[name]:.1f} s)")
