"""The read side: reader tokens with roles, every read recorded against the authenticated reader,
and SQL that cannot reach files or the access log without the compliance role."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pyarrow as pa
import pytest

from govtrace.analytics.reader import CollectorReader, ReaderError
from govtrace.collector.auth import token_hash
from govtrace.collector.config import load_config
from govtrace.collector.loadgen import RawExporter, build_request
from govtrace.collector.server import Collector

TOKENS = {"viewer": "gt_viewer", "investigator": "gt_investigator", "compliance": "gt_compliance",
          "dashboard": "gt_dashboard", "agent": "gt_agent"}


@pytest.fixture
def secured(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text(f"""
agents:
  - principal: fleet
    agent_ids: ["*"]
    token_sha256: {token_hash(TOKENS['agent'])}
readers:
  - {{user: vic@acme.example, role: viewer, token_sha256: {token_hash(TOKENS['viewer'])}}}
  - {{user: ina@acme.example, role: investigator, token_sha256: {token_hash(TOKENS['investigator'])}}}
  - {{user: cam@acme.example, role: compliance, token_sha256: {token_hash(TOKENS['compliance'])}}}
  - {{user: dashboard, role: investigator, acts_for_users: true, token_sha256: {token_hash(TOKENS['dashboard'])}}}
""")
    config = load_config(None, {"db": str(tmp_path / "read.duckdb"), "grpc": "127.0.0.1:0", "http": "127.0.0.1:0",
                                "decode_workers": 0, "auth_tokens_file": str(path)}, environ={})
    with Collector(config) as collector:
        exporter = RawExporter(collector.grpc_endpoint)
        exporter.send(build_request(32, seed=7).body, metadata=(("authorization", f"Bearer {TOKENS['agent']}"),))
        exporter.close()
        yield collector


def _post(collector, path: str, body: dict, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(collector.http_url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **headers}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _get_status(collector, headers: dict[str, str]) -> int:
    request = urllib.request.Request(collector.http_url + "/api/v1/status", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def _access_log(collector) -> list[tuple]:
    cursor = collector.store.cursor()
    try:
        return cursor.execute("SELECT principal, role, action, target FROM access_log ORDER BY occurred_at").fetchall()
    finally:
        cursor.close()


def test_reads_need_a_reader_token_and_an_agent_token_is_not_one(secured):
    assert _post(secured, "/api/v1/query", {"sql": "SELECT 1"}, {})[0] == 401
    assert _post(secured, "/api/v1/query", {"sql": "SELECT 1"}, {"Authorization": "Bearer guess"})[0] == 401
    assert _post(secured, "/api/v1/query", {"sql": "SELECT 1"}, _bearer("agent"))[0] == 403
    assert _get_status(secured, {}) == 401
    assert _access_log(secured) == []


def test_a_viewer_reads_the_status_but_runs_no_queries(secured):
    assert _get_status(secured, _bearer("viewer")) == 200
    status, body = _post(secured, "/api/v1/query", {"sql": "SELECT count(*) FROM spans"}, _bearer("viewer"))
    assert status == 403 and b"investigator" in body


def test_an_investigator_queries_the_store_with_the_analytics_reader_and_each_query_is_recorded(secured):
    reader = CollectorReader(secured.http_url, token=TOKENS["investigator"], purpose="case 42")
    assert reader.query("SELECT count(*) AS n FROM spans")["n"].tolist() == [32]
    reader.query("SELECT agent_id FROM spans LIMIT 1")
    log = _access_log(secured)
    assert log == [("ina@acme.example", "investigator", "query", "case 42")] * 2


def test_claimed_user_headers_are_ignored_when_authentication_is_on(secured):
    status, _ = _post(secured, "/api/v1/query", {"sql": "SELECT 1"},
                      {**_bearer("investigator"), "X-Govtrace-User": "mallory", "X-Govtrace-Role": "compliance"})
    assert status == 200
    assert _access_log(secured) == [("ina@acme.example", "investigator", "query", "")]


def test_a_front_end_token_names_the_person_it_reads_for_within_its_own_role(secured):
    headers = {**_bearer("dashboard"), "X-Govtrace-User": "alice@acme.example", "X-Govtrace-Role": "compliance"}
    assert _post(secured, "/api/v1/query", {"sql": "SELECT 1"}, headers)[0] == 200
    status, _ = _post(secured, "/api/v1/query", {"sql": "SELECT * FROM access_log"}, headers)
    assert status == 403, "the claimed compliance role does not lift the front end's own role"
    assert _access_log(secured) == [("alice@acme.example via dashboard", "investigator", "query", "")]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM access_log",
    "SELECT count(*) FROM main.access_log",
    "WITH a AS (SELECT * FROM spans) SELECT * FROM a, (SELECT principal FROM access_log) l",
    "SELECT * FROM query_table('access_log')",
    "SELECT * FROM query('SELECT * FROM access_log')",
])
def test_only_compliance_reads_the_access_log_however_the_query_names_it(secured, sql):
    assert _post(secured, "/api/v1/query", {"sql": sql}, _bearer("investigator"))[0] == 403
    status, body = _post(secured, "/api/v1/query", {"sql": sql}, _bearer("compliance"))
    assert status == 200, body


def test_a_view_over_the_access_log_does_not_hide_it_from_the_role_check(secured):
    cursor = secured.store.cursor()
    cursor.execute("CREATE VIEW innocent AS SELECT principal FROM access_log")
    cursor.close()
    assert _post(secured, "/api/v1/query", {"sql": "SELECT * FROM innocent"}, _bearer("investigator"))[0] == 403


@pytest.mark.parametrize("sql", ["SELECT * FROM read_text('/etc/hostname')",
                                 "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')"])
def test_read_queries_cannot_reach_files_or_the_network(secured, sql):
    status, body = _post(secured, "/api/v1/query", {"sql": sql}, _bearer("compliance"))
    assert status == 400
    assert b"disabled" in body


def test_without_authentication_every_query_is_recorded_with_the_claimed_user(collector):
    reader = CollectorReader(collector.http_url, user="bob", role="viewer")
    table = reader.arrow("SELECT 42 AS answer")
    assert isinstance(table, pa.Table) and table.column("answer").to_pylist() == [42]
    assert _access_log(collector) == [("bob", "viewer", "query", "")]
    with pytest.raises(ReaderError):
        reader.query("DELETE FROM spans")
