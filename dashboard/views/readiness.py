"""Readiness: the five answers for an agent (or the fleet) and a window, with their evidence and downloads."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from govtrace.analytics.readiness import QUESTIONS, Answer
from govtrace.dashboard import data, ui
from govtrace.dashboard.access import record_view
from govtrace.dashboard.session import current

TITLES = {
    "actions": "1 · Actions",
    "authorization": "2 · Authorization",
    "data": "3 · Data",
    "cost": "4 · Cost",
    "boundaries": "5 · Boundaries",
}
QUESTION_TEXT = {
    "actions": "What did the agent do: every tool call, in order, with target, outcome and latency?",
    "authorization": "Who authorized each action, under which policy, rule and version, and who approved it?",
    "data": "What data did it read, write or delete, of which classification, how many records?",
    "cost": "What did it cost per task, hour and day, and did each stay within its envelope?",
    "boundaries": "Which policy boundaries were triggered, and how and how fast was each resolved?",
}


def render() -> None:
    context = current()
    ui.header("Readiness", "The five questions an auditor asks, answered with the spans that prove them")
    agent = ui.agent_picker(allow_fleet=True)
    subject = f"agent {agent}" if agent else "fleet"
    record_view("readiness", subject)
    answers = data.answers(agent)
    _overview(answers)
    slug = (agent or "fleet").replace("/", "_")
    ui.export_button("Download all five answers (JSON)", lambda: _json(answers), f"readiness-{slug}.json",
                     "application/json", f"readiness {subject}", key="download_all",
                     detail=f"all five answers, window {context.window_text()}")
    for tab, question in zip(st.tabs([TITLES[q] for q in QUESTIONS]), QUESTIONS, strict=True):
        with tab:
            _answer(answers[question], subject, slug)


def _overview(answers: dict[str, Answer]) -> None:
    columns = st.columns(len(QUESTIONS))
    for column, question in zip(columns, QUESTIONS, strict=True):
        answer = answers[question]
        with column.container(border=True):
            st.markdown(f"**{TITLES[question]}**")
            ui.status_badge(answer.status)
            st.caption(f"{len(answer.rows)} rows · {len(answer.evidence)} evidence spans")


def _answer(answer: Answer, subject: str, slug: str) -> None:
    st.markdown(f"*{QUESTION_TEXT[answer.question]}*")
    with st.container(border=True):
        ui.status_badge(answer.status)
        st.markdown(f"**{answer.verdict}**")
        ui.coverage(answer.coverage)
    if len(answer.rows):
        ui.table(answer.rows, height=min(38 * (len(answer.rows) + 1), 460))
    breaches = answer.extra.get("breaches") if answer.extra else None
    if breaches:
        st.markdown("**Envelope breaches**")
        ui.table(pd.DataFrame(breaches))
    with st.expander(f"Evidence: {len(answer.evidence)} span ids, and the SQL that produced this answer"):
        st.code("\n".join(answer.evidence) or "(none)", language=None)
        st.code(answer.sql.strip(), language="sql")
    left, right, _ = st.columns([1, 1, 2])
    with left:
        ui.export_button("Answer (JSON)", lambda: _json({answer.question: answer}),
                         f"{answer.question}-{slug}.json", "application/json",
                         f"readiness {answer.question} {subject}", key=f"download_{answer.question}_json")
    with right:
        ui.export_button("Rows (CSV)", lambda: answer.rows.to_csv(index=False).encode(),
                         f"{answer.question}-{slug}.csv", "text/csv",
                         f"readiness {answer.question} {subject}", key=f"download_{answer.question}_csv")


def _json(answers: dict[str, Answer]) -> bytes:
    return json.dumps({q: a.to_dict() for q, a in answers.items()}, indent=2, default=str).encode()


if __name__ == "__main__":
    render()
