"""With a users file, the dashboard asks people to sign in, shows each role only its views, lets only
compliance export, and records sign-ins (failed ones too) in the collector's access log."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
import yaml
from streamlit.testing.v1 import AppTest

from govtrace.dashboard.auth import (
    UsersFileError,
    authenticate,
    hash_password,
    load_users,
    verify_password,
)

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
PASSWORDS = {"vic@acme.example": ("viewer", "view-only"), "ian@acme.example": ("investigator", "follow-the-chain"),
             "cora@acme.example": ("compliance", "sign-the-bundle")}


@pytest.fixture(scope="module")
def users_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.yaml"
    users = [{"name": name, "role": role, "password": hash_password(password)}
             for name, (role, password) in PASSWORDS.items()]
    path.write_text(yaml.safe_dump({"users": users}))
    return path


@pytest.fixture
def app(collector, users_file, monkeypatch):
    monkeypatch.setenv("GOVTRACE_SERVER", collector.http_url)
    monkeypatch.setenv("GOVTRACE_DASHBOARD_USERS", str(users_file))
    st.cache_resource.clear()
    st.cache_data.clear()
    test = AppTest.from_file(str(APP), default_timeout=60)
    test.run()
    assert not test.exception, test.exception
    return test


def sign_in(test: AppTest, name: str, password: str | None = None) -> AppTest:
    test.text_input[0].input(name)
    test.text_input[1].input(password if password is not None else PASSWORDS[name][1])
    test.button[0].click().run()
    assert not test.exception, test.exception
    return test


def access(collector) -> list[tuple]:
    cursor = collector.store.cursor()
    try:
        return cursor.execute("SELECT principal, role, action, target FROM access_log ORDER BY occurred_at").fetchall()
    finally:
        cursor.close()


def test_nothing_but_the_sign_in_form_is_shown_before_signing_in(app):
    assert [h.value for h in app.subheader] == ["Sign in"]
    assert not app.title  # no view ran


def test_a_wrong_password_is_refused_and_recorded(app, collector):
    sign_in(app, "ian@acme.example", "guess")
    assert app.error[0].value == "Unknown user name or wrong password."
    assert not app.title
    assert ("ian@acme.example", "unverified", "sign_in_failed", "dashboard") in access(collector)


def test_a_viewer_sees_the_summaries_but_cannot_open_investigate_or_evidence(app, collector):
    sign_in(app, "vic@acme.example")
    assert app.title[0].value == "Fleet"
    assert ("vic@acme.example", "viewer", "sign_in", "dashboard") in access(collector)
    assert ("vic@acme.example", "viewer", "view", "dashboard:fleet") in access(collector)
    for view in ("investigate", "evidence"):
        with pytest.raises(ValueError):
            app.switch_page(f"views/{view}.py")
    app.switch_page("views/oversight.py").run()
    assert app.title[0].value == "Oversight"


def test_an_investigator_can_investigate_but_not_export(app):
    sign_in(app, "ian@acme.example")
    app.switch_page("views/investigate.py").run()
    assert app.title[0].value == "Investigate"
    app.switch_page("views/readiness.py").run()
    assert not app.exception, app.exception
    locked = next(b for b in app.button if b.label == "Download all five answers (JSON)")
    assert locked.disabled
    assert not app.get("download_button")


def test_compliance_is_offered_the_downloads(app):
    sign_in(app, "cora@acme.example")
    app.switch_page("views/readiness.py").run()
    assert not app.exception, app.exception
    assert len(app.get("download_button")) == 11  # all five, then JSON and CSV for each answer
    app.switch_page("views/evidence.py").run()
    assert app.title[0].value == "Evidence"


def test_signing_out_returns_to_the_sign_in_form(app):
    sign_in(app, "vic@acme.example")
    next(b for b in app.button if b.label == "Sign out").click().run()
    assert [h.value for h in app.subheader] == ["Sign in"]


def test_a_password_hash_verifies_only_its_own_password():
    stored = hash_password("correct horse")
    assert verify_password("correct horse", stored)
    assert not verify_password("correct horse!", stored)
    assert not verify_password("correct horse", "plain-text")


def test_authenticate_refuses_unknown_names_and_wrong_passwords(users_file):
    users = load_users(users_file)
    assert authenticate(users, "cora@acme.example", "sign-the-bundle").role == "compliance"
    assert authenticate(users, "cora@acme.example", "view-only") is None
    assert authenticate(users, "mallory@acme.example", "sign-the-bundle") is None


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "a", "role": "admin", "password": "scrypt$x"}, "role must be one of viewer, investigator, compliance"),
    ({"name": "a", "role": "viewer", "password": "hunter2"}, "password must be a scrypt hash"),
    ({"role": "viewer", "password": "scrypt$x"}, "has no name"),
])
def test_a_bad_users_file_entry_is_refused_naming_the_entry(tmp_path, entry, message):
    path = tmp_path / "users.yaml"
    path.write_text(yaml.safe_dump({"users": [entry]}))
    with pytest.raises(UsersFileError, match=message) as raised:
        load_users(path)
    assert "user #1" in str(raised.value)


def test_a_user_listed_twice_is_refused(tmp_path):
    path = tmp_path / "users.yaml"
    entry = {"name": "a", "role": "viewer", "password": hash_password("x")}
    path.write_text(yaml.safe_dump({"users": [entry, entry]}))
    with pytest.raises(UsersFileError, match="listed twice"):
        load_users(path)
