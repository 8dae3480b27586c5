"""Load a policy file (YAML) into a ``PolicySet``, with errors that name the field and the line.

The policy version is the sha256 of the file bytes; ``govtrace.policy.version`` carries its first 12
hex characters. The format is documented field by field in ``docs/policies.md``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from govtrace.instrumentation.policy.model import (
    FAIL_CLOSED,
    FAIL_OPEN,
    AgentPolicy,
    Condition,
    Envelope,
    Matcher,
    Oversight,
    PolicySet,
    Range,
    RateLimit,
    Scope,
    TierRule,
)

VERSION_LENGTH = 12

_TOP = {"id", "description", "currency", "fail_mode", "default_tier", "delegation", "oversight", "rules", "agents",
        "cedar"}
_CEDAR = {"file", "policies"}
_AGENT = {"description", "owner", "scopes", "delegable", "may_delegate_to", "rate_limits", "envelope", "oversight",
          "rules"}
_SCOPES = {"tools", "resources", "operations"}
_RULE = {"id", "tier", "when", "tools", "resources", "agents", "reason", "routed_to"}
_WHEN = {"amount", "record_count", "classification", "reversible", "regulatory_scope", "operation"}
_RANGE = {"gt", "gte", "lt", "lte"}
_RATE = {"id", "calls", "per_seconds", "tools"}
_ENVELOPE = {"per_task", "per_hour", "per_day"}
_OVERSIGHT = {"review", "approval", "halt"}
_REVIEW = {"routed_to", "reversal_window_seconds"}
_APPROVAL = {"routed_to", "timeout_seconds", "sla_seconds"}
_HALT = {"routed_to"}
_DELEGATION = {"max_depth"}
_OPERATIONS = {"read", "write", "delete", "send", "execute"}


class PolicyLoadError(ValueError):
    """A policy file that cannot be used. ``field`` is a dotted path, ``line`` 1-based when known."""

    def __init__(self, message: str, *, source: str = "<string>", field: str | None = None, line: int | None = None):
        self.message = message
        self.source = source
        self.field = field
        self.line = line
        where = source + (f":{line}" if line else "")
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")


def policy_version(data: bytes) -> tuple[str, str]:
    """``(short version, full sha256 hex)`` of a policy file's bytes."""
    digest = hashlib.sha256(data).hexdigest()
    return digest[:VERSION_LENGTH], digest


def load_policy(path: str | Path) -> PolicySet:
    """Read and validate a policy file. Raises ``PolicyLoadError``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise PolicyLoadError(f"cannot read policy file: {exc.strerror or exc}", source=str(p)) from exc
    return load_policy_bytes(data, source=str(p), base_dir=p.parent)


def load_policy_text(text: str, *, source: str = "<string>", base_dir: str | Path | None = None) -> PolicySet:
    return load_policy_bytes(text.encode("utf-8"), source=source, base_dir=base_dir)


def load_policy_bytes(data: bytes, *, source: str = "<string>", base_dir: str | Path | None = None) -> PolicySet:
    """Validate a policy from bytes. ``base_dir`` resolves a relative ``cedar.file`` (default: cwd)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyLoadError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=source) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise PolicyLoadError(f"invalid YAML: {exc.problem or exc}", source=source, line=line) from exc
    except yaml.YAMLError as exc:
        raise PolicyLoadError(f"invalid YAML: {exc}", source=source) from exc
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return _Builder(source, lines, Path(base_dir) if base_dir is not None else Path.cwd()).policy(doc, data)


def _index_lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            _index_lines(value_node, path + (key,), out)
            out[path + (key,)] = key_node.start_mark.line + 1  # a field's line is its key's line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, path + (i,), out)


