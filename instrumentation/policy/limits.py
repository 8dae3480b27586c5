"""Per-agent-instance state: sliding-window rate limits, cost envelopes, halts.

One ``Usage`` belongs to one enforcement point (one agent instance). ``check`` is read-only unless
asked to admit (then a passing call takes its rate-limit slot under the same lock); ``account`` adds
a completed step's cost. Envelope periods are UTC calendar
buckets (hour, day) plus the task; a breach halts what it covers until the period rolls over (hour,
day) or for the rest of the task.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import UTC, datetime

from govtrace.instrumentation.policy.model import AgentPolicy, RateLimit

MAX_TRACKED_TASKS = 10_000  # oldest tasks are forgotten beyond this (their spend and halts)


@dataclass(frozen=True)
class Breach:
    """A cost envelope exceeded by a completed step."""

    period: str  # task | hour | day
    limit: float
    spent: float
    key: str  # the task id, or the UTC hour / day the bucket covers
    escalation_id: str
    until: float | None  # epoch seconds when the halt lifts; None for a task

    def reason(self, currency: str) -> str:
        until = f"; halted until {iso(self.until)}" if self.until is not None else "; task halted"
        return (f"envelope breach: per_{self.period} spend {self.spent:.2f} {currency} exceeds "
                f"limit {self.limit:.2f} {currency} ({self.period} {self.key}){until}")


@dataclass(frozen=True)
class Block:
    """Why usage state blocks a call before any tier is considered."""

    boundary: str  # envelope | rate_limit | tier (task halted by a tier-4 escalation)
    rule_id: str
    reason: str
    escalation_id: str | None = None
    halted: bool = False


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Usage:
    def __init__(self, agent: AgentPolicy, currency: str = "USD"):
        self.agent = agent
        self.currency = currency
        self._lock = threading.Lock()
        self._windows: dict[str, deque[float]] = {r.id: deque() for r in agent.rate_limits}
        self._task_spend: OrderedDict[str, float] = OrderedDict()
        self._hour: tuple[int, float] = (-1, 0.0)
        self._day: tuple[int, float] = (-1, 0.0)
        self._breaches: dict[tuple[str, str | int], Breach] = {}  # (period, task id | hour | day number)
        self._halted_tasks: OrderedDict[str, str] = OrderedDict()  # task -> escalation id
        self._limits_by_tool: dict[str, tuple[RateLimit, ...]] = {}
        self.has_envelope = bool(agent.envelope.limits())

    def needs_task_id(self) -> bool:
        """Whether a task id matters now: a per-task envelope, or a halted task to recognise."""
        return self.agent.envelope.per_task is not None or bool(self._halted_tasks)

    def _limits_for(self, tool: str) -> tuple[RateLimit, ...]:
        limits = self._limits_by_tool.get(tool)
        if limits is None:
            limits = tuple(limit for limit in self.agent.rate_limits if limit.applies(tool))
            if len(self._limits_by_tool) < 4096:
                self._limits_by_tool[tool] = limits
        return limits

    # --- checks ------------------------------------------------------------------------------------
    def check(self, tool: str, task_id: str | None, now: float, *, admit: bool) -> Block | None:
        """Block reason for a call now, or None. With ``admit``, a passing call takes a rate slot."""
        with self._lock:
            if task_id is not None and task_id in self._halted_tasks:
                esc = self._halted_tasks[task_id]
                return Block("tier", "halt", f"task {task_id} is halted by tier-4 escalation {esc}", esc, True)
            breach = self._active_breach(task_id, now)
            if breach is not None:
                return Block("envelope", f"envelope.per_{breach.period}", breach.reason(self.currency),
                             breach.escalation_id, True)
            for limit in self._limits_for(tool):
                window = self._windows[limit.id]
                horizon = now - limit.per_seconds
                while window and window[0] <= horizon:
                    window.popleft()
                if len(window) >= limit.calls:
                    retry = window[0] + limit.per_seconds - now
                    return Block("rate_limit", limit.id, _rate_reason(limit, retry))
            if admit:
                self._admit_locked(tool, now)
            return None

    def admit(self, tool: str, now: float) -> None:
        with self._lock:
            self._admit_locked(tool, now)

    def _admit_locked(self, tool: str, now: float) -> None:
        for limit in self._limits_for(tool):
            self._windows[limit.id].append(now)

    def _active_breach(self, task_id: str | None, now: float) -> Breach | None:
        if not self._breaches:
            return None
        env = self.agent.envelope
        if env.per_task is not None and task_id is not None:
            b = self._breaches.get(("task", task_id))
            if b is not None:
                return b
        if env.per_hour is not None:
            b = self._breaches.get(("hour", int(now // 3600)))
            if b is not None:
                return b
        if env.per_day is not None:
            b = self._breaches.get(("day", int(now // 86400)))
            if b is not None:
                return b
        return None

    # --- accounting --------------------------------------------------------------------------------
    def account(self, amount: float, task_id: str | None, now: float, new_id) -> list[Breach]:
        """Add a completed step's cost; return the envelopes this step newly breached."""
        env = self.agent.envelope
        if amount <= 0 or not self.has_envelope:
            return []
        breaches: list[Breach] = []
        with self._lock:
            if task_id is not None and env.per_task is not None:
                spent = self._task_spend.pop(task_id, 0.0) + amount
                self._task_spend[task_id] = spent
                while len(self._task_spend) > MAX_TRACKED_TASKS:
                    self._task_spend.popitem(last=False)
                if spent > env.per_task:
                    breaches.append(self._breach("task", task_id, task_id, env.per_task, spent, None, new_id))
            hour = int(now // 3600)
            if self._hour[0] != hour:
                self._hour = (hour, 0.0)
            self._hour = (hour, self._hour[1] + amount)
            if env.per_hour is not None and self._hour[1] > env.per_hour:
                breaches.append(self._breach("hour", hour, _hour_key(now), env.per_hour, self._hour[1],
                                             (hour + 1) * 3600.0, new_id))
            day = int(now // 86400)
            if self._day[0] != day:
                self._day = (day, 0.0)
            self._day = (day, self._day[1] + amount)
            if env.per_day is not None and self._day[1] > env.per_day:
                breaches.append(self._breach("day", day, _day_key(now), env.per_day, self._day[1],
                                             (day + 1) * 86400.0, new_id))
        return [b for b in breaches if b is not None]

    def _breach(self, period: str, bucket: str | int, key: str, limit: float, spent: float, until: float | None,
                new_id) -> Breach | None:
        if (period, bucket) in self._breaches:
            return None  # already breached and recorded: the halt is in force
        breach = Breach(period, limit, spent, key, new_id(), until)
        self._breaches[(period, bucket)] = breach
        if len(self._breaches) > MAX_TRACKED_TASKS:
            self._breaches.pop(next(iter(self._breaches)))
        return breach

    def spent(self, now: float, task_id: str | None = None) -> dict[str, float]:
        """What has been spent in the current hour, day and (given) task."""
        with self._lock:
            out = {
                "hour": self._hour[1] if self._hour[0] == int(now // 3600) else 0.0,
                "day": self._day[1] if self._day[0] == int(now // 86400) else 0.0,
            }
            if task_id is not None:
                out["task"] = self._task_spend.get(task_id, 0.0)
            return out

    # --- halts -------------------------------------------------------------------------------------
    def halt_task(self, task_id: str, escalation_id: str) -> None:
        with self._lock:
            self._halted_tasks[task_id] = escalation_id
            while len(self._halted_tasks) > MAX_TRACKED_TASKS:
                self._halted_tasks.popitem(last=False)

    def resume_task(self, task_id: str) -> bool:
        """Lift a tier-4 halt and a task-envelope halt on ``task_id`` (an operator's decision)."""
        with self._lock:
            found = self._halted_tasks.pop(task_id, None) is not None
            found = self._breaches.pop(("task", task_id), None) is not None or found
            return found


def _hour_key(now: float) -> str:
    return iso(int(now // 3600) * 3600.0)[:13] + "Z"


def _day_key(now: float) -> str:
    return iso(int(now // 86400) * 86400.0)[:10]


def _rate_reason(limit: RateLimit, retry_in: float) -> str:
    scope = f" for tools {', '.join(limit.tools.patterns)}" if limit.tools is not None else ""
    return (f"rate limit {limit.id}: {limit.calls} calls per {limit.per_seconds:g}s{scope} reached; "
            f"retry in {max(retry_in, 0.0):.1f}s")
