"""``verify_bundle``: check an evidence bundle offline, with nothing but a pinned key fingerprint.

Every check runs, whatever failed before it, so that one tampered file yields the whole picture:
the digest that no longer matches and, behind it, the proof or the number it breaks. A check that
cannot even read its input fails with that reason instead of crashing. Only ``fail`` makes the
bundle invalid; ``warn`` says what the bundle cannot vouch for (withheld records, policy text not
supplied, a different govtrace version recomputing the answers).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from govtrace.analytics.evidence import completeness, dsse, layout, oscal, policies, registry_entry
from govtrace.analytics.evidence import tables as T
from govtrace.collector.ledger import merkle
from govtrace.collector.ledger.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from govtrace.collector.ledger.leaves import arrow_leaf_hashes
from govtrace.collector.ledger.note import NoteError
from govtrace.collector.ledger.proofs import MultiProof, verify_multi_proof
from govtrace.collector.ledger.retention_log import GENESIS, chain_hash
from govtrace.collector.ledger.retention_log import sealed as sealed_retention
from govtrace.collector.ledger.signing import (
    KeyFileError,
    PublicKey,
    normalize_fingerprint,
    open_rotation_statement,
    trusted_keys,
)

PASS, FAIL, WARN = "pass", "fail", "warn"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass | fail | warn
    detail: str


@dataclass
class BundleVerification:
    path: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def table(self) -> str:
        width = max((len(c.name) for c in self.checks), default=5)
        lines = [f"{'check':<{width}}  result  detail"]
        lines += [f"{c.name:<{width}}  {c.status.upper():<6}  {c.detail}" for c in self.checks]
        verdict = "VALID" if self.ok else f"INVALID: {len(self.failures)} check(s) failed"
        return "\n".join(lines + ["", f"bundle {self.path}: {verdict}"])

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ok": self.ok,
                "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks]}


def verify_bundle(path: str | Path, key_fingerprint: str,
                  progress: Callable[[str], None] | None = None) -> BundleVerification:
    result = BundleVerification(str(path))
    try:
        with layout.opened(path) as root:
            _Verifier(root, key_fingerprint, result, progress).run()
    except layout.BundleError as exc:
        result.checks.append(Check("bundle", FAIL, str(exc)))
    return result


class _Skip(Exception):
    """A check cannot run because an earlier one found nothing to work with (already reported)."""


class _Verifier:
    def __init__(self, root: Path, fingerprint: str, result: BundleVerification,
                 progress: Callable[[str], None] | None) -> None:
        self.root = root
        self.fingerprint = fingerprint
        self.result = result
        self.progress = progress
        self.keys: list[PublicKey] = []
        self.retired: dict[str, int] = {}  # fingerprint -> unix time its key was rotated away
        self.head: Checkpoint | None = None
        self.anchor: Checkpoint | None = None
        self.events: pa.Table | None = None
        self.proof: dict[str, Any] | None = None
        self.subjects: dict[str, str] | None = None  # path -> sha256 from the verified Statement
        self.con: duckdb.DuckDBPyConnection | None = None
        self._blocks: list[T.Block] | None = None

    def run(self) -> None:
        steps = [
            ("files", self.files), ("key", self.key), ("signature", self.signature), ("digests", self.digests),
            ("checkpoints", self.checkpoints), ("events", self.read_events), ("inclusion proof", self.inclusion),
            ("sequence", self.sequence), ("typed columns", self.typed_columns), ("tables", self.tables),
            ("figures", self.figures), ("readiness", self.readiness), ("report", self.report),
            ("oscal", self.oscal), ("registry", self.registry), ("policies", self.policies),
            ("completeness", self.completeness), ("redactions", self.redactions),
        ]
        try:
            for name, step in steps:
                if self.progress is not None:
                    self.progress(name)
                try:
                    status, detail = step()
                except _Skip as exc:
                    status, detail = FAIL, f"not checked: {exc}"
                except Exception as exc:  # noqa: BLE001 - a malformed bundle must fail, never crash
                    status, detail = FAIL, f"{type(exc).__name__}: {exc}"
                self.result.checks.append(Check(name, status, detail))
        finally:
            if self.con is not None:
                self.con.close()

    # --- helpers ---------------------------------------------------------------------------------

    def json(self, name: str) -> Any:
        try:
            return json.loads((self.root / name).read_text())
        except FileNotFoundError:
            raise _Skip(f"{name} is missing") from None
        except ValueError as exc:
            raise _Skip(f"{name} is not valid JSON ({exc})") from None

    def local(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with the bundle's views, for rerunning queries.sql."""
        if self.con is None:
            if not (self.root / layout.EVENTS).exists():
                raise _Skip(f"{layout.EVENTS} is missing")
            self.con = duckdb.connect()
            T.run_setup(self.con, str(self.root))
        return self.con

    # --- checks ----------------------------------------------------------------------------------

    def files(self) -> tuple[str, str]:
        present = set(layout.list_files(self.root))
        missing = [f for f in layout.REQUIRED if f not in present]
        if missing:
            return FAIL, f"missing: {', '.join(missing)}"
        return PASS, f"{len(present)} files, every required one present"

    def key(self) -> tuple[str, str]:
        pinned = normalize_fingerprint(self.fingerprint)
        doc = self.json(layout.KEYS)
        keys = []
        for text in doc.get("verifier_keys") or []:
            try:
                keys.append(PublicKey.from_verifier_key(text))
            except KeyFileError:
                continue
        found = [k for k in keys if k.fingerprint == pinned]
        if not found:
            carried = ", ".join(k.fingerprint[:16] + "…" for k in keys) or "none"
            return FAIL, (f"no key in the bundle has the pinned fingerprint {pinned[:16]}…: it comes from another "
                          f"ledger or was signed by another key (keys carried: {carried})")
        self.keys = trusted_keys(found, doc.get("rotations") or [])
        self.retired = _retirements(doc.get("rotations") or [])
        linked = len(self.keys) - 1
        return PASS, f"pinned key {pinned[:16]}… found" + (f", {linked} more trusted by rotation" if linked else "")

    def signature(self) -> tuple[str, str]:
        if not self.keys:
            raise _Skip("no trusted key")
        opened = dsse.open_envelope(self.json(layout.ENVELOPE), self.keys)
        self.subjects = opened.subjects
        when = self.retired.get(opened.signed_by.fingerprint)
        finished = (opened.statement.get("predicate") or {}).get("runDetails", {}).get("metadata", {}).get("finishedOn")
        if when is not None and finished and datetime.fromisoformat(finished).timestamp() > when:
            return FAIL, (f"signed at {finished} by key {opened.signed_by.fingerprint[:16]}…, which was retired by "
                          "rotation before then")
        return PASS, (f"DSSE envelope over an in-toto Statement of {len(opened.subjects)} files, signed by "
                      f"{opened.signed_by.fingerprint[:16]}…")

    def digests(self) -> tuple[str, str]:
        subjects = self.subjects
        if subjects is None:
            raise _Skip("no verified Statement")
        present = set(layout.list_files(self.root)) - {layout.ENVELOPE}
        changed = sorted(n for n in present & set(subjects) if layout.sha256_file(self.root / n) != subjects[n])
        added, missing = sorted(present - set(subjects)), sorted(set(subjects) - present)
        problems = []
        if changed:
            problems.append(f"SHA-256 differs from the signed Statement (changed after signing): {', '.join(changed)}")
        if added:
            problems.append(f"not in the signed Statement (added): {', '.join(added)}")
        if missing:
            problems.append(f"in the signed Statement but missing: {', '.join(missing)}")
        sums = {}
        if (self.root / layout.SUMS).exists():
            for line in (self.root / layout.SUMS).read_text().splitlines():
                digest, _, name = line.partition("  ")
                sums[name] = digest
        disagree = sorted(n for n, d in sums.items() if subjects.get(n) != d)
        if disagree:
            problems.append(f"SHA256SUMS disagrees with the Statement on {', '.join(disagree[:5])}")
        try:
            listed = {f["path"]: f["sha256"] for f in (self.json(layout.MANIFEST).get("files") or [])}
        except (_Skip, KeyError, TypeError, AttributeError) as exc:
            problems.append(f"manifest.json cannot be read ({exc})")
            listed = {}
        disagree = sorted(n for n, d in listed.items() if subjects.get(n) != d)
        if disagree:
            problems.append(f"manifest.json disagrees with the Statement on {', '.join(disagree[:5])}")
        if problems:
            return FAIL, "; ".join(problems)
        return PASS, f"every file's SHA-256 matches the signed Statement ({len(subjects)} files)"

    def checkpoints(self) -> tuple[str, str]:
        if not self.keys:
            raise _Skip("no trusted key")
        doc = self.json(layout.CHECKPOINTS)
        try:
            self.head, signers = open_checkpoint(doc["head"]["note"], self.keys)
        except CheckpointError as exc:
            return FAIL, f"the head checkpoint is not signed by a trusted key: {exc}"
        for key in signers:
            when = self.retired.get(key.fingerprint)
            if when is not None and self.head.time is not None and self.head.time > when:
                return FAIL, f"the head checkpoint was signed at {self.head.time} by a key retired at {when}"
        detail = f"head checkpoint {doc['head']['seq_no']}: {self.head.origin} size {self.head.tree_size}"
        if doc.get("anchor"):
            try:
                self.anchor, _ = open_checkpoint(doc["anchor"]["note"], self.keys)
            except CheckpointError as exc:
                return FAIL, f"the anchor checkpoint is not signed by a trusted key: {exc}"
            a, h = self.anchor, self.head
            if a.origin != h.origin:
                return FAIL, f"anchor and head are checkpoints of different logs ({a.origin!r}, {h.origin!r})"
            if (a.dropped or 0) > (h.dropped or 0) or (a.time or 0) > (h.time or 0):
                return FAIL, "the head checkpoint's dropped counter or time is below the anchor's"
            try:
                merkle.verify_consistency(a.tree_size, h.tree_size, a.root_hash, h.root_hash,
                                          [bytes.fromhex(x) for x in doc.get("consistency") or []])
            except (merkle.ProofError, ValueError) as exc:
                return FAIL, f"the log at the head is not an extension of the log at the anchor: {exc}"
            detail += f"; consistent with anchor checkpoint {doc['anchor']['seq_no']} (size {a.tree_size})"
        manifest = self.json(layout.MANIFEST)
        if (manifest.get("tree_size"), manifest.get("root"), manifest.get("origin")) != (
                self.head.tree_size, self.head.root_hash.hex(), self.head.origin):
            return FAIL, "manifest.json names a different log, size or root than the signed head checkpoint"
        return PASS, detail

    def read_events(self) -> tuple[str, str]:
        try:
            self.events = pq.read_table(self.root / layout.EVENTS)
        except FileNotFoundError:
            raise _Skip(f"{layout.EVENTS} is missing") from None
        except (pa.ArrowInvalid, OSError) as exc:
            self.events = None
            return FAIL, f"{layout.EVENTS} cannot be read as Parquet: {exc}"
        self.proof = self.json(layout.PROOF)
        t = self.events
        for column in ("seq", "record", "included_as", "disclosure"):
            if column not in t.column_names:
                return FAIL, f"{layout.EVENTS} has no column {column}"
        seqs = t.column("seq").to_pylist()
        problems = []
        bad_order = next((i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]), None)
        if bad_order is not None:
            problems.append(f"seqs are not strictly increasing at row {bad_order} ({seqs[bad_order - 1]} then "
                            f"{seqs[bad_order]}): rows were reordered or repeated")
        if seqs != list(self.proof.get("seqs") or []):
            problems.append(f"events.parquet holds {len(seqs)} events but the proof covers "
                            f"{len(self.proof.get('seqs') or [])}, or at other seqs: events were added, dropped or "
                            "reordered")
        disclosure = t.column("disclosure").to_pylist()
        records_null = t.column("record").is_null().to_pylist()
        hidden = {str(s) for s, d in zip(seqs, disclosure, strict=True) if d != "full"}
        if hidden != set((self.proof.get("leaf_hashes") or {}).keys()):
            problems.append("the events marked withheld or erased are not exactly those whose leaf hash the proof "
                            "carries")
        if any(n != (d != "full") for n, d in zip(records_null, disclosure, strict=True)):
            problems.append("a disclosed event has no record, or a withheld one still has its record")
        if problems:
            return FAIL, "; ".join(problems)
        roles = t.column("included_as").to_pylist()
        return PASS, (f"{len(seqs)} events ({roles.count('subject')} of the agent), "
                      f"{disclosure.count('full')} with their bytes")

    def inclusion(self) -> tuple[str, str]:
        if self.events is None or self.proof is None or not self.keys:
            raise _Skip("no events, proof or trusted key")
        proof = MultiProof.from_dict(self.proof)
        head_note = self.json(layout.CHECKPOINTS)["head"]["note"]
        if proof.checkpoint != head_note:
            return FAIL, "the proof is against another checkpoint than the bundle's head"
        if not proof.seqs:
            return WARN, "the bundle holds no events: nothing to prove"
        hidden = {int(k): bytes.fromhex(v) for k, v in (self.proof.get("leaf_hashes") or {}).items()}
        records = self.events.column("record").combine_chunks()
        seqs = self.events.column("seq").to_pylist()
        if records.null_count:
            leaves = [merkle.leaf_hash(r.encode()) if r is not None else hidden[s]
                      for s, r in zip(seqs, records.to_pylist(), strict=True)]
        else:
            leaves = arrow_leaf_hashes(records)
        try:
            cp = verify_multi_proof(leaves, proof, self.keys)
        except (merkle.ProofError, KeyError) as exc:
            return FAIL, (f"the events do not rebuild the signed root: {exc} (an event was edited, dropped, added "
                          "or reordered)")
        return PASS, (f"{len(seqs)} events rebuild the root of the signed checkpoint of {cp.tree_size} events with "
                      f"{len(proof.hashes)} proof hashes ({len(hidden)} by leaf hash only)")

    def sequence(self) -> tuple[str, str]:
        if self.events is None or self.head is None:
            raise _Skip("no events or head checkpoint")
        seqs = self.events.column("seq").to_pylist()
        if seqs and not (0 <= seqs[0] and seqs[-1] < self.head.tree_size):
            return FAIL, f"seqs {seqs[0]}..{seqs[-1]} fall outside the signed log of {self.head.tree_size} events"
        doc = self.json(layout.COMPLETENESS)
        if (doc.get("sequence") or {}).get("gaps"):
            return FAIL, "the exporter found gaps in the log's sequence"
        unsealed = (doc.get("unsealed") or {}).get("events") or 0
        span = f"seqs {seqs[0]}..{seqs[-1]}" if seqs else "no seqs"
        detail = (f"{len(seqs)} events at {span}, strictly increasing, inside a signed log whose positions "
                  f"0..{self.head.tree_size - 1} are gap-free by construction")
        if unsealed:
            return WARN, detail + f"; {unsealed} later events of the agent were not sealed yet and are not included"
        return PASS, detail

    def typed_columns(self) -> tuple[str, str]:
        from govtrace.collector.column_check import same_value
        from govtrace.collector.normalize import derive_columns
        from govtrace.collector.schema import DERIVED_COLUMNS

        if self.events is None:
            raise _Skip("no events")
        t = self.events
        columns = [c for c in DERIVED_COLUMNS if c in t.column_names]
        mismatches, checked, first = 0, 0, []
        for batch in t.to_batches(max_chunksize=16_384):
            data = {c: _comparable(batch.column(batch.schema.get_field_index(c))) for c in columns}
            records = batch.column(batch.schema.get_field_index("record")).to_pylist()
            seqs = batch.column(batch.schema.get_field_index("seq")).to_pylist()
            for i, text in enumerate(records):
                if text is None:
                    continue
                derived = derive_columns(orjson.loads(text))
                checked += 1
                for c in columns:
                    if not same_value(data[c][i], derived.get(c)):
                        mismatches += 1
                        if len(first) < 5:
                            first.append(f"seq {seqs[i]} column {c} is {data[c][i]!r}, its record says {derived.get(c)!r}")
        withheld = t.column("disclosure").to_pylist().count("withheld")
        if mismatches:
            return FAIL, f"{mismatches} typed cells differ from their records: " + "; ".join(first)
        detail = f"{checked} events: every typed column is what its record says"
        if withheld:
            return WARN, detail + f"; {withheld} withheld events' columns cannot be re-derived (no bytes)"
        return PASS, detail

    def tables(self) -> tuple[str, str]:
        con = self.local()
        blocks = self.blocks()
        problems, names = [], []
        for b in (b for b in blocks if b.kind == "table"):
            names.append(b.name)
            path = self.root / "data" / f"{b.name}.parquet"
            if not path.exists():
                problems.append(f"data/{b.name}.parquet is missing")
                continue
            try:
                con.execute(b.sql)
                diff = _table_difference(con, b.name, str(path))
            except duckdb.Error as exc:
                diff = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            if diff:
                problems.append(f"data/{b.name}.parquet: {diff}")
        shipped = {p.stem for p in (self.root / "data").glob("*.parquet")} - {"events"}
        for extra in sorted(shipped - set(names)):
            problems.append(f"data/{extra}.parquet is made by no query in queries.sql")
        if problems:
            return FAIL, "; ".join(problems)
        return PASS, f"{len(names)} tables rebuilt from events.parquet by queries.sql equal the shipped Parquet"

    def figures(self) -> tuple[str, str]:
        con = self.local()
        expected = self.json(layout.FIGURES)
        problems, n = [], 0
        for b in (b for b in self.blocks() if b.kind == "figure"):
            n += 1
            diff = T.same_figure(expected.get(b.name) or {}, T.figure(con, b.sql))
            problems += [f"{b.name}.{d}" for d in diff]
        for name in sorted(set(expected) - {b.name for b in self.blocks() if b.kind == "figure"}):
            problems.append(f"figures.json holds {name}, which no query in queries.sql makes")
        if problems:
            return FAIL, "; ".join(problems[:8])
        return PASS, f"{n} figures ({sum(len(v) for v in expected.values())} numbers) reproduced by queries.sql"

    def readiness(self) -> tuple[str, str]:
        from govtrace.analytics.costs import load_prices
        from govtrace.analytics.evidence.analysis import QUESTIONS, ask_question
        from govtrace.analytics.reader import ConnectionReader
        from govtrace.analytics.readiness import ask

        con = self.local()
        doc = self.json(layout.READINESS)
        manifest = self.json(layout.MANIFEST)
        prices = load_prices(self.root / layout.PRICES)
        since, until = datetime.fromisoformat(doc["since"]), datetime.fromisoformat(doc["until"])
        now = datetime.fromisoformat(doc["now"])
        reader = ConnectionReader(con, source="bundle")
        problems = []
        for q in QUESTIONS:
            answer = ask_question(ask, q, reader, doc["agent"], since, until, doc.get("envelope"), prices, now)
            stated = (doc.get("answers") or {}).get(q) or {}
            again = {"status": answer.status, "verdict": answer.verdict, "coverage": list(answer.coverage),
                     "completeness": dict(getattr(answer, "completeness", {}) or {}), "rows": len(answer.rows)}
            for key, value in again.items():
                if stated.get(key) != value:
                    problems.append(f"{q}.{key}: the report says {stated.get(key)!r}, recomputed {value!r}")
        if problems:
            same_version = manifest.get("generator_version") == _version()
            status = FAIL if same_version else WARN
            note = "" if same_version else (f" (made by govtrace {manifest.get('generator_version')}, checked with "
                                            f"{_version()}: the answers' wording may have changed)")
            return status, "; ".join(problems[:5]) + note
        return PASS, f"the {len(QUESTIONS)} readiness answers recomputed from the bundle's events say the same"

    def report(self) -> tuple[str, str]:
        text = (self.root / layout.REPORT_HTML).read_text()
        doc = self.json(layout.READINESS)
        missing = [q for q, a in (doc.get("answers") or {}).items() if html.escape(a["verdict"]) not in text]
        if missing:
            return FAIL, f"the HTML report does not state the answer(s) to {', '.join(missing)} as readiness.json does"
        return PASS, "the HTML report states every readiness answer as readiness.json does"

    def oscal(self) -> tuple[str, str]:
        data = (self.root / layout.OSCAL).read_bytes()
        problems = oscal.validate(data)
        if problems:
            return FAIL, "; ".join(problems)
        for href, digest in oscal.evidence_refs(data):
            path = self.root / href
            if not path.is_file():
                problems.append(f"relevant evidence {href} is not in the bundle")
            elif layout.sha256_file(path) != digest:
                problems.append(f"relevant evidence {href} has another SHA-256 than the document states")
        figures = self.json(layout.FIGURES)
        for name, value in _oscal_props(data):
            table, _, key = name.partition(".")
            if table in figures and key in figures[table] and str(figures[table][key]) != value:
                problems.append(f"property {name} = {value} but the figure is {figures[table][key]}")
        if problems:
            return FAIL, "; ".join(problems[:5])
        return PASS, "valid OSCAL assessment-results (trestle models and validators, allowed values), evidence " \
                     "digests and figures agree"

    def registry(self) -> tuple[str, str]:
        if self.events is None:
            raise _Skip("no events")
        doc = self.json(layout.REGISTRY)
        t = self.events.filter(pc.equal(self.events.column("included_as"), "registry"))
        loads = [(s, r) for s, r in zip(t.column("seq").to_pylist(), t.column("record").to_pylist(), strict=True)]
        if any(r is None for _, r in loads):
            return FAIL, "a registry load event is withheld: the entry cannot be checked"
        agent = self.json(layout.MANIFEST).get("agent")
        again = registry_entry.from_records(agent, loads)
        if again != doc:
            return FAIL, "registry/agent.json differs from the registry load events the bundle proves"
        if not doc.get("recorded"):
            return WARN, doc.get("note") or "no registry load recorded"
        return PASS, f"the agent's entry matches {len(loads)} proven registry load event(s)"

    def policies(self) -> tuple[str, str]:
        con = self.local()
        doc = self.json(layout.POLICY_INDEX)
        problems = policies.recheck(self.root, doc)
        con.execute(next(b.sql for b in self.blocks() if b.name == "decisions"))
        in_force = con.sql(policies.IN_FORCE_SQL).to_arrow_table().to_pylist()
        stated = [{k: r[k] for k in ("policy_id", "policy_version", "decisions")} for r in doc.get("in_force") or []]
        if stated != in_force:
            problems.append("the policy versions in force differ from those the decisions name")
        if problems:
            return FAIL, "; ".join(problems)
        if doc.get("missing"):
            return WARN, doc.get("statement", "")
        return PASS, f"{len(doc.get('files') or [])} policy file(s) match the {len(in_force)} version(s) that decided"

    def completeness(self) -> tuple[str, str]:
        if self.head is None:
            raise _Skip("no verified head checkpoint")
        doc = self.json(layout.COMPLETENESS)
        problems = completeness.check(doc, self.head, self.anchor)
        if problems:
            return FAIL, "; ".join(problems)
        collector = doc.get("collector") or {}
        return PASS, (f"signed drop counters agree ({doc['dropped']['during']} dropped in the span); collector reports "
                      f"{len(collector.get('downtime') or [])} downtime interval(s), "
                      f"{collector.get('spans_rejected', 0)} rejected spans (operator-reported)")

    def redactions(self) -> tuple[str, str]:
        if self.events is None or self.head is None:
            raise _Skip("no events or head checkpoint")
        doc = self.json(layout.REDACTIONS)
        seqs = self.events.column("seq").to_pylist()
        disclosure = self.events.column("disclosure").to_pylist()
        problems = []
        for kind in ("withheld", "erased"):
            listed = sorted(int(e["seq"]) for e in doc.get(kind) or [])
            actual = [s for s, d in zip(seqs, disclosure, strict=True) if d == kind]
            if listed != actual:
                problems.append(f"redactions.json lists other {kind} events than events.parquet marks")
        log = doc.get("retention_log") or {}
        entries = log.get("entries") or []
        signed = sealed_retention(self.head)
        head_hash = GENESIS
        for text in entries:
            head_hash = chain_hash(head_hash, text)
        if signed is None:
            if entries:
                problems.append("retention log entries are listed but the head checkpoint signs none")
        elif (len(entries), head_hash) != signed:
            problems.append("the retention log entries do not hash to the head the head checkpoint signs")
        deletions = {i for i, text in enumerate(entries) if json.loads(text).get("action") == "delete"}
        for e in doc.get("erased") or []:
            if e.get("retention_event_no") not in deletions:
                problems.append(f"erased seq {e.get('seq')} names no deletion in the signed retention log")
        if problems:
            return FAIL, "; ".join(problems)
        detail = (f"profile {doc.get('profile')}: {len(doc.get('withheld') or [])} withheld, "
                  f"{len(doc.get('erased') or [])} erased by retention; retention log of {len(entries)} entries matches "
                  "the signed head")
        return (WARN if doc.get("withheld") else PASS), detail

    def blocks(self) -> list[T.Block]:
        if self._blocks is None:
            path = self.root / layout.QUERIES
            if not path.exists():
                raise _Skip(f"{layout.QUERIES} is missing")
            self._blocks = T.parse(path.read_text())
        return self._blocks


