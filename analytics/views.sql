-- govtrace analytics views: the documented SQL behind every answer.
--
-- Each block is one view over the `spans` table (collector/schema.py), introduced by a
-- `-- view: NAME` line and a comment saying what a row means. The analytics reuse this exact text:
-- they narrow each `FROM spans` to the window and agent asked about and inline the views as
-- common table expressions, so the SQL kept on an answer is self-contained and re-runnable on any
-- copy of the table. `govtrace views` prints the file; `install_views()` creates the views.
--
-- Conventions: times are UTC (TIMESTAMP_NS without zone); ids are lower-case hex; a NULL means
-- the telemetry did not say, never "none".
--
-- `model_prices` (model, input_per_mtok, output_per_mtok, currency, price_version) is not in this
-- file: it is generated from the offline price table analytics/prices.yaml (see costs.py).

-- view: canonical_spans
-- Every span once. Two instrumentations in one process (OpenInference and govtrace's own, say) can
-- record the same operation twice: a tool call with the same trace and tool call id, or a model
-- call with the same trace and the same input and output token counts. Of such a group only the
-- spans of one instrumentation scope are kept, in this order of preference: govtrace, the OTel
-- GenAI conventions, OpenLLMetry, OpenInference, MCP, others (spans of the kept scope all stay:
-- one instrumentation recording two equal calls recorded two calls). `recorded_by` counts the
-- instrumentations that recorded the operation; a cost missing on the kept span is taken from its
-- duplicate. (A span stored twice by a retried export cannot occur: the store drops retries.)
CREATE OR REPLACE VIEW canonical_spans AS
WITH keyed AS (
  SELECT COLUMNS(lambda c: c <> 'record'),
         CASE
           WHEN operation = 'execute_tool' AND tool_call_id IS NOT NULL THEN hash(trace_id, 'tool', tool_call_id)
           WHEN input_tokens IS NOT NULL AND output_tokens IS NOT NULL
             THEN hash(trace_id, 'usage', input_tokens, output_tokens)
           ELSE hash(trace_id, span_id)
         END AS dup_key,
         CASE flavor WHEN 'govtrace' THEN 0 WHEN 'otel_genai' THEN 1 WHEN 'openllmetry' THEN 2
                     WHEN 'openinference' THEN 3 WHEN 'mcp' THEN 4 ELSE 5 END AS flavor_rank
  FROM spans
), doubled AS (
  SELECT dup_key, min((flavor_rank, coalesce(scope_name, ''))) AS kept,
         count(DISTINCT coalesce(scope_name, '')) AS recorded_by, max(cost_amount) AS dup_cost
  FROM keyed
  GROUP BY dup_key
  HAVING count(*) > 1
)
SELECT keyed.* EXCLUDE (dup_key, flavor_rank) REPLACE (coalesce(keyed.cost_amount, doubled.dup_cost) AS cost_amount),
       coalesce(doubled.recorded_by, 1) AS recorded_by
FROM keyed
LEFT JOIN doubled ON doubled.dup_key = keyed.dup_key
WHERE doubled.dup_key IS NULL OR (keyed.flavor_rank, coalesce(keyed.scope_name, '')) = doubled.kept;

-- view: escalation_resolutions
-- The decision on each escalation, wherever it was recorded: on the request span itself or on a
-- later span in another trace (an approval that arrived after the call), which is why this view
-- reads every trace (the analytics read the window's escalations and the day after it). When
-- several decisions exist the latest recorded one stands; `decisions` counts them.
-- `decided_time` is the decision's own timestamp (`decided_at`), else the end of the span that
-- carried it.
CREATE OR REPLACE VIEW escalation_resolutions AS
SELECT escalation_id,
       escalation_outcome AS outcome,
       approver_id,
       approver_role,
       coalesce(timezone('UTC', try_cast(decided_at AS TIMESTAMPTZ)), end_time, start_time) AS decided_time,
       span_id AS resolution_span_id,
       trace_id AS resolution_trace_id,
       count(*) OVER (PARTITION BY escalation_id) AS decisions
FROM spans
WHERE escalation_id IS NOT NULL AND escalation_outcome IS NOT NULL AND escalation_outcome <> 'pending'
QUALIFY row_number() OVER (PARTITION BY escalation_id ORDER BY start_time DESC, seq DESC) = 1;

-- view: actions
-- Every tool call, with its final outcome: blocked by policy (deny), blocked by a human or by the
-- deadline (denied, expired, auto_denied), halted (tier 4 never runs), pending approval, error, or
-- ok. A deny or escalate in log-only mode did not stop the call. `approval` is the escalation's
-- final outcome, possibly decided later in another trace.
CREATE OR REPLACE VIEW actions AS
SELECT c.start_time, c.trace_id AS task, c.span_id, c.agent_id, c.tool_name, c.tool_call_id,
       coalesce(c.action_target, c.data_resource) AS target, c.data_resource, c.data_operation,
       c.arguments_digest, c.policy_effect, c.policy_tier, c.policy_mode, c.escalation_id,
       r.outcome AS approval,
       CASE
         WHEN c.policy_mode = 'log_only' AND c.policy_effect IN ('deny', 'escalate') AND c.status_code = 'ERROR'
           THEN 'error: ' || coalesce(c.error_type, '_OTHER')
         WHEN c.policy_mode = 'log_only' AND c.policy_effect IN ('deny', 'escalate')
           THEN 'ok (log-only ' || c.policy_effect || ')'
         WHEN c.policy_effect = 'deny' THEN 'blocked: denied by policy'
         WHEN r.outcome IN ('denied', 'expired', 'auto_denied') THEN 'blocked: ' || r.outcome
         WHEN c.policy_effect = 'escalate' AND r.outcome IS NULL AND c.policy_tier >= 4
           THEN 'blocked: halted (tier 4)'
         WHEN c.policy_effect = 'escalate' AND r.outcome IS NULL THEN 'pending approval'
         WHEN c.status_code = 'ERROR' THEN 'error: ' || coalesce(c.error_type, '_OTHER')
         WHEN r.outcome = 'approved' THEN 'ok (approved)'
         ELSE 'ok'
       END AS outcome,
       c.duration_ms AS latency_ms, c.recorded_by
FROM canonical_spans c
LEFT JOIN escalation_resolutions r ON r.escalation_id = c.escalation_id
WHERE c.operation = 'execute_tool';

-- view: escalations
-- One row per escalation: the request (the first span naming the escalation id that is not itself
-- an approval record) joined to its resolution. `outcome` is 'open' while no decision is recorded.
-- `time_to_decision_s` runs from the request's start to the decision.
CREATE OR REPLACE VIEW escalations AS
SELECT q.escalation_id, q.trace_id AS task, q.span_id AS request_span_id, q.agent_id, q.tool_name,
       coalesce(q.policy_tier, 3) AS tier, q.policy_rule_id, q.escalation_routed_to AS routed_to,
       q.escalation_sla_seconds AS sla_seconds, q.start_time AS requested_at,
       coalesce(r.outcome, 'open') AS outcome, r.approver_id, r.approver_role, r.decided_time AS decided_at,
       date_diff('millisecond', q.start_time, r.decided_time) / 1000.0 AS time_to_decision_s,
       r.resolution_span_id, r.resolution_trace_id
FROM canonical_spans q
LEFT JOIN escalation_resolutions r ON r.escalation_id = q.escalation_id
WHERE q.escalation_id IS NOT NULL AND q.operation IS DISTINCT FROM 'govtrace.approval'
QUALIFY row_number() OVER (PARTITION BY q.escalation_id ORDER BY q.start_time, q.span_id) = 1;

-- view: data_access
-- Every recorded access to data: resource, operation (read, write, delete, send, execute),
-- classification and record count, by the span that did it.
CREATE OR REPLACE VIEW data_access AS
SELECT start_time, trace_id AS task, span_id, agent_id, tool_name, data_resource AS resource,
       data_operation AS operation, data_classification AS classification, data_record_count AS record_count
FROM canonical_spans
WHERE data_resource IS NOT NULL;

-- view: span_costs
-- The cost of every span that costs something: the reported amount when the span carries one,
-- else tokens times the offline price of its model (`computed`), else NULL with basis 'unknown'
-- (a model call or token-bearing span whose model has no price).
CREATE OR REPLACE VIEW span_costs AS
SELECT c.start_time, c.trace_id AS task, c.span_id, c.agent_id, c.operation, c.model,
       c.input_tokens, c.output_tokens,
       CASE
         WHEN c.cost_amount IS NOT NULL THEN c.cost_amount
         WHEN p.model IS NOT NULL
           THEN coalesce(c.input_tokens, 0) * p.input_per_mtok / 1e6 + coalesce(c.output_tokens, 0) * p.output_per_mtok / 1e6
       END AS cost,
       CASE WHEN c.cost_amount IS NOT NULL THEN coalesce(c.cost_currency, 'USD') ELSE p.currency END AS currency,
       CASE
         WHEN c.cost_amount IS NOT NULL THEN coalesce(c.cost_source, 'reported')
         WHEN p.model IS NOT NULL THEN 'computed'
         ELSE 'unknown'
       END AS cost_basis,
       CASE WHEN c.cost_amount IS NULL THEN p.price_version END AS price_version
FROM canonical_spans c
LEFT JOIN model_prices p ON p.model = c.model
WHERE c.cost_amount IS NOT NULL OR c.input_tokens IS NOT NULL OR c.output_tokens IS NOT NULL OR c.operation = 'chat';

-- view: agent_activity
-- Every agent identity seen in telemetry: first and last span, how many spans and tool calls.
CREATE OR REPLACE VIEW agent_activity AS
SELECT agent_id, min(start_time) AS first_seen, max(start_time) AS last_seen,
       arg_max(span_id, start_time) AS last_span_id, count(*) AS spans,
       count(*) FILTER (WHERE operation = 'execute_tool') AS tool_calls,
       any_value(agent_name) AS agent_name, any_value(agent_owner) AS agent_owner
FROM spans
WHERE agent_id IS NOT NULL
GROUP BY agent_id;

-- view: permission_use
-- Which tools, resources and operations each agent exercised: one row per (agent, kind, name).
-- `executed` counts calls that were not blocked (a call denied by policy or by a human did not
-- use the permission); `blocked` counts the attempts that were stopped. `executed_span_ids` holds
-- the 50 most recent executed calls.
CREATE OR REPLACE VIEW permission_use AS
WITH uses AS (
  SELECT agent_id, 'tool' AS kind, tool_name AS name, start_time, span_id, outcome FROM actions
  WHERE tool_name IS NOT NULL
  UNION ALL
  SELECT agent_id, 'resource', data_resource, start_time, span_id, outcome FROM actions
  WHERE data_resource IS NOT NULL
  UNION ALL
  SELECT agent_id, 'operation', data_operation, start_time, span_id, outcome FROM actions
  WHERE data_operation IS NOT NULL
)
SELECT agent_id, kind, name,
       count(*) FILTER (WHERE NOT starts_with(outcome, 'blocked') AND outcome <> 'pending approval') AS executed,
       count(*) FILTER (WHERE starts_with(outcome, 'blocked') OR outcome = 'pending approval') AS blocked,
       max(start_time) FILTER (WHERE NOT starts_with(outcome, 'blocked') AND outcome <> 'pending approval')
         AS last_executed,
       list(span_id ORDER BY start_time DESC, span_id)
         FILTER (WHERE NOT starts_with(outcome, 'blocked') AND outcome <> 'pending approval')[1:50]
         AS executed_span_ids
FROM uses
WHERE agent_id IS NOT NULL
GROUP BY agent_id, kind, name;

-- view: span_links
-- One row per span link, read from the stored record (lossless, so slow on large stores: the
-- decision chain uses the typed `link_trace_ids` column when the store has it).
CREATE OR REPLACE VIEW span_links AS
SELECT spans.trace_id, spans.span_id, l.link.trace_id AS linked_trace_id, l.link.span_id AS linked_span_id
FROM spans,
     unnest(from_json(json_extract(spans.record, '$.links'), '[{"trace_id": "VARCHAR", "span_id": "VARCHAR"}]')) AS l(link);
