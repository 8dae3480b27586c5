"""Every attribute key govtrace emits or reads, defined once.

Two families:
- the OpenTelemetry GenAI semantic conventions (``gen_ai.*``), reused for what they cover;
- our own ``govtrace.*`` namespace, only for what the conventions lack: policy decisions, human
  oversight, data access, cost, delegation and action properties. Shapes follow the open OTel
  proposals (genai #239 decisions, #427 guardrails, #443 cost) so that a later migration is a rename.

Each key is documented in ``docs/attributes.md``; a test fails when one is missing there.
"""

from __future__ import annotations

# --- OpenTelemetry GenAI semantic conventions (v1.41.1 / semantic-conventions-genai) -------------
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_AGENT_ID = "gen_ai.agent.id"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_AGENT_VERSION = "gen_ai.agent.version"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
# The workflow a framework run belongs to (invoke_workflow spans: one OpenAI Agents SDK run, its handoffs
# included, under one root span).
GEN_AI_WORKFLOW_NAME = "gen_ai.workflow.name"
GEN_AI_USAGE_COST_AMOUNT = "gen_ai.usage.cost.amount"  # open proposal #443, read when present
GEN_AI_USAGE_COST_CURRENCY = "gen_ai.usage.cost.currency"
ERROR_TYPE = "error.type"
SERVICE_NAME = "service.name"
SERVICE_INSTANCE_ID = "service.instance.id"
DEPLOYMENT_ENVIRONMENT = "deployment.environment.name"

# Operation names (values of gen_ai.operation.name).
OP_INVOKE_AGENT = "invoke_agent"
OP_EXECUTE_TOOL = "execute_tool"
OP_CHAT = "chat"
OP_INVOKE_WORKFLOW = "invoke_workflow"  # a multi-agent run (OpenAI Agents SDK Runner.run), parent of its agents
OP_APPROVAL = "govtrace.approval"  # our own: a human decision on an escalation, possibly in a later trace

# --- govtrace.agent: static identity, normally resource attributes --------------------------------
AGENT_OWNER = "govtrace.agent.owner"
AGENT_CREDENTIAL = "govtrace.agent.credential"  # id of the credential the agent presented (never the secret)

# --- govtrace.policy: the decision made before a tool ran -----------------------------------------
POLICY_DECISION_ID = "govtrace.policy.decision_id"
POLICY_EFFECT = "govtrace.policy.effect"  # allow | deny | escalate
POLICY_ID = "govtrace.policy.id"
POLICY_RULE_ID = "govtrace.policy.rule_id"
POLICY_VERSION = "govtrace.policy.version"  # content hash of the policy file
POLICY_TIER = "govtrace.policy.tier"  # 1 autonomous, 2 supervised, 3 approval required, 4 halt
POLICY_REASONS = "govtrace.policy.reasons"  # string[]
POLICY_MODE = "govtrace.policy.mode"  # enforce | log_only
POLICY_BOUNDARY = "govtrace.policy.boundary"  # scope | tier | rate_limit | envelope | delegation

# --- govtrace.oversight: human approval of escalated actions --------------------------------------
OVERSIGHT_ESCALATION_ID = "govtrace.oversight.escalation_id"
OVERSIGHT_TIER = "govtrace.oversight.tier"
OVERSIGHT_ROUTED_TO = "govtrace.oversight.routed_to"
OVERSIGHT_DEADLINE = "govtrace.oversight.deadline"  # ISO 8601 UTC
OVERSIGHT_SLA_SECONDS = "govtrace.oversight.sla_seconds"
OVERSIGHT_APPROVER_ID = "govtrace.oversight.approver.id"
OVERSIGHT_APPROVER_ROLE = "govtrace.oversight.approver.role"
OVERSIGHT_OUTCOME = "govtrace.oversight.outcome"  # pending | approved | denied | expired | auto_denied
OVERSIGHT_DECIDED_AT = "govtrace.oversight.decided_at"  # ISO 8601 UTC
OVERSIGHT_ARGUMENTS_DIGEST = "govtrace.oversight.arguments_digest"  # sha256 of the exact call approved
OVERSIGHT_REVERSAL_WINDOW_SECONDS = "govtrace.oversight.reversal_window_seconds"  # tier 2
# Why an oversight step ended as it did: the approver's comment, or why the enforcement point rejected
# an answer (digest / policy version mismatch, late, no approver) or auto-denied (no handler, fault).
OVERSIGHT_REASON = "govtrace.oversight.reason"

