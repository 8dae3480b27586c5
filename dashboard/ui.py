"""Small pieces every view uses, so that the screens look and behave alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from govtrace.dashboard import data
from govtrace.dashboard.access import guarded_export
from govtrace.dashboard.auth import EXPORT
from govtrace.dashboard.session import current

STATUS = {
    "complete": ("complete", "green"),
    "gaps": ("gaps in telemetry", "orange"),
    "no_data": ("no data", "gray"),
    "breach": ("breach", "red"),
}


def header(title: str, purpose: str) -> None:
    st.title(title)
    st.caption(f"{purpose} · window: {current().window_text()}")


def status_badge(status: str) -> None:
    label, colour = STATUS.get(status, (status, "gray"))
    st.badge(label, color=colour)


def coverage(notes: list[str]) -> None:
    """Where the telemetry is silent, said plainly rather than shown as an empty table."""
    for note in notes:
        st.markdown(f":orange[:material/warning:] {note}")


def agent_picker(key: str = "agent", label: str = "Agent", allow_fleet: bool = False) -> str | None:
    agents = data.load("agent_ids")
    options: list[str | None] = ([None] if allow_fleet else []) + list(agents)
    if not options:
        return None
    remembered = st.session_state.get(f"_{key}_choice") or st.query_params.get("agent")
    index = options.index(remembered) if remembered in options else 0
    choice = st.selectbox(label, options, index=index, key=f"{key}_select",
                          format_func=lambda a: "All agents (fleet)" if a is None else a)
    st.session_state[f"_{key}_choice"] = choice
    return choice


def table(frame: pd.DataFrame, height: int | str = "auto", **column_config: Any) -> None:
    st.dataframe(_readable(frame), hide_index=True, width="stretch", height=height,
                 column_config=_config(frame, column_config))


def export_button(label: str, make: Callable[[], bytes], file_name: str, mime: str, what: str,
                  key: str, detail: str = "") -> None:
    """A download that is recorded as an export, offered only to people allowed to export."""
    if not current().user.may(EXPORT):
        st.button(label, key=key, disabled=True, icon=":material/lock:",
                  help="Only the compliance role exports data from govtrace.")
        return
    st.download_button(label, data=guarded_export(make, what, detail), file_name=file_name, mime=mime,
                       key=key, on_click="ignore", icon=":material/download:")


def money(amount: Any, currency: str = "USD") -> str:
    if amount is None or pd.isna(amount):
        return "unknown"
    # Sub-cent amounts keep four decimals so that a cheap agent does not read as free.
    return f"{amount:,.4f} {currency}" if 0 < amount < 0.01 else f"{amount:,.2f} {currency}"


def empty(message: str) -> None:
    st.info(message, icon=":material/info:")


INVESTIGATE_TRACE = "_investigate_trace"
INVESTIGATE_SPAN = "_investigate_span"


def table_to_investigate(frame: pd.DataFrame, key: str, height: int | str = "auto", **column_config: Any) -> None:
    """A table whose rows open their task in Investigate, for people allowed to investigate."""
    if not current().user.may("investigate") or "trace_id" not in frame:
        table(frame, height=height, **column_config)
        return
    # A fresh widget key after each jump, so that coming back does not jump again.
    generation = st.session_state.get(f"_{key}_generation", 0)
    event = st.dataframe(_readable(frame), hide_index=True, width="stretch", height=height,
                         column_config=_config(frame, column_config), on_select="rerun",
                         selection_mode="single-row", key=f"{key}_{generation}")
    st.caption("Select a row to open its decision chain in Investigate.")
    rows = event.selection.rows if event else []
    if rows:
        row = frame.iloc[rows[0]]
        st.session_state[f"_{key}_generation"] = generation + 1
        span_id = row.get("span_id")
        open_in_investigate(str(row["trace_id"]), span_id if isinstance(span_id, str) else None)


def open_in_investigate(trace_id: str, span_id: str | None = None) -> None:
    st.session_state[INVESTIGATE_TRACE] = trace_id
    st.session_state[INVESTIGATE_SPAN] = span_id
    st.switch_page("views/investigate.py")


def _config(frame: pd.DataFrame, overrides: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {
        column: st.column_config.DatetimeColumn(column.replace("_", " "), format="YYYY-MM-DD HH:mm:ss")
        for column in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[column])}
    config.update(overrides)
    return config


def _readable(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns show a dash where the telemetry said nothing, instead of a row of "None"."""
    text = [c for c in frame.columns
            if (frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c]))
            and frame[c].notna().any() and frame[c].dropna().map(lambda v: isinstance(v, str)).all()]
    return frame.assign(**{c: frame[c].fillna("—") for c in text}) if text else frame
