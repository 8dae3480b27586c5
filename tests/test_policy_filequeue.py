"""The file-queue approval handler: requests as JSON files, answers written back, for demos and the CLI."""

from __future__ import annotations

import json
import textwrap

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from govtrace.instrumentation import attributes as A
from govtrace.instrumentation.enforcement import Denial, ToolRequest
from govtrace.instrumentation.policy import (
    ENGINE_FAULTS,
    FileQueueApprovalHandler,
    PolicyEnforcementPoint,
    load_policy_text,
)
from govtrace.instrumentation.policy.__main__ import main as cli
from govtrace.instrumentation.telemetry import AgentTelemetry, arguments_digest

T0 = 1_800_000_000.0
POLICY = load_policy_text(textwrap.dedent(
    """\
    id: queue-test
    oversight:
      review: {reversal_window_seconds: 300}
      approval: {routed_to: role:approver, timeout_seconds: 30}
    rules:
      - {id: review, tier: 2, when: {amount: {gt: 10}}}
      - {id: approve, tier: 3, when: {amount: {gt: 100}}}
    agents:
      clerk: {scopes: {tools: [refund.issue]}}
    """))
ARGS = {"order": "o-17", "amount": 250}


class Clock:
    def __init__(self):
        self.t = T0

    def __call__(self):
        return self.t


@pytest.fixture(autouse=True)
def _reset_faults():
    ENGINE_FAULTS.reset()
    yield
    ENGINE_FAULTS.reset()


@pytest.fixture
def exporter():
    return InMemorySpanExporter()


def run_refund(exporter, queue, clock, amount=250.0):
    telemetry = AgentTelemetry("clerk", processor=SimpleSpanProcessor(exporter))
    pep = PolicyEnforcementPoint(POLICY, agent_id="clerk", approval_handler=queue, clock=clock)
    ran = []
    with telemetry.tool_call("refund.issue", arguments=ARGS) as call:
        result = pep.run(call, ToolRequest(agent_id="clerk", tool="refund.issue", arguments=ARGS, amount=amount),
                         lambda: ran.append("refund") or "refunded")
    return result, ran, exporter.get_finished_spans()[-1]


def test_a_request_appears_as_a_json_file_and_an_approval_written_back_lets_the_call_run(tmp_path, exporter):
    clock = Clock()
    seen = {}

    def approver_acts_while_the_agent_waits(seconds):
        # What a person at the CLI does between two polls: read the pending request, answer it.
        [request_file] = list((tmp_path / "q" / "requests").glob("*.json"))
        seen["request"] = json.loads(request_file.read_text())
        assert cli(["queue", str(tmp_path / "q"), "approve", request_file.stem,
                    "--approver", "dana@example.com", "--role", "support-lead", "--comment", "ok"]) == 0
        clock.t += seconds

    queue = FileQueueApprovalHandler(tmp_path / "q", poll_interval=1.0, clock=clock,
                                     sleep=approver_acts_while_the_agent_waits)
    result, ran, span = run_refund(exporter, queue, clock)
    assert result == "refunded" and ran == ["refund"]
    request = seen["request"]
    escalation_id = span.attributes[A.OVERSIGHT_ESCALATION_ID]
    assert request["escalation_id"] == escalation_id
    assert (request["arguments_digest"], request["policy_id"], request["policy_version"]) == (
        arguments_digest(ARGS), "queue-test", POLICY.version)
    assert (request["deadline"], request["deadline_iso"], request["routed_to"]) == (
        T0 + 30, "2027-01-15T08:00:30Z", "role:approver")
    assert "arguments" not in request or request["arguments"] is None
    assert (span.attributes[A.OVERSIGHT_OUTCOME], span.attributes[A.OVERSIGHT_APPROVER_ID],
            span.attributes[A.OVERSIGHT_APPROVER_ROLE], span.attributes[A.OVERSIGHT_REASON]) == (
        "approved", "dana@example.com", "support-lead", "ok")
    assert list((tmp_path / "q" / "requests").iterdir()) == []
    assert list((tmp_path / "q" / "decisions").iterdir()) == []
    resolved = json.loads((tmp_path / "q" / "resolved" / f"{escalation_id}.json").read_text())
    assert resolved["decision"]["approved"] is True
    assert resolved["decision"]["arguments_digest"] == arguments_digest(ARGS)


