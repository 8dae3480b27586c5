"""Human oversight: approval requests bound to the exact call, and handlers that route them.

An ``ApprovalRequest`` names the call it is for (agent, tool, arguments digest, policy id and
version) and carries a deadline. An ``ApprovalDecision`` must repeat the escalation id, the digest
and the policy version; the enforcement point rejects one that does not match, that comes after the
deadline, or that names no approver.

Handlers:
- any object with ``request_approval(request) -> ApprovalDecision | None`` (``ApprovalHandler``);
  ``None`` means no answer by the deadline. Optionally ``notify(notice)`` for tier-2 reviews, tier-4
  halts and envelope breaches (``OversightNotice``);
- ``CallbackApprovalHandler`` wraps plain functions;
- ``FileQueueApprovalHandler`` is a directory for demos and the CLI: requests appear as
  ``requests/<escalation_id>.json``, an approver writes ``decisions/<escalation_id>.json`` (or runs
  ``python -m govtrace.instrumentation.policy queue DIR approve ID --approver ... --role ...``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from govtrace.instrumentation.policy.limits import iso


@dataclass(frozen=True)
class ApprovalRequest:
    escalation_id: str
    decision_id: str
    agent_id: str
    tool: str
    arguments_digest: str | None
    policy_id: str
    policy_version: str
    tier: int
    reasons: tuple[str, ...]
    routed_to: str | None
    requested_at: float  # epoch seconds
    deadline: float  # epoch seconds; no valid answer by then = expired
    sla_seconds: float | None = None
    acting_for: str | None = None
    delegating_agent: str | None = None
    delegation_depth: int = 0
    resource: str | None = None
    operation: str | None = None
    amount: float | None = None
    currency: str = "USD"
    arguments: Any = None  # the call's arguments, only when the enforcement point shares them

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["requested_at_iso"] = iso(self.requested_at)
        out["deadline_iso"] = iso(self.deadline)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApprovalRequest:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["reasons"] = tuple(values.get("reasons") or ())
        return cls(**values)

    def approve(self, approver_id: str, approver_role: str | None = None, *, decided_at: float | None = None,
                comment: str | None = None) -> ApprovalDecision:
        """An approval bound to this request (same escalation, digest and policy version)."""
        return self._answer(True, approver_id, approver_role, decided_at, comment)

    def deny(self, approver_id: str, approver_role: str | None = None, *, decided_at: float | None = None,
             comment: str | None = None) -> ApprovalDecision:
        return self._answer(False, approver_id, approver_role, decided_at, comment)

    def _answer(self, approved: bool, approver_id: str, role: str | None, decided_at: float | None,
                comment: str | None) -> ApprovalDecision:
        return ApprovalDecision(
            escalation_id=self.escalation_id,
            approved=approved,
            approver_id=approver_id,
            approver_role=role,
            arguments_digest=self.arguments_digest,
            policy_version=self.policy_version,
            decided_at=decided_at,
            comment=comment,
        )


@dataclass(frozen=True)
class ApprovalDecision:
    escalation_id: str
    approved: bool
    approver_id: str | None
    approver_role: str | None
    arguments_digest: str | None  # must equal the request's: binds the answer to the exact call
    policy_version: str  # must equal the request's: an answer under another policy is void
    decided_at: float | None = None  # epoch seconds; the enforcement point's clock when None
    comment: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.decided_at is not None:
            out["decided_at_iso"] = iso(self.decided_at)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApprovalDecision:
        if not isinstance(data, dict):
            raise ValueError(f"an approval decision must be a JSON object, got {type(data).__name__}")
        if "approved" in data:
            approved = data["approved"]
        elif "decision" in data:
            approved = {"approve": True, "approved": True, "deny": False, "denied": False}.get(str(data["decision"]))
        else:
            approved = None
        if not isinstance(approved, bool):
            raise ValueError("an approval decision needs 'approved': true|false (or 'decision': approve|deny)")
        decided = data.get("decided_at")
        return cls(
            escalation_id=str(data.get("escalation_id") or ""),
            approved=approved,
            approver_id=data.get("approver_id"),
            approver_role=data.get("approver_role"),
            arguments_digest=data.get("arguments_digest"),
            policy_version=str(data.get("policy_version") or ""),
            decided_at=float(decided) if isinstance(decided, int | float) else None,
            comment=data.get("comment"),
        )


@dataclass(frozen=True)
class OversightNotice:
    """A fact a human should see without being asked to decide first."""

    kind: str  # review (tier 2) | halt (tier 4) | envelope_breach
    escalation_id: str
    agent_id: str
    tool: str
    decision_id: str
    policy_id: str
    policy_version: str
    tier: int | None
    reasons: tuple[str, ...]
    routed_to: str | None
    created_at: float
    arguments_digest: str | None = None
    reversible_until: float | None = None  # review: end of the reversal window
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["created_at_iso"] = iso(self.created_at)
        if self.reversible_until is not None:
            out["reversible_until_iso"] = iso(self.reversible_until)
        return out


@runtime_checkable
class ApprovalHandler(Protocol):
    def request_approval(self, request: ApprovalRequest) -> ApprovalDecision | None:
        """Return the approver's answer, or None when there was none by ``request.deadline``.

        May block until the deadline. Answers after the deadline are treated as expired.
        """


@runtime_checkable
class NoticeSink(Protocol):
    def notify(self, notice: OversightNotice) -> None: ...


class CallbackApprovalHandler:
    """Adapts functions: ``approve(request) -> ApprovalDecision | None`` and optional ``notify(notice)``."""

    def __init__(
        self,
        approve: Callable[[ApprovalRequest], ApprovalDecision | None],
        notify: Callable[[OversightNotice], None] | None = None,
    ):
        self._approve = approve
        self._notify = notify
        self.requests: list[ApprovalRequest] = []
        self.notices: list[OversightNotice] = []

    def request_approval(self, request: ApprovalRequest) -> ApprovalDecision | None:
        self.requests.append(request)
        return self._approve(request)

    def notify(self, notice: OversightNotice) -> None:
        self.notices.append(notice)
        if self._notify is not None:
            self._notify(notice)


class FileQueueApprovalHandler:
    """A directory as an approval queue, for demos and the command line.

    Layout under ``directory``: ``requests/<id>.json`` (written by the agent, removed once resolved),
    ``decisions/<id>.json`` (written by the approver, removed once read), ``resolved/<id>.json``
    (request, decision and outcome, kept), ``notices/<kind>-<id>.json`` (reviews, halts, breaches).
    ``request_approval`` polls for the decision every ``poll_interval`` seconds until the deadline;
    ``clock`` and ``sleep`` are injectable.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        poll_interval: float = 0.25,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        include_arguments: bool = True,
    ):
        self.directory = Path(directory)
        self.poll_interval = poll_interval
        self.clock = clock
        self.sleep = sleep
        self.include_arguments = include_arguments
        for sub in ("requests", "decisions", "resolved", "notices"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)

    def _path(self, sub: str, name: str) -> Path:
        safe = "".join(c for c in name if c.isalnum() or c in "-_.")
        if not safe or safe != name:
            raise ValueError(f"not a valid escalation id: {name!r}")
        return self.directory / sub / f"{safe}.json"

    # --- agent side --------------------------------------------------------------------------------
    def request_approval(self, request: ApprovalRequest) -> ApprovalDecision | None:
        payload = request.as_dict()
        if not self.include_arguments:
            payload.pop("arguments", None)
        _write_json(self._path("requests", request.escalation_id), payload)
        decision_path = self._path("decisions", request.escalation_id)
        decision: ApprovalDecision | None = None
        raw: Any = None
        try:
            while True:
                if decision_path.exists():
                    raw = json.loads(decision_path.read_text(encoding="utf-8"))
                    decision = ApprovalDecision.from_dict(raw)
                    return decision
                remaining = request.deadline - self.clock()
                if remaining <= 0:
                    return None
                self.sleep(min(self.poll_interval, remaining))
        finally:
            record = {"request": payload, "decision": raw, "resolved_at": iso(self.clock())}
            _write_json(self._path("resolved", request.escalation_id), record)
            for sub in ("requests", "decisions"):
                try:
                    self._path(sub, request.escalation_id).unlink()
                except FileNotFoundError:
                    pass

    def notify(self, notice: OversightNotice) -> None:
        _write_json(self._path("notices", f"{notice.kind}-{notice.escalation_id}"), notice.as_dict())

    # --- approver side -----------------------------------------------------------------------------
    def pending(self) -> list[ApprovalRequest]:
        out = []
        for path in sorted((self.directory / "requests").glob("*.json")):
            try:
                out.append(ApprovalRequest.from_dict(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue
        return out

    def notices(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((self.directory / "notices").glob("*.json"))]

    def decide(
        self,
        escalation_id: str,
        *,
        approve: bool,
        approver_id: str,
        approver_role: str | None = None,
        comment: str | None = None,
        decided_at: float | None = None,
    ) -> ApprovalDecision:
        """Answer a pending request; the answer repeats its digest and policy version."""
        path = self._path("requests", escalation_id)
        if not path.exists():
            raise KeyError(f"no pending approval request {escalation_id!r} in {self.directory}")
        request = ApprovalRequest.from_dict(json.loads(path.read_text(encoding="utf-8")))
        answer = request._answer(approve, approver_id, approver_role,
                                 self.clock() if decided_at is None else decided_at, comment)
        _write_json(self._path("decisions", escalation_id), answer.as_dict())
        return answer


def _write_json(path: Path, payload: Any) -> None:
    """Write atomically so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
