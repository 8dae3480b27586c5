"""The dashboard's entrypoint: the frame around every view.

Page config, sign-in (when a users file is configured), the shared time window, navigation limited
to what the person's role may see, and the collector's liveness in the sidebar; then the chosen
view runs. Start it with ``govtrace dashboard``; this is the only module that reads the environment.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from govtrace.analytics.reader import ReaderError
from govtrace.dashboard import auth, data
from govtrace.dashboard.access import AccessNotRecorded, record
from govtrace.dashboard.session import Context, install
from govtrace.dashboard.settings import DashboardSettings, SettingsError

WINDOWS = {
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(days=1),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "All time": None,
    "Custom dates": None,
}
DEFAULT_WINDOW = "Last 7 days"

# (view, title, icon, section). The order is the order of an investigation.
PAGES = [
    ("fleet", "Fleet", ":material/groups:", "Overview"),
    ("agent", "Agent", ":material/smart_toy:", "Overview"),
    ("investigate", "Investigate", ":material/search:", "Investigation"),
    ("oversight", "Oversight", ":material/gavel:", "Investigation"),
    ("drift", "Drift", ":material/trending_up:", "Investigation"),
    ("readiness", "Readiness", ":material/fact_check:", "Compliance"),
    ("evidence", "Evidence", ":material/inventory_2:", "Compliance"),
]
_USER_KEY = "_govtrace_user"


def main() -> None:
    st.set_page_config(page_title="govtrace", page_icon=":material/shield:", layout="wide")
    try:
        settings = _settings()
        users = _users(settings.users_file) if settings.auth_enabled else {}
    except (SettingsError, auth.UsersFileError) as exc:
        st.error(f"The dashboard is misconfigured: {exc}")
        st.stop()
    user = _signed_in(settings, users)
    if user is None:
        _sign_in_form(settings, users)
        st.stop()
    st.logo(_LOGO, size="large")
    since, until, label = _window()
    install(Context(settings, user, since, until, label))
    pages: dict[str, list] = {}
    for view, title, icon, section in PAGES:
        if user.may(view):
            pages.setdefault(section, []).append(
                st.Page(f"views/{view}.py", title=title, icon=icon, url_path=view, default=view == "fleet"))
    page = st.navigation(pages)
    _sidebar_footer(settings, user)
    try:
        page.run()
    except ReaderError as exc:
        st.error(f"The collector could not answer: {exc}", icon=":material/cloud_off:")
    except AccessNotRecorded as exc:
        st.error(f"This view is not shown because the access could not be recorded: {exc}",
                 icon=":material/lock:")


@st.cache_resource(show_spinner=False)
def _settings() -> DashboardSettings:
    return DashboardSettings.from_env(os.environ)


@st.cache_resource(show_spinner=False)
def _users(path: str) -> dict[str, auth.User]:
    return auth.load_users(path)


def _signed_in(settings: DashboardSettings, users: dict[str, auth.User]) -> auth.User | None:
    if not settings.auth_enabled:
        return auth.local_user(os.environ.get("GOVTRACE_USER") or _os_user())
    name = st.session_state.get(_USER_KEY)
    return users.get(name) if name else None


def _sign_in_form(settings: DashboardSettings, users: dict[str, auth.User]) -> None:
    _, middle, _ = st.columns([1, 1.2, 1])
    with middle:
        st.image(_LOGO, width=180)
        st.subheader("Sign in")
        st.caption("Every view you open and every export is recorded in the access log.")
        with st.form("sign_in"):
            name = st.text_input("User name")
            password = st.text_input("Password", type="password")
            submitted = st.form_submit_button("Sign in", type="primary", width="stretch")
        if submitted:
            user = auth.authenticate(users, name, password)
            claimed = auth.User(name=name.strip() or "(blank)", role="unverified")
            anonymous = Context(settings, claimed, None, None, "")
            if user is None:
                _try_record(anonymous, "sign_in_failed")
                st.error("Unknown user name or wrong password.")
                return
            st.session_state[_USER_KEY] = user.name
            _try_record(Context(settings, user, None, None, ""), "sign_in")
            st.rerun()


def _window() -> tuple[datetime | None, datetime | None, str]:
    with st.sidebar:
        label = st.selectbox("Time window", list(WINDOWS), index=list(WINDOWS).index(DEFAULT_WINDOW),
                             key="window")
        if label == "Custom dates":
            today = datetime.now(UTC).date()
            chosen = st.date_input("From – to (UTC, inclusive)", (today - timedelta(days=7), today),
                                   key="window_dates")
            start, end = (chosen if isinstance(chosen, tuple) and len(chosen) == 2 else (today, today))
            return _midnight(start), _midnight(end) + timedelta(days=1), label
    span = WINDOWS[label]
    if span is None:
        return None, None, label
    # Whole minutes keep the cache keys stable between reruns; the end stays open so new spans show.
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - span, None, label


def _sidebar_footer(settings: DashboardSettings, user: auth.User) -> None:
    with st.sidebar:
        st.divider()
        role = "no sign-in configured" if user.role == auth.LOCAL else user.role
        st.markdown(f":material/person: `{user.name}` · {role}")
        st.caption(f"Reading through the collector at {settings.server}")
        left, right = st.columns(2)
        if left.button("Refresh", icon=":material/refresh:", width="stretch",
                       help=f"Results are cached for {data.REFRESH_SECONDS} s; this reads again now."):
            data.clear()
        if settings.auth_enabled and right.button("Sign out", icon=":material/logout:", width="stretch"):
            st.session_state.pop(_USER_KEY, None)
            st.rerun()


def _try_record(context: Context, action: str) -> None:
    try:
        record(context, action, "dashboard", "")
    except AccessNotRecorded as exc:
        st.warning(str(exc))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "local user"


# The mark: a shield with a check, inline so that the package ships no asset files.
_LOGO = ("<svg xmlns='http://www.w3.org/2000/svg' width='150' height='32' viewBox='0 0 150 32'>"
         "<path d='M14 2 L26 6 V15 C26 23 20 28 14 30 C8 28 2 23 2 15 V6 Z' fill='#1f4e79'/>"
         "<path d='M9 16 l4 4 l7 -9' stroke='white' stroke-width='2.6' fill='none' stroke-linecap='round'/>"
         "<text x='34' y='22' font-family='Helvetica, Arial, sans-serif' font-size='18' font-weight='700' "
         "fill='#1f2937'>govtrace</text></svg>")


if __name__ == "__main__":
    main()