def test_a_denial_written_back_stops_the_call(tmp_path, exporter):
    clock = Clock()
    queue = FileQueueApprovalHandler(tmp_path, clock=clock, sleep=lambda s: [
        queue.decide(r.escalation_id, approve=False, approver_id="dana", approver_role="lead", comment="fraud risk")
        for r in queue.pending()])
    result, ran, span = run_refund(exporter, queue, clock)
    assert isinstance(result, Denial) and ran == []
    assert (result.outcome, result.reason) == ("denied", "approval denied by dana (fraud risk)")


def test_no_answer_in_the_queue_by_a_tiny_real_deadline_expires(tmp_path, exporter):
    policy = load_policy_text(
        "id: q\noversight: {approval: {timeout_seconds: 0.05}}\nrules: [{id: a, tier: 3}]\n"
        "agents: {clerk: {scopes: {tools: [refund.issue]}}}\n")
    queue = FileQueueApprovalHandler(tmp_path, poll_interval=0.01)  # real clock and sleep
    telemetry = AgentTelemetry("clerk", processor=SimpleSpanProcessor(exporter))
    pep = PolicyEnforcementPoint(policy, agent_id="clerk", approval_handler=queue)
    with telemetry.tool_call("refund.issue", arguments=ARGS) as call:
        result = pep.run(call, ToolRequest(agent_id="clerk", tool="refund.issue", arguments=ARGS), lambda: "ran")
    assert isinstance(result, Denial) and result.outcome == "expired"
    assert exporter.get_finished_spans()[-1].attributes[A.OVERSIGHT_OUTCOME] == "expired"
    assert queue.pending() == []


def test_a_hand_edited_decision_for_different_arguments_is_rejected(tmp_path, exporter):
    clock = Clock()

    def forge(seconds):
        [request] = queue.pending()
        (tmp_path / "decisions" / f"{request.escalation_id}.json").write_text(json.dumps({
            "escalation_id": request.escalation_id, "approved": True, "approver_id": "mallory",
            "arguments_digest": arguments_digest({"order": "o-17", "amount": 25000}),
            "policy_version": request.policy_version}))

    queue = FileQueueApprovalHandler(tmp_path, clock=clock, sleep=forge)
    result, ran, span = run_refund(exporter, queue, clock)
    assert isinstance(result, Denial) and ran == [] and result.outcome == "auto_denied"
    assert "arguments digest mismatch" in span.attributes[A.OVERSIGHT_REASON]


def test_a_garbled_decision_file_auto_denies_and_counts_a_handler_fault(tmp_path, exporter):
    clock = Clock()

    def garble(seconds):
        [request] = queue.pending()
        (tmp_path / "decisions" / f"{request.escalation_id}.json").write_text("{not json")

    queue = FileQueueApprovalHandler(tmp_path, clock=clock, sleep=garble)
    result, ran, _ = run_refund(exporter, queue, clock)
    assert isinstance(result, Denial) and ran == [] and result.outcome == "auto_denied"
    assert ENGINE_FAULTS.count("approval_handler") == 1


def test_tier_two_reviews_are_written_to_the_notices_folder(tmp_path, exporter):
    clock = Clock()
    queue = FileQueueApprovalHandler(tmp_path, clock=clock)
    result, ran, span = run_refund(exporter, queue, clock, amount=50.0)
    assert result == "refunded"
    [notice] = queue.notices()
    assert (notice["kind"], notice["escalation_id"], notice["reversible_until_iso"], notice["tool"]) == (
        "review", span.attributes[A.OVERSIGHT_ESCALATION_ID], "2027-01-15T08:05:00Z", "refund.issue")


def test_answering_a_request_that_is_not_pending_is_an_error(tmp_path, capsys):
    FileQueueApprovalHandler(tmp_path)
    assert cli(["queue", str(tmp_path), "approve", "nope", "--approver", "dana"]) == 1
    with pytest.raises(ValueError, match="not a valid escalation id"):
        FileQueueApprovalHandler(tmp_path).decide("../etc", approve=True, approver_id="x")


def test_the_cli_validates_a_policy_file(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("id: p\nagents: {a: {scopes: {tools: [x]}}}\n")
    assert cli(["validate", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["id"], out["agents"], len(out["version"])) == ("p", ["a"], 12)
    path.write_text("id: p\nagents: {a: {scopes: {tool: [x]}}}\n")
    assert cli(["validate", str(path)]) == 1
    assert "agents.a.scopes.tool: unknown field" in capsys.readouterr().err