class _Builder:
    def __init__(self, source: str, lines: Mapping[tuple[Any, ...], int], base_dir: Path):
        self.source = source
        self.lines = lines
        self.base_dir = base_dir
        self.cedar: Any = None

    # --- helpers -----------------------------------------------------------------------------------
    def error(self, path: tuple[Any, ...], message: str) -> PolicyLoadError:
        line = None
        probe = path
        while probe is not None:
            if probe in self.lines:
                line = self.lines[probe]
                break
            probe = probe[:-1] if probe else None
        return PolicyLoadError(message, source=self.source, field=_dotted(path) or None, line=line)

    def mapping(self, value: Any, path: tuple[Any, ...], allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.error(path, f"keys must be strings, got {_kind(key)} {key!r}")
            if key not in allowed:
                raise self.error(path + (key,), f"unknown field (allowed: {', '.join(sorted(allowed))})")
        return value

    def string(self, value: Any, path: tuple[Any, ...], *, required: bool = False) -> str | None:
        if value is None:
            if required:
                raise self.error(path, "required field is missing")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(path, f"expected a non-empty string, got {_kind(value)}")
        return value.strip()

    def strings(self, value: Any, path: tuple[Any, ...]) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.error(path, f"expected a list of strings, got {_kind(value)}")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise self.error(path + (i,), f"expected a non-empty string, got {_kind(item)}")
            out.append(item.strip())
        return out

    def number(self, value: Any, path: tuple[Any, ...], *, positive: bool = False, minimum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise self.error(path, f"expected a number, got {_kind(value)}")
        if positive and value <= 0:
            raise self.error(path, f"must be greater than 0, got {value}")
        if minimum is not None and value < minimum:
            raise self.error(path, f"must be at least {minimum:g}, got {value}")
        return float(value)

    def integer(self, value: Any, path: tuple[Any, ...], *, lo: int, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"expected an integer, got {_kind(value)}")
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise self.error(path, f"must be {bound}, got {value}")
        return value

    # --- sections ----------------------------------------------------------------------------------
    def policy(self, doc: Any, data: bytes) -> PolicySet:
        if doc is None:
            raise self.error((), "empty policy file")
        top = self.mapping(doc, (), _TOP)
        policy_id = self.string(top.get("id"), ("id",), required=True)
        if top.get("cedar") is not None:
            data = data + b"\0cedar\0" + self.load_cedar(top["cedar"])
        version, digest = policy_version(data)
        currency = self.string(top.get("currency"), ("currency",)) or "USD"
        fail_mode = self.string(top.get("fail_mode"), ("fail_mode",)) or FAIL_CLOSED
        if fail_mode not in (FAIL_CLOSED, FAIL_OPEN):
            raise self.error(("fail_mode",), f"must be 'closed' or 'open', got {fail_mode!r}")
        default_tier = 1
        if "default_tier" in top:
            default_tier = self.integer(top["default_tier"], ("default_tier",), lo=1, hi=4)
        delegation = self.mapping(top.get("delegation"), ("delegation",), _DELEGATION)
        max_depth = 3
        if "max_depth" in delegation:
            max_depth = self.integer(delegation["max_depth"], ("delegation", "max_depth"), lo=0)
        oversight = self.oversight(top.get("oversight"), ("oversight",), Oversight())
        global_rules = self.rules(top.get("rules"), ("rules",), allow_agents=True)
        agents_raw = top.get("agents")
        if agents_raw is None:
            raise self.error(("agents",), "required field is missing: a policy with no agents denies everything")
        if not isinstance(agents_raw, dict) or not agents_raw:
            raise self.error(("agents",), f"expected a mapping of agent id to agent policy, got {_kind(agents_raw)}")
        agents: dict[str, AgentPolicy] = {}
        seen_rule_ids = {r.id: ("rules",) for r in global_rules}
        for agent_id, body in agents_raw.items():
            if not isinstance(agent_id, str) or not agent_id.strip():
                raise self.error(("agents",), f"agent ids must be non-empty strings, got {agent_id!r}")
            agents[agent_id] = self.agent(agent_id, body, global_rules, oversight, seen_rule_ids)
        for agent_id, agent in agents.items():
            for pattern in agent.may_delegate_to.patterns:
                if not any(Matcher([pattern])(other) for other in agents):
                    raise self.error(("agents", agent_id, "may_delegate_to"),
                                     f"{pattern!r} matches no agent in this policy")
        return PolicySet(
            policy_id=policy_id,
            version=version,
            digest=digest,
            agents=agents,
            source=self.source,
            description=self.string(top.get("description"), ("description",)),
            currency=currency,
            fail_mode=fail_mode,
            default_tier=default_tier,
            max_delegation_depth=max_depth,
            oversight=oversight,
            cedar=self.cedar,
        )

    def load_cedar(self, value: Any) -> bytes:
        """Read the Cedar policies (file or inline); return their bytes, which join the version hash."""
        path = ("cedar",)
        spec = self.mapping(value, path, _CEDAR)
        if ("file" in spec) == ("policies" in spec):
            raise self.error(path, "give exactly one of 'file' (a .cedar file) or 'policies' (inline Cedar text)")
        if "file" in spec:
            name = self.string(spec["file"], path + ("file",))
            cedar_path = Path(name) if Path(name).is_absolute() else self.base_dir / name
            try:
                raw = cedar_path.read_bytes()
            except OSError as exc:
                raise self.error(path + ("file",), f"cannot read Cedar file {str(cedar_path)!r}: {exc.strerror or exc}") from exc
            label, field_path = str(cedar_path), path + ("file",)
        else:
            text = spec["policies"]
            if not isinstance(text, str):
                raise self.error(path + ("policies",), f"expected Cedar text, got {_kind(text)}")
            raw, label, field_path = text.encode("utf-8"), f"{self.source}#cedar", path + ("policies",)
        from govtrace.instrumentation.policy.cedar import CedarRules

        try:
            self.cedar = CedarRules(raw.decode("utf-8"), source=label)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self.error(field_path, str(exc)) from exc
        return raw

    def agent(
        self,
        agent_id: str,
        body: Any,
        global_rules: list[TierRule],
        defaults: Oversight,
        seen_rule_ids: dict[str, tuple[Any, ...]],
    ) -> AgentPolicy:
        path: tuple[Any, ...] = ("agents", agent_id)
        spec = self.mapping(body, path, _AGENT)
        if self.cedar is not None:
            for key in ("scopes", "delegable"):
                if key in spec:
                    raise self.error(path + (key,), "scopes are decided by the Cedar policies when 'cedar' is set")
            scopes, delegable = Scope(), None
        else:
            if "scopes" not in spec:
                raise self.error(path + ("scopes",), "required field is missing: every agent needs its scopes")
            scopes = self.scope(spec["scopes"], path + ("scopes",))
            delegable = self.scope(spec["delegable"], path + ("delegable",)) if spec.get("delegable") is not None else None
        own_rules = self.rules(spec.get("rules"), path + ("rules",), allow_agents=False)
        for rule in own_rules:
            if rule.id in seen_rule_ids:
                raise self.error(path + ("rules",), f"duplicate rule id {rule.id!r} (also in {_dotted(seen_rule_ids[rule.id])})")
            seen_rule_ids[rule.id] = path + ("rules",)
        applicable = [r for r in global_rules if r.agents is None or r.agents(agent_id)]
        rate_limits = []
        raw_limits = spec.get("rate_limits")
        if raw_limits is not None and not isinstance(raw_limits, list):
            raise self.error(path + ("rate_limits",), f"expected a list, got {_kind(raw_limits)}")
        for i, raw in enumerate(raw_limits or []):
            rp = path + ("rate_limits", i)
            r = self.mapping(raw, rp, _RATE)
            if "calls" not in r or "per_seconds" not in r:
                raise self.error(rp, "a rate limit needs 'calls' and 'per_seconds'")
            calls = self.integer(r["calls"], rp + ("calls",), lo=1)
            per = self.number(r["per_seconds"], rp + ("per_seconds",), positive=True)
            tools = self.strings(r.get("tools"), rp + ("tools",)) if "tools" in r else None
            rid = self.string(r.get("id"), rp + ("id",)) or f"{agent_id}.rate_limits[{i}]"
            if any(existing.id == rid for existing in rate_limits):
                raise self.error(rp + ("id",), f"duplicate rate limit id {rid!r}")
            rate_limits.append(RateLimit(id=rid, calls=calls, per_seconds=per, tools=Matcher(tools) if tools is not None else None))
        env_raw = self.mapping(spec.get("envelope"), path + ("envelope",), _ENVELOPE)
        envelope = Envelope(**{k: self.number(v, path + ("envelope", k), positive=True) for k, v in env_raw.items()})
        return AgentPolicy(
            agent_id=agent_id,
            scopes=scopes,
            rules=tuple(applicable + own_rules),
            rate_limits=tuple(rate_limits),
            envelope=envelope,
            oversight=self.oversight(spec.get("oversight"), path + ("oversight",), defaults),
            may_delegate_to=Matcher(self.strings(spec.get("may_delegate_to"), path + ("may_delegate_to",))),
            delegable=delegable,
            description=self.string(spec.get("description"), path + ("description",)),
            owner=self.string(spec.get("owner"), path + ("owner",)),
        )

    def scope(self, value: Any, path: tuple[Any, ...]) -> Scope:
        raw = self.mapping(value, path, _SCOPES)
        operations = self.strings(raw.get("operations"), path + ("operations",))
        for i, op in enumerate(operations):
            if op not in _OPERATIONS:
                raise self.error(path + ("operations", i),
                                 f"unknown operation {op!r} (allowed: {', '.join(sorted(_OPERATIONS))})")
        return Scope(
            tools=Matcher(self.strings(raw.get("tools"), path + ("tools",))),
            resources=Matcher(self.strings(raw.get("resources"), path + ("resources",))),
            operations=frozenset(operations),
        )

    def oversight(self, value: Any, path: tuple[Any, ...], base: Oversight) -> Oversight:
        spec = self.mapping(value, path, _OVERSIGHT)
        review = self.mapping(spec.get("review"), path + ("review",), _REVIEW)
        approval = self.mapping(spec.get("approval"), path + ("approval",), _APPROVAL)
        halt = self.mapping(spec.get("halt"), path + ("halt",), _HALT)
        fields: dict[str, Any] = {}
        if "routed_to" in review:
            fields["review_routed_to"] = self.string(review["routed_to"], path + ("review", "routed_to"))
        if "reversal_window_seconds" in review:
            fields["reversal_window_seconds"] = self.number(
                review["reversal_window_seconds"], path + ("review", "reversal_window_seconds"), minimum=0)
        if "routed_to" in approval:
            fields["approval_routed_to"] = self.string(approval["routed_to"], path + ("approval", "routed_to"))
        if "timeout_seconds" in approval:
            fields["approval_timeout_seconds"] = self.number(
                approval["timeout_seconds"], path + ("approval", "timeout_seconds"), positive=True)
        if "sla_seconds" in approval:
            fields["approval_sla_seconds"] = self.number(
                approval["sla_seconds"], path + ("approval", "sla_seconds"), positive=True)
        if "routed_to" in halt:
            fields["halt_routed_to"] = self.string(halt["routed_to"], path + ("halt", "routed_to"))
        return Oversight(**{**base.__dict__, **fields})

    def rules(self, value: Any, path: tuple[Any, ...], *, allow_agents: bool) -> list[TierRule]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(path, f"expected a list of rules, got {_kind(value)}")
        allowed = _RULE if allow_agents else _RULE - {"agents"}
        out: list[TierRule] = []
        ids: set[str] = set()
        for i, raw in enumerate(value):
            rp = path + (i,)
            spec = self.mapping(raw, rp, allowed)
            rid = self.string(spec.get("id"), rp + ("id",), required=True)
            if rid in ids:
                raise self.error(rp + ("id",), f"duplicate rule id {rid!r}")
            ids.add(rid)
            if "tier" not in spec:
                raise self.error(rp + ("tier",), "required field is missing")
            tier = self.integer(spec["tier"], rp + ("tier",), lo=1, hi=4)
            tools = self.strings(spec.get("tools"), rp + ("tools",)) if "tools" in spec else None
            resources = self.strings(spec.get("resources"), rp + ("resources",)) if "resources" in spec else None
            agents = self.strings(spec.get("agents"), rp + ("agents",)) if "agents" in spec else None
            out.append(
                TierRule(
                    id=rid,
                    tier=tier,
                    when=self.condition(spec.get("when"), rp + ("when",)),
                    tools=Matcher(tools) if tools is not None else None,
                    resources=Matcher(resources) if resources is not None else None,
                    agents=Matcher(agents) if agents is not None else None,
                    reason=self.string(spec.get("reason"), rp + ("reason",)),
                    routed_to=self.string(spec.get("routed_to"), rp + ("routed_to",)),
                    line=self.lines.get(rp),
                )
            )
        return out

    def condition(self, value: Any, path: tuple[Any, ...]) -> Condition:
        spec = self.mapping(value, path, _WHEN)
        fields: dict[str, Any] = {}
        for dim in ("amount", "record_count"):
            if dim in spec:
                fields[dim] = self.range(spec[dim], path + (dim,))
        for dim in ("classification", "regulatory_scope", "operation"):
            if dim in spec:
                values = self.strings(spec[dim], path + (dim,))
                if not values:
                    raise self.error(path + (dim,), "expected at least one value")
                fields[dim] = frozenset(values)
        if "reversible" in spec:
            rev = spec["reversible"]
            if rev not in (True, False, "unknown"):
                raise self.error(path + ("reversible",), f"expected true, false or 'unknown', got {rev!r}")
            fields["reversible"] = rev
        return Condition(**fields)

    def range(self, value: Any, path: tuple[Any, ...]) -> Range:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Range(gte=float(value))
        spec = self.mapping(value, path, _RANGE)
        if not spec:
            raise self.error(path, "expected a number or at least one of gt, gte, lt, lte")
        return Range(**{k: self.number(v, path + (k,)) for k, v in spec.items()})


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)
