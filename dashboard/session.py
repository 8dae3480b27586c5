"""What every view needs to know about this run: settings, the signed-in person, the time window.

``app.py`` builds one ``Context`` per script run and installs it; views read it with ``current()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import streamlit as st

from govtrace.dashboard.auth import User
from govtrace.dashboard.settings import DashboardSettings

_KEY = "_govtrace_context"


@dataclass(frozen=True)
class Context:
    settings: DashboardSettings
    user: User
    since: datetime | None
    until: datetime | None
    window_label: str

    @property
    def server(self) -> str:
        return self.settings.server

    def window_text(self) -> str:
        if self.since is None and self.until is None:
            return "all time"
        since = self.since.strftime("%Y-%m-%d %H:%M") if self.since else "the beginning"
        until = self.until.strftime("%Y-%m-%d %H:%M") if self.until else "now"
        return f"{since} – {until} UTC"


def install(context: Context) -> None:
    st.session_state[_KEY] = context


def current() -> Context:
    context = st.session_state.get(_KEY)
    if context is None:
        raise RuntimeError("the dashboard's views run inside app.py: start it with 'govtrace dashboard'")
    return context
