"""Every view a person opens and every export is itself an audit record: who, what, when.

Records go to the collector's access log (``POST /api/v1/access``), the same log the read API
writes. A view is recorded when it is opened and whenever it shows something new (another agent,
trace, span, search or window), not on every rerun. If the record cannot be written the view is not
shown: an unrecorded read is what the access log exists to prevent.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Callable

import streamlit as st

from govtrace.analytics.reader import CollectorReader
from govtrace.dashboard.session import Context, current

_VISIT = "_govtrace_visit"  # (view, {(subject, window) recorded during this visit})


class AccessNotRecorded(RuntimeError):
    """The collector did not accept an access record."""


def record_view(view: str, subject: str = "") -> None:
    """Record that the person is looking at ``subject`` in ``view``, once per visit to the view."""
    context = current()
    visit = st.session_state.get(_VISIT)
    if visit is None or visit[0] != view:  # another view was opened in between: a new visit
        visit = (view, set())
    key = (subject, context.window_text())
    if key in visit[1]:
        return
    target = f"dashboard:{view}" + (f" {subject}" if subject else "")
    record(context, "view", target, f"window {context.window_text()}")
    visit[1].add(key)
    st.session_state[_VISIT] = visit


def guarded_export(make: Callable[[], bytes], what: str, detail: str = "") -> Callable[[], bytes]:
    """Deferred download data: the export is recorded first, and nothing is handed over if that fails.

    Streamlit calls this on click, on another thread, so the context is captured now.
    """
    context = current()

    def deferred() -> bytes:
        record(context, "export", what, detail or f"window {context.window_text()}")
        return make()

    return deferred


def record(context: Context, action: str, target: str, detail: str = "") -> None:
    recorder = _recorder(context.server, context.user.name, context.user.role)
    try:
        recorder.record_access(action, target, detail)
    except (urllib.error.URLError, OSError) as exc:
        raise AccessNotRecorded(f"the collector at {context.server} did not record this {action}: {exc}") from None


@st.cache_resource(show_spinner=False)
def _recorder(server: str, user: str, role: str) -> CollectorReader:
    return CollectorReader(server, user=user, role=role)