def _retirements(statements: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for statement in statements:
        try:
            r = open_rotation_statement(statement)
        except NoteError:
            continue  # an invalid statement retires nothing (and trusts nothing)
        out[r.old.fingerprint] = min(r.time, out.get(r.old.fingerprint, r.time))
    return out


def _table_difference(con, name: str, path: str) -> str | None:
    """None when table ``name`` and the Parquet file hold the same rows (doubles to 9 decimals)."""
    rebuilt = con.sql(f'SELECT * FROM "{name}"')
    shipped = con.sql(f"SELECT * FROM read_parquet('{path.replace(chr(39), chr(39) * 2)}')")
    if rebuilt.columns != shipped.columns:
        return f"columns {shipped.columns} differ from the query's {rebuilt.columns}"
    cols = ", ".join(f'round("{c}", 9) AS "{c}"' if str(t) in ("DOUBLE", "FLOAT") else f'"{c}"'
                     for c, t in zip(rebuilt.columns, rebuilt.types, strict=True))
    quoted = path.replace("'", "''")
    a = con.sql(f"SELECT count(*) FROM (SELECT {cols} FROM \"{name}\" EXCEPT ALL "
                f"SELECT {cols} FROM read_parquet('{quoted}'))").fetchall()[0][0]
    b = con.sql(f"SELECT count(*) FROM (SELECT {cols} FROM read_parquet('{quoted}') EXCEPT ALL "
                f"SELECT {cols} FROM \"{name}\")").fetchall()[0][0]
    if a or b:
        return f"{b} row(s) not produced by the query, {a} row(s) of the query missing"
    return None


def _oscal_props(data: bytes) -> list[tuple[str, str]]:
    body = json.loads(data)["assessment-results"]
    return [(p["name"], p["value"]) for r in body.get("results") or [] for o in r.get("observations") or []
            for p in o.get("props") or [] if "." in p["name"]]


def _comparable(column: pa.Array) -> list[Any]:
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    return column.to_pylist()


def _version() -> str:
    try:
        return metadata.version("govtrace")
    except metadata.PackageNotFoundError:
        return "unknown"
