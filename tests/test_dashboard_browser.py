"""The dashboard in a real headless Chromium, against a live collector that keeps ingesting.

An investigator opens the dashboard, goes to Investigate, follows the decision chain of the demo's
month-end close across three agents, then exports the readiness answers as compliance would. The
page is saved as test-artifacts/dashboard-decision-chain.png for a person to look at.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from conftest import ROOT, wait_until

from govtrace.dashboard.launch import start_dashboard
from govtrace.instrumentation.demo_fleet import Fleet, trickle

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test drives Chromium with playwright")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make browser)")

ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 45_000


def access(collector) -> list[tuple]:
    cursor = collector.store.cursor()
    try:
        return cursor.execute("SELECT principal, role, action, target FROM access_log").fetchall()
    finally:
        cursor.close()


def test_an_investigator_follows_a_decision_chain_in_chromium_while_the_collector_ingests(
        collector, tmp_path, monkeypatch):
    monkeypatch.setenv("GOVTRACE_USER", "ivy@acme.example")
    fleet = Fleet(endpoint=f"http://{collector.grpc_endpoint}")
    traces = fleet.run_once()
    fleet.flush()
    trace = traces["month_end_close"]

    def stored(trace_id: str) -> int:
        cursor = collector.store.cursor()
        try:
            return cursor.execute("SELECT count(*) FROM spans WHERE trace_id = ?", [trace_id]).fetchall()[0][0]
        finally:
            cursor.close()

    wait_until(lambda: stored(traces["late_approval"]), timeout=15)
    expected = _what_the_chain_must_show(collector, trace)
    stop = threading.Event()
    feeder = threading.Thread(target=trickle, args=(fleet, stop.is_set, 0.5), daemon=True)
    feeder.start()
    try:
        with start_dashboard(collector.http_url, port=0) as dashboard, sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
                viewport={"width": 1600, "height": 2200}, accept_downloads=True)
            try:
                page = browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                _follow_the_chain(page, dashboard.url, trace, expected)
                exported = _export_readiness(page)
            finally:
                browser.close()
    finally:
        stop.set()
        feeder.join(timeout=30)
        fleet.shutdown()

    assert set(exported) == {"actions", "authorization", "data", "cost", "boundaries"}
    assert exported["actions"]["evidence_span_ids"]
    records = access(collector)
    assert ("ivy@acme.example", "local", "view", f"dashboard:investigate trace {trace}") in records
    assert ("ivy@acme.example", "local", "export", "readiness fleet") in records
    assert stored(trace) > 0 and feeder.is_alive() is False


def _follow_the_chain(page, url: str, trace: str, expected: list[str]) -> None:
    expect = sync_api.expect
    page.goto(url)
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    page.get_by_role("link", name="Investigate").click()
    expect(page.get_by_role("heading", name="Investigate")).to_be_visible()
    trace_input = page.get_by_label("Trace id", exact=True)
    trace_input.fill(trace)
    trace_input.press("Enter")
    expect(page.get_by_role("heading", name=f"Decision chain of task {trace}")).to_be_visible()
    graph = page.locator("[data-testid='stGraphVizChart'] svg")
    for text in expected:
        expect(graph).to_contain_text(text)
    expect(page.get_by_text("delegated to", exact=False).first).to_be_visible()
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-decision-chain.png"), full_page=True)


def _export_readiness(page) -> dict:
    expect = sync_api.expect
    page.get_by_role("link", name="Readiness").click()
    button = page.get_by_role("button", name="Download all five answers (JSON)")
    expect(button).to_be_visible()
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-readiness.png"), full_page=True)
    with page.expect_download() as download:
        button.click()
    return json.loads(Path(download.value.path()).read_text())


def _what_the_chain_must_show(collector, trace: str) -> list[str]:
    """Every agent of the task, each denied tool, and each human who decided an escalation in it."""
    cursor = collector.store.cursor()
    try:
        rows = cursor.execute("""
            SELECT DISTINCT agent_id FROM spans WHERE trace_id = ? AND agent_id IS NOT NULL
            UNION SELECT DISTINCT tool_name FROM spans WHERE trace_id = ? AND policy_effect = 'deny'
            UNION SELECT DISTINCT 'by ' || approver_id FROM spans
              WHERE trace_id = ? AND escalation_outcome IN ('approved', 'denied')""", [trace] * 3).fetchall()
    finally:
        cursor.close()
    expected = sorted(row[0] for row in rows if row[0])
    assert len(expected) >= 5, expected  # several agents, a denial and an approver: a real chain to follow
    return [*expected, "human approval"]
