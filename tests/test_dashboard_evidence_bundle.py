"""The dashboard's evidence bundle verifies when intact and names every file that was changed."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime

import duckdb
import pytest

from govtrace.analytics.reader import ConnectionReader
from govtrace.analytics.readiness import QUESTIONS, ask
from govtrace.collector.schema import migrate
from govtrace.dashboard import bundle

SINCE, UNTIL = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def payload() -> bytes:
    con = duckdb.connect()
    migrate(con)
    reader = ConnectionReader(con)
    answers = {q: ask(q, reader, since=SINCE, until=UNTIL) for q in QUESTIONS}
    return bundle.build(answers, agent=None, since=SINCE, until=UNTIL, source="test", made_by="cora")


def rewrite(payload: bytes, change: dict[str, bytes | None]) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(payload))
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as target:
        for name in source.namelist():
            data = change.get(name, source.read(name))
            if data is not None:
                target.writestr(name, data)
        for name, data in change.items():
            if name not in source.namelist() and data is not None:
                target.writestr(name, data)
    return sink.getvalue()


def test_an_intact_bundle_verifies_every_listed_file(payload):
    checks = bundle.verify(payload)
    assert all(check.ok for check in checks)
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(payload)).read("manifest.json"))
    assert manifest["signed"] is False and manifest["made_by"] == "cora"
    assert {c.name for c in checks} == {"manifest", *manifest["files"]}
    assert {f"queries/{q}.sql" for q in QUESTIONS} <= set(manifest["files"])


def test_an_edited_file_fails_verification_by_name(payload):
    checks = bundle.verify(rewrite(payload, {"tables/actions.csv": b"start_time\n2026-01-02\n"}))
    assert [c.name for c in checks if not c.ok] == ["tables/actions.csv"]


def test_a_removed_or_added_file_fails_verification(payload):
    checks = bundle.verify(rewrite(payload, {"answers/cost.json": None, "extra.txt": b"planted"}))
    assert {c.name: c.detail for c in checks if not c.ok} == {
        "answers/cost.json": "listed in the manifest but missing",
        "extra.txt": "present but not in the manifest",
    }


def test_something_that_is_not_a_bundle_fails_verification():
    assert not bundle.verify(b"not a zip")[0].ok
