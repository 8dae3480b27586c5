"""Evidence bundles: exported from a real collector's store, verified offline with only a pinned key
fingerprint, and failing with a clear reason whatever one tampers with."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from govtrace.analytics.evidence import dsse, export_bundle, layout
from govtrace.analytics.evidence.verify import verify_bundle
from govtrace.analytics.reader import CollectorReader, ConnectionReader
from govtrace.collector.ledger.signing import KeyStore, Signer

ROOT = Path(__file__).resolve().parent.parent
FLEET_POLICY = ROOT / "instrumentation" / "policy" / "examples" / "fleet.yaml"
REGISTRY = ROOT / "analytics" / "examples" / "agents.yaml"
AGENT = "finance-agent"


# --- a real store, and what someone holding a bundle (but not the key) could do to it -------------


@dataclass
class Store:
    db: Path
    signer: Signer

    @property
    def fingerprint(self) -> str:
        return self.signer.public_key.fingerprint


def fill_store(directory: Path, **settings) -> Store:
    """A collector on free ports fed through its real receivers: a registry load, the governed demo
    fleet, and one tool call with captured content; closed afterwards, which seals the log."""
    from govtrace.analytics.registry import load_registry, record_load
    from govtrace.collector.config import load_config
    from govtrace.collector.server import Collector
    from govtrace.instrumentation.demo_fleet import Fleet
    from govtrace.instrumentation.telemetry import AgentTelemetry

    db = directory / "govtrace.duckdb"
    config = load_config(None, {"db": str(db), "grpc": "127.0.0.1:0", "http": "127.0.0.1:0", "decode_workers": 0,
                                **settings}, environ={})
    with Collector(config) as collector:
        record_load(load_registry(REGISTRY), server=collector.http_url)
        fleet = Fleet(endpoint=f"http://{collector.grpc_endpoint}")
        fleet.run_once()
        fleet.flush()
        fleet.shutdown()
        agent = AgentTelemetry(AGENT, name="Finance agent", credential="key-finance-agent",
                               endpoint=f"http://{collector.grpc_endpoint}")
        with agent.task("answer a supplier", acting_for="carol@acme.example"):
            with agent.tool_call("lookup_invoice", arguments={"invoice": "INV-7"}, capture_content=True) as call:
                call.record_data(resource="erp://invoices", operation="read", classification="confidential",
                                 record_count=1)
        agent.flush()
        agent.shutdown()
    return Store(db, KeyStore(str(db) + ".keys").current())


def export(store: Store, out: Path, **options):
    con = duckdb.connect(str(store.db))
    try:
        now = datetime.now(UTC)
        return export_bundle(ConnectionReader(con, source=f"file {store.db}"), AGENT, now - timedelta(days=1),
                             now + timedelta(hours=1), out, signer=store.signer, policy_files=[FLEET_POLICY],
                             exported_by="auditor-test", **options)
    finally:
        con.close()


def copy_bundle(bundle: Path, where: Path) -> Path:
    target = where / f"copy-{len(list(where.glob('copy-*')))}"
    shutil.copytree(bundle, target)
    return target


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def rewrite_events(bundle: Path, change) -> None:
    path = bundle / layout.EVENTS
    pq.write_table(change(pq.read_table(path)), path, compression="zstd")


def reseal(bundle: Path, signer: Signer) -> None:
    """Recompute every digest (manifest, SHA256SUMS, Statement) and sign again with ``signer``:
    what someone who edited files would do next, with whatever key they hold."""
    def sha(name: str) -> str:
        return hashlib.sha256((bundle / name).read_bytes()).hexdigest()

    manifest = json.loads((bundle / layout.MANIFEST).read_text())
    for entry in manifest["files"]:
        entry["sha256"], entry["bytes"] = sha(entry["path"]), (bundle / entry["path"]).stat().st_size
    (bundle / layout.MANIFEST).write_text(json.dumps(manifest))
    names = [n for n in layout.list_files(bundle) if n not in (layout.ENVELOPE, layout.SUMS)]
    (bundle / layout.SUMS).write_text("".join(f"{sha(n)}  {n}\n" for n in names))
    predicate = json.loads(base64.b64decode(json.loads((bundle / layout.ENVELOPE).read_text())["payload"]))["predicate"]
    statement = dsse.statement({n: sha(n) for n in [*names, layout.SUMS]}, predicate)
    (bundle / layout.ENVELOPE).write_text(json.dumps(dsse.sign_envelope(statement, signer)))


def failed(result) -> dict[str, str]:
    return {c.name: c.detail for c in result.failures}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return fill_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def bundle(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "finance-agent"
    export(store, out)
    return out


# --- a valid bundle ----------------------------------------------------------------------------------


def test_a_bundle_from_a_real_collectors_store_verifies_offline_with_only_the_key_fingerprint(store, bundle):
    result = verify_bundle(bundle, store.fingerprint)
    assert result.ok, result.table()
    statuses = {c.name: c.status for c in result.checks}
    for name in ("signature", "digests", "checkpoints", "inclusion proof", "sequence", "typed columns", "tables",
                 "figures", "readiness", "oscal", "registry", "policies", "completeness"):
        assert statuses[name] == "pass", result.table()
    assert set(layout.REQUIRED) <= set(layout.list_files(bundle))
    figures = json.loads((bundle / layout.FIGURES).read_text())
    con = duckdb.connect(str(store.db), read_only=True)
    spans, tool_calls, denied = con.sql(
        "SELECT count(*), count(*) FILTER (WHERE operation = 'execute_tool'), "
        "count(*) FILTER (WHERE policy_effect = 'deny') FROM spans WHERE agent_id = $1", params=[AGENT]).fetchall()[0]
    con.close()
    assert figures["events"]["agent_events"] == spans and figures["events"]["registry_loads"] == 1
    assert figures["actions"]["tool_calls"] == tool_calls and figures["decisions"]["denied"] == denied > 0
    entry = json.loads((bundle / layout.REGISTRY).read_text())["entry"]
    assert entry["owner"] == "cfo-office@acme.example" and entry["envelope"]["per_task"] == 0.03


def test_the_export_is_recorded_in_the_access_log_with_the_bundle_id(store, bundle):
    bundle_id = json.loads((bundle / layout.MANIFEST).read_text())["bundle_id"]
    con = duckdb.connect(str(store.db), read_only=True)
    rows = con.sql("SELECT principal, action, target, detail FROM access_log WHERE action = 'export'").fetchall()
    con.close()
    assert any(p == "auditor-test" and AGENT in t and bundle_id in d for p, _, t, d in rows)


def test_the_signed_manifest_is_standard_dsse_that_securesystemslib_verifies(store, bundle):
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import SSlibKey

    envelope = Envelope.from_dict(json.loads((bundle / layout.ENVELOPE).read_text()))
    key = SSlibKey(store.fingerprint, "ed25519", "ed25519", {"public": store.signer.public_key.raw.hex()})
    assert store.fingerprint in envelope.verify([key], 1)
    statement = json.loads(envelope.pae().split(b" ", 4)[4])
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    names = {s["name"] for s in statement["subject"]}
    assert names == set(layout.list_files(bundle)) - {layout.ENVELOPE}


def test_the_oscal_document_passes_trestle_validate(bundle, tmp_path):
    trestle = Path(sys.executable).with_name("trestle")
    subprocess.run([trestle, "init"], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    target = tmp_path / "assessment-results" / "bundle"
    target.mkdir(parents=True)
    shutil.copyfile(bundle / layout.OSCAL, target / "assessment-results.json")
    result = subprocess.run([trestle, "validate", "-f", str(target / "assessment-results.json")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "VALID" in result.stdout, result.stdout + result.stderr


def test_queries_sql_runs_as_is_in_duckdb_from_the_bundle_directory_and_gives_the_figures(bundle):
    con = duckdb.connect()
    con.execute(f"SET file_search_path = '{bundle}'")
    last = con.execute((bundle / layout.QUERIES).read_text())  # the whole file, as the DuckDB shell would
    expected = json.loads((bundle / layout.FIGURES).read_text())
    assert dict(zip([d[0] for d in last.description], last.fetchall()[0], strict=True)) == expected["boundaries"]
    for table in ("actions", "decisions", "oversight", "delegation", "data_access", "costs"):
        shipped = pq.read_table(bundle / "data" / f"{table}.parquet")
        assert con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0] == shipped.num_rows


# --- tampering -----------------------------------------------------------------------------------------


def test_flipping_one_byte_in_any_file_fails_verification_and_names_each_file(store, bundle, tmp_path):
    # Each file's digest is checked on its own, so one bundle with a byte flipped in every file shows
    # that a flip in any one of them is caught and named (one verification instead of 27). The key
    # list and the envelope carry the trust itself, so each is flipped alone.
    copy = copy_bundle(bundle, tmp_path)
    names = [n for n in layout.list_files(copy) if n not in (layout.ENVELOPE, layout.KEYS)]
    for name in names:
        flip_byte(copy / name)
    reasons = failed(verify_bundle(copy, store.fingerprint))
    changed = reasons["digests"].split("(changed after signing): ")[1].split(";")[0].split(", ")
    assert sorted(changed) == sorted(names)
    for name, check in ((layout.ENVELOPE, "signature"), (layout.KEYS, "key")):
        copy = copy_bundle(bundle, tmp_path)
        flip_byte(copy / name)
        reasons = failed(verify_bundle(copy, store.fingerprint))
        assert check in reasons or name in reasons.get("digests", ""), (name, reasons)


def test_a_dropped_event_fails_even_when_the_bundle_is_resigned_with_the_ledger_key(store, bundle, tmp_path):
    copy = copy_bundle(bundle, tmp_path)
    rewrite_events(copy, lambda t: pa.concat_tables([t.slice(0, 3), t.slice(4)]))
    reasons = failed(verify_bundle(copy, store.fingerprint))
    assert "data/events.parquet" in reasons["digests"]
    reseal(copy, store.signer)  # the digests and signature now agree: only the proof can object
    reasons = failed(verify_bundle(copy, store.fingerprint))
    assert "digests" not in reasons and "signature" not in reasons
    assert "events were added, dropped or reordered" in reasons["events"]
    assert "do not rebuild the signed root" in reasons["inclusion proof"]


def test_reordered_events_fail_with_the_row_where_order_breaks(store, bundle, tmp_path):
    copy = copy_bundle(bundle, tmp_path)
    rewrite_events(copy, lambda t: pa.concat_tables([t.slice(0, 2), t.slice(3, 1), t.slice(2, 1), t.slice(4)]))
    reseal(copy, store.signer)
    reasons = failed(verify_bundle(copy, store.fingerprint))
    assert "not strictly increasing at row 3" in reasons["events"]
    assert "inclusion proof" in reasons


def test_an_edited_event_fails_its_inclusion_proof_even_with_consistent_columns_and_a_fresh_signature(
        store, bundle, tmp_path):
    copy = copy_bundle(bundle, tmp_path)

    def allow_instead_of_deny(t: pa.Table) -> pa.Table:
        records = pc.replace_substring(t.column("record"), '"govtrace.policy.effect":"deny"',
                                       '"govtrace.policy.effect":"allow"', max_replacements=1)
        effect = pc.if_else(pc.equal(t.column("policy_effect"), "deny"), "allow", t.column("policy_effect"))
        t = t.set_column(t.schema.get_field_index("record"), "record", records)
        return t.set_column(t.schema.get_field_index("policy_effect"), "policy_effect", effect)

    rewrite_events(copy, allow_instead_of_deny)
    reseal(copy, store.signer)
    reasons = failed(verify_bundle(copy, store.fingerprint))
    assert "typed columns" not in reasons, "the edit was made consistently in record and column"
    assert "do not rebuild the signed root" in reasons["inclusion proof"]


def test_a_truncated_file_fails_with_the_reason_it_cannot_be_read(store, bundle, tmp_path):
    copy = copy_bundle(bundle, tmp_path)
    events = copy / layout.EVENTS
    events.write_bytes(events.read_bytes()[: events.stat().st_size // 2])
    reasons = failed(verify_bundle(copy, store.fingerprint))
    assert "data/events.parquet" in reasons["digests"]
    assert "cannot be read as Parquet" in reasons["events"]


def test_a_changed_figure_is_caught_by_rerunning_queries_sql(store, bundle, tmp_path):
    copy = copy_bundle(bundle, tmp_path)
    figures = json.loads((copy / layout.FIGURES).read_text())
    figures["actions"]["blocked"] -= 1
    (copy / layout.FIGURES).write_text(json.dumps(figures))
    reseal(copy, store.signer)
    reasons = failed(verify_bundle(copy, store.fingerprint))
    assert "actions.blocked: report says" in reasons["figures"]


def test_a_bundle_signed_by_another_key_fails_and_so_does_pinning_another_fingerprint(store, bundle, tmp_path):
    copy = copy_bundle(bundle, tmp_path)
    reseal(copy, Signer.generate("govtrace"))
    reasons = failed(verify_bundle(copy, store.fingerprint))
    assert "no signature verifies with a trusted key" in reasons["signature"]
    reasons = failed(verify_bundle(bundle, Signer.generate("govtrace").public_key.fingerprint))
    assert "no key in the bundle has the pinned fingerprint" in reasons["key"]


# --- other shapes ---------------------------------------------------------------------------------------


def test_a_zip_bundle_with_withheld_content_verifies_and_lists_what_it_withholds(store, tmp_path):
    out = tmp_path / "bundle.zip"
    result = export(store, out, redaction="content")
    assert result.path == out and out.is_file()
    verification = verify_bundle(out, store.fingerprint)
    assert verification.ok, verification.table()
    statuses = {c.name: c.status for c in verification.checks}
    assert statuses["redactions"] == statuses["typed columns"] == "warn"
    import zipfile

    with zipfile.ZipFile(out) as archive:
        redactions = json.loads(archive.read(layout.REDACTIONS))
        events = pq.read_table(archive.open(layout.EVENTS))
    assert [w["erased"] for w in redactions["withheld"]] == [["/attributes/gen_ai.tool.call.arguments"]]
    withheld = events.filter(pc.equal(events.column("disclosure"), "withheld"))
    assert withheld.num_rows == 1 and withheld.column("record")[0].as_py() is None
    assert withheld.column("tool_name")[0].as_py() == "lookup_invoice"


def test_exporting_through_a_running_collectors_read_api_gives_a_bundle_that_verifies(tmp_path):
    from govtrace.collector.config import load_config
    from govtrace.collector.server import Collector
    from govtrace.instrumentation.demo_fleet import Fleet

    db = tmp_path / "live.duckdb"
    config = load_config(None, {"db": str(db), "grpc": "127.0.0.1:0", "http": "127.0.0.1:0", "decode_workers": 0,
                                "seal_every_seconds": 0.2}, environ={})
    with Collector(config) as collector:
        fleet = Fleet(endpoint=f"http://{collector.grpc_endpoint}")
        fleet.run_once()
        fleet.flush()
        fleet.shutdown()
        signer = KeyStore(str(db) + ".keys").current()
        reader = CollectorReader(collector.http_url, user="auditor-live", purpose="evidence export")
        now = datetime.now(UTC)
        result = export_bundle(reader, AGENT, now - timedelta(hours=1), now + timedelta(hours=1),
                               tmp_path / "live-bundle", signer=signer, exported_by="auditor-live",
                               wait_seal_seconds=30)
        logged = ConnectionReader(collector.store).query(
            "SELECT count(*) AS n FROM access_log WHERE action = 'export' AND principal = 'auditor-live'")
    assert result.unsealed == 0 and result.agent_events >= 8
    assert int(logged["n"].iloc[0]) == 1
    verification = verify_bundle(tmp_path / "live-bundle", signer.public_key.fingerprint)
    assert verification.ok, verification.table()


def test_the_command_line_exports_and_verifies_and_exits_1_on_a_tampered_bundle(store, tmp_path):
    db = tmp_path / "cli.duckdb"
    shutil.copyfile(store.db, db)
    shutil.copytree(str(store.db) + ".keys", str(db) + ".keys")
    out = tmp_path / "cli-bundle"

    def govtrace(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "govtrace.collector.cli", *args], capture_output=True,
                              text=True, timeout=180)

    made = govtrace("export", "--agent", AGENT, "--since", "2d", "--until", "now", "--out", str(out), "--db", str(db),
                    "--policy", str(FLEET_POLICY), "--by", "cli-auditor", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["agent_events"] >= 8
    ok = govtrace("verify", str(out), "--key-fingerprint", store.fingerprint)
    assert ok.returncode == 0, ok.stdout
    assert "VALID" in ok.stdout and "inclusion proof  PASS" in ok.stdout
    flip_byte(out / layout.PROOF)
    bad = govtrace("verify", str(out), "--key-fingerprint", store.fingerprint)
    assert bad.returncode == 1 and "INVALID" in bad.stdout and "proofs/events.json" in bad.stdout


def test_after_a_key_rotation_bundles_verify_with_the_fingerprint_pinned_before_it_and_the_old_key_is_refused(
        store, tmp_path):
    from govtrace.collector.ledger.sealer import Ledger
    from govtrace.collector.retention import place_hold

    db = tmp_path / "rotated.duckdb"
    shutil.copyfile(store.db, db)
    shutil.copytree(str(store.db) + ".keys", str(db) + ".keys")
    keys = KeyStore(str(db) + ".keys")
    old = keys.current()
    new, _ = keys.rotate(when=int(datetime.now(UTC).timestamp()) - 1)
    con = duckdb.connect(str(db))
    place_hold(con, "CASE-1", reason="audit", actor="legal")  # something new for the new key to seal
    assert Ledger(con, new, "govtrace", rotation_statements=keys.rotation_statements()).seal() is not None
    con.close()
    rotated = Store(db, new)
    export(rotated, tmp_path / "bundle")
    result = verify_bundle(tmp_path / "bundle", old.public_key.fingerprint)
    assert result.ok, result.table()
    assert "1 more trusted by rotation" in {c.name: c.detail for c in result.checks}["key"]
    copy = copy_bundle(tmp_path / "bundle", tmp_path)
    reseal(copy, old)
    assert "retired by rotation" in failed(verify_bundle(copy, old.public_key.fingerprint))["signature"]
