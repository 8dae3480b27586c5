"""The readiness answers as OSCAL assessment-results, built with compliance-trestle's models.

One result for the window; per readiness question one observation (the verdict, the coverage
sentences, the figures as properties, the bundle files as relevant evidence with their SHA-256) and
one finding on a govtrace objective, ``satisfied`` only when the answer is complete. The mapping
from questions to EU AI Act articles, NIST AI RMF subcategories and ISO/IEC 42001 controls is
govtrace's proposal, said so in the document, for a compliance function to confirm.

``validate`` is what ``govtrace verify`` runs: the trestle models (the OSCAL schema) and trestle's
own validators, as ``trestle validate`` does, plus the allowed values the schema does not enforce
(methods, target types, states), which trestle accepts unchecked.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

NS = "https://govtrace.dev/ns/oscal"
OBJECTIVE = "govtrace-readiness-{}"
CONTROLS = {
    "actions": ["eu-ai-act-art-12.1", "iso-iec-42001-a.6.2.8"],
    "authorization": ["eu-ai-act-art-14.4", "nist-ai-rmf-manage-4.1", "nist-ai-rmf-measure-2.7"],
    "data": ["nist-ai-rmf-measure-2.7", "iso-iec-42001-a.9"],
    "cost": ["eu-ai-act-art-12.2.b", "nist-ai-rmf-measure-2.4"],
    "boundaries": ["eu-ai-act-art-12.2.a", "eu-ai-act-art-14.4", "nist-ai-rmf-manage-4.1"],
}
ALLOWED_METHODS = {"EXAMINE", "INTERVIEW", "TEST", "UNKNOWN"}
ALLOWED_TARGETS = {"objective-id", "statement-id"}
ALLOWED_STATES = {"satisfied", "not-satisfied"}


def build(*, bundle_id: str, agent: str, since: datetime, until: datetime, created: datetime,
          answers: Mapping[str, Mapping[str, Any]], figures: Mapping[str, Mapping[str, Any]],
          evidence: Mapping[str, list[tuple[str, str]]], registry_entry: Mapping[str, Any] | None) -> bytes:
    """The assessment-results document; ``evidence[question]`` lists (bundle path, sha256)."""
    from trestle.oscal import OSCAL_VERSION
    from trestle.oscal import assessment_results as ar
    from trestle.oscal import common as c

    def uid(*parts: str) -> str:
        return str(uuid.uuid5(uuid.UUID(bundle_id), "/".join(parts)))

    def prop(name: str, value: Any) -> c.Property:
        return c.Property(name=name, value=str(value), ns=NS)

    component = uid("component", agent)
    observations, findings = [], []
    for question, answer in answers.items():
        table = answer.get("table")
        props = [prop("readiness-status", answer["status"])]
        for key, value in (figures.get(table) or {}).items():
            if value is not None:
                props.append(prop(f"{table}.{key}", value))
        observation = uid("observation", question)
        observations.append(c.Observation(
            uuid=observation,
            title=f"Readiness: {question}",
            description=_text(answer["verdict"], answer.get("coverage") or []),
            props=props,
            methods=["TEST"],
            types=["finding"],
            subjects=[c.SubjectReference(subject_uuid=component, type="component")],
            relevant_evidence=[
                c.RelevantEvidence(href=path, description=f"bundle file {path}", props=[prop("sha256", digest)])
                for path, digest in evidence.get(question, [])
            ] or None,
            collected=created,
        ))
        findings.append(c.Finding(
            uuid=uid("finding", question),
            title=f"Readiness question: {question}",
            description=answer["verdict"],
            props=[prop("control-mapping", control) for control in CONTROLS.get(question, [])],
            target=c.FindingTarget(
                type="objective-id", target_id=OBJECTIVE.format(question),
                status=c.ObjectiveStatus(state="satisfied" if answer["status"] == "complete" else "not-satisfied"),
            ),
            related_observations=[c.RelatedObservation(observation_uuid=observation)],
        ))
    entry = registry_entry or {}
    result = ar.Result(
        uuid=uid("result"),
        title=f"govtrace readiness of agent {agent}",
        description=f"The five readiness questions for agent {agent} over [{since.isoformat()}, {until.isoformat()}), "
                    "answered from the events of this evidence bundle.",
        start=since,
        end=until,
        local_definitions=ar.LocalDefinitions1(components=[c.SystemComponent(
            uuid=component, type="service", title=f"AI agent {agent}",
            description=entry.get("purpose") or f"The AI agent whose telemetry carries gen_ai.agent.id = {agent}.",
            props=[prop("agent-id", agent)] + ([prop("owner", entry["owner"])] if entry.get("owner") else []),
            status=c.Status(state="operational"),
        )]),
        reviewed_controls=c.ReviewedControls(
            description="Controls govtrace maps to the readiness questions (a proposal to confirm, not legal advice).",
            control_selections=[c.ControlSelections(include_controls=[
                c.SelectControlById(control_id=control)
                for control in sorted({x for cs in CONTROLS.values() for x in cs})
            ])],
        ),
        observations=observations,
        findings=findings,
    )
    document = ar.AssessmentResults(
        uuid=uid("assessment-results"),
        metadata=c.Metadata(title=f"govtrace evidence bundle {bundle_id}: agent {agent}", last_modified=created,
                            version="1", oscal_version=OSCAL_VERSION,
                            props=[prop("bundle-id", bundle_id), prop("agent-id", agent)]),
        import_ap=ar.ImportAp(href="urn:govtrace:assessment-plan:readiness-v1",
                              remarks="govtrace's five readiness questions; no separate OSCAL assessment plan."),
        results=[result],
    )
    return document.oscal_serialize_json_bytes(pretty=True)


def validate(data: bytes) -> list[str]:
    """Problems with an assessment-results document (empty when valid)."""
    # The factory module first: importing all_validator on its own trips a circular import in trestle.
    import trestle.core.validator_factory  # noqa: F401
    from pydantic import ValidationError
    from trestle.core.all_validator import AllValidator
    from trestle.oscal import assessment_results as ar

    try:
        body = json.loads(data)["assessment-results"]
        model = ar.AssessmentResults.model_validate(body)
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        return [f"not valid OSCAL assessment-results: {str(exc)[:500]}"]
    problems = []
    validator = AllValidator()
    if not validator.model_is_valid(model, True, None):
        problems.append(f"trestle validation failed: {validator.error_msg()}")
    for result in body.get("results") or []:
        for o in result.get("observations") or []:
            bad = set(o.get("methods") or []) - ALLOWED_METHODS
            if bad:
                problems.append(f"observation {o.get('uuid')}: methods {sorted(bad)} are not OSCAL allowed values")
        for f in result.get("findings") or []:
            target = f.get("target") or {}
            if target.get("type") not in ALLOWED_TARGETS:
                problems.append(f"finding {f.get('uuid')}: target type {target.get('type')!r} is not allowed")
            state = (target.get("status") or {}).get("state")
            if state not in ALLOWED_STATES:
                problems.append(f"finding {f.get('uuid')}: status {state!r} is not allowed")
    return problems


def evidence_refs(data: bytes) -> list[tuple[str, str]]:
    """(href, sha256) of every relevant-evidence entry, for checking against the bundle's files."""
    body = json.loads(data)["assessment-results"]
    out = []
    for result in body.get("results") or []:
        for o in result.get("observations") or []:
            for ev in o.get("relevant-evidence") or []:
                digest = next((p["value"] for p in ev.get("props") or [] if p.get("name") == "sha256"), None)
                out.append((ev.get("href"), digest))
    return out


def _text(verdict: str, coverage: list[str]) -> str:
    if not coverage:
        return verdict
    return verdict + " What the telemetry does not say: " + "; ".join(coverage) + "."
