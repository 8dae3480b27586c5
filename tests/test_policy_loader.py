"""Policy files: format, versioning by content hash, and load errors that name field and line."""

from __future__ import annotations

import hashlib
import textwrap

import pytest

from govtrace.instrumentation.policy import (
    EXAMPLE_FLEET_POLICY,
    PolicyLoadError,
    load_policy,
    load_policy_text,
)

MINIMAL = textwrap.dedent(
    """\
    id: minimal
    agents:
      a:
        scopes:
          tools: [x.*]
    """
)


def test_policy_version_is_the_short_sha256_of_the_file_bytes(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(MINIMAL.encode())
    policy = load_policy(path)
    digest = hashlib.sha256(MINIMAL.encode()).hexdigest()
    assert policy.digest == digest
    assert policy.version == digest[:12]
    assert policy.policy_id == "minimal"
    assert policy.source == str(path)


def test_any_byte_change_even_a_comment_is_a_new_version():
    assert load_policy_text(MINIMAL).version != load_policy_text(MINIMAL + "# note\n").version


def test_defaults_are_fail_closed_tier_one_usd_and_depth_three():
    policy = load_policy_text(MINIMAL)
    assert (policy.fail_mode, policy.default_tier, policy.currency, policy.max_delegation_depth) == (
        "closed", 1, "USD", 3)
    agent = policy.agents["a"]
    assert agent.scopes.resources.patterns == ()
    assert agent.scopes.operations == frozenset()
    assert agent.oversight.approval_timeout_seconds == 900.0


def test_agent_oversight_overrides_only_the_fields_it_names():
    policy = load_policy_text(textwrap.dedent(
        """\
        id: o
        oversight:
          approval: {routed_to: role:lead, timeout_seconds: 60}
          halt: {routed_to: role:oncall}
        agents:
          a:
            scopes: {tools: [x]}
            oversight:
              approval: {routed_to: role:cfo}
        """))
    ov = policy.agents["a"].oversight
    assert (ov.approval_routed_to, ov.approval_timeout_seconds, ov.halt_routed_to) == ("role:cfo", 60.0, "role:oncall")


def test_a_top_level_rule_with_agents_applies_only_to_those_agents():
    policy = load_policy_text(textwrap.dedent(
        """\
        id: r
        rules:
          - {id: only-a, tier: 3, agents: [a]}
        agents:
          a: {scopes: {tools: [x]}, rules: [{id: own, tier: 2}]}
          b: {scopes: {tools: [x]}}
        """))
    assert [r.id for r in policy.agents["a"].rules] == ["only-a", "own"]
    assert [r.id for r in policy.agents["b"].rules] == []


def test_an_unknown_field_is_named_with_its_line():
    text = MINIMAL.replace("      tools: [x.*]\n", "      tools: [x.*]\n      tool: [y]\n")
    with pytest.raises(PolicyLoadError) as err:
        load_policy_text(text, source="fleet.yaml")
    assert err.value.field == "agents.a.scopes.tool"
    assert err.value.line == 6
    assert str(err.value).startswith("fleet.yaml:6: agents.a.scopes.tool: unknown field")


def test_a_wrong_type_inside_a_list_names_the_list_index_and_line():
    text = textwrap.dedent(
        """\
        id: t
        agents:
          a:
            scopes:
              tools:
                - x
                - 42
        """)
    with pytest.raises(PolicyLoadError) as err:
        load_policy_text(text)
    assert (err.value.field, err.value.line) == ("agents.a.scopes.tools[1]", 7)
    assert "expected a non-empty string, got an integer" in str(err.value)


def test_a_tier_outside_one_to_four_is_refused():
    text = MINIMAL + "rules:\n  - {id: r, tier: 5}\n"
    with pytest.raises(PolicyLoadError) as err:
        load_policy_text(text)
    assert err.value.field == "rules[0].tier"
    assert err.value.line == 7
    assert "must be between 1 and 4, got 5" in str(err.value)


def test_a_missing_policy_id_is_refused():
    with pytest.raises(PolicyLoadError, match="id: required field is missing"):
        load_policy_text("agents:\n  a: {scopes: {tools: [x]}}\n")


def test_an_agent_without_scopes_is_refused():
    with pytest.raises(PolicyLoadError) as err:
        load_policy_text("id: p\nagents:\n  a:\n    description: nothing\n")
    assert err.value.field == "agents.a.scopes"


def test_an_unknown_operation_is_refused():
    with pytest.raises(PolicyLoadError, match=r"agents\.a\.scopes\.operations\[0\]: unknown operation 'erase'"):
        load_policy_text("id: p\nagents:\n  a: {scopes: {tools: [x], operations: [erase]}}\n")


def test_duplicate_rule_ids_are_refused():
    with pytest.raises(PolicyLoadError, match="duplicate rule id 'r'"):
        load_policy_text(MINIMAL + "rules:\n  - {id: r, tier: 2}\n  - {id: r, tier: 3}\n")


def test_delegation_to_an_agent_that_does_not_exist_is_refused():
    with pytest.raises(PolicyLoadError, match="'ghost' matches no agent"):
        load_policy_text("id: p\nagents:\n  a: {scopes: {tools: [x]}, may_delegate_to: [ghost]}\n")


def test_invalid_yaml_reports_the_line():
    with pytest.raises(PolicyLoadError) as err:
        load_policy_text("id: p\nagents:\n  a: {scopes: [\n", source="bad.yaml")
    assert err.value.line is not None
    assert "invalid YAML" in str(err.value)


def test_a_missing_file_is_a_load_error_not_an_os_error(tmp_path):
    with pytest.raises(PolicyLoadError, match="cannot read policy file"):
        load_policy(tmp_path / "absent.yaml")


def test_the_example_fleet_policy_loads_with_six_agents_and_an_orchestrator_that_delegates():
    policy = load_policy(EXAMPLE_FLEET_POLICY)
    assert policy.policy_id == "acme-fleet"
    specialists = ["finance-agent", "hr-agent", "it-agent", "procurement-agent", "support-agent"]
    assert sorted(policy.agents) == sorted([*specialists, "ops-orchestrator"])
    orchestrator = policy.agents["ops-orchestrator"]
    assert all(orchestrator.may_delegate_to(a) for a in specialists)
    assert all(policy.agents[a].envelope.per_day for a in policy.agents)


def test_duplicate_rate_limit_ids_within_an_agent_are_refused():
    with pytest.raises(PolicyLoadError, match=r"agents\.a\.rate_limits\[1\]\.id: duplicate rate limit id 'r'"):
        load_policy_text("id: p\nagents:\n  a:\n    scopes: {tools: [x]}\n    rate_limits:\n"
                         "      - {id: r, calls: 1, per_seconds: 1}\n      - {id: r, calls: 2, per_seconds: 1}\n")