# --- govtrace.data: what data the action touched ---------------------------------------------------
DATA_RESOURCE = "govtrace.data.resource"
DATA_OPERATION = "govtrace.data.operation"  # read | write | delete | send | execute
DATA_CLASSIFICATION = "govtrace.data.classification"  # public | internal | confidential | restricted | pii
DATA_RECORD_COUNT = "govtrace.data.record_count"

# --- govtrace.cost: what the step cost (mirrors gen_ai.usage.cost.* of proposal #443) -------------
COST_AMOUNT = "govtrace.cost.amount"
COST_CURRENCY = "govtrace.cost.currency"  # ISO 4217
COST_SOURCE = "govtrace.cost.source"  # reported | computed | estimated (ToolRequest.estimated_cost, nothing reported)
# A cost envelope breached by the step (on the govtrace.cost.envelope_breach event and the span).
COST_ENVELOPE_PERIOD = "govtrace.cost.envelope.period"  # task | hour | day
COST_ENVELOPE_LIMIT = "govtrace.cost.envelope.limit"  # the ceiling, in COST_CURRENCY units
COST_ENVELOPE_SPENT = "govtrace.cost.envelope.spent"  # spend in the period including this step

# --- govtrace.delegation: on whose behalf -----------------------------------------------------------
DELEGATION_ACTING_FOR = "govtrace.delegation.acting_for"  # the human or service principal
DELEGATION_DELEGATING_AGENT = "govtrace.delegation.delegating_agent"
DELEGATION_SCOPES = "govtrace.delegation.scopes"  # string[]
DELEGATION_DEPTH = "govtrace.delegation.depth"

# --- govtrace.action: properties of the action itself ----------------------------------------------
ACTION_ARGUMENTS_DIGEST = "govtrace.action.arguments_digest"  # sha256 hex of canonical arguments
ACTION_TARGET = "govtrace.action.target"  # whom or what the action is aimed at (endpoint, recipient)
ACTION_AMOUNT = "govtrace.action.amount"  # money moved by the action, in COST_CURRENCY units
ACTION_REVERSIBLE = "govtrace.action.reversible"
ACTION_REGULATORY_SCOPE = "govtrace.action.regulatory_scope"  # string[], e.g. ["gdpr", "sox"]

# --- govtrace.registry: each load of agents.yaml, recorded as an audit event ----------------------
OP_REGISTRY_LOAD = "govtrace.registry.load"  # operation and span name of a registry load
REGISTRY_VERSION = "govtrace.registry.version"  # sha256 of the file's bytes
REGISTRY_PATH = "govtrace.registry.path"
REGISTRY_AGENTS = "govtrace.registry.agents"  # number of entries
REGISTRY_CONTENT = "govtrace.registry.content"  # canonical JSON of the validated entries
REGISTRY_LOADED_BY = "govtrace.registry.loaded_by"

# --- stamped by the collector, never trusted from a sender ----------------------------------------
INGEST_PRINCIPAL = "govtrace.ingest.principal"

# Span event names.
EVENT_POLICY_DECISION = "govtrace.policy.decision"
EVENT_OVERSIGHT_REQUESTED = "govtrace.oversight.requested"
EVENT_OVERSIGHT_DECIDED = "govtrace.oversight.decided"
EVENT_OVERSIGHT_REVIEW = "govtrace.oversight.review"
EVENT_ACTION_EXECUTED = "govtrace.action.executed"
EVENT_ACTION_BLOCKED = "govtrace.action.blocked"
EVENT_ENVELOPE_BREACH = "govtrace.cost.envelope_breach"  # this step exceeded a cost envelope: the agent halts

EFFECTS = ("allow", "deny", "escalate")
OVERSIGHT_OUTCOMES = ("pending", "approved", "denied", "expired", "auto_denied")


def all_keys() -> dict[str, str]:
    """Every attribute key and event name defined here, by constant name."""
    return {
        name: value
        for name, value in globals().items()
        if name.isupper() and isinstance(value, str) and ("." in value) and name not in ("EFFECTS",)
    }
