"""Evidence: build a bundle for an agent and window, verify it, download it; and who looked at what."""

from __future__ import annotations

import hashlib
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from govtrace.analytics.readiness import window
from govtrace.dashboard import bundle, data, ui
from govtrace.dashboard.access import record_view
from govtrace.dashboard.session import current

_BUILT = "_evidence_bundle"


def render() -> None:
    context = current()
    ui.header("Evidence", "A bundle an auditor can check on their own, and the log of who looked at what")
    agent = ui.agent_picker(key="evidence_agent", allow_fleet=True)
    subject = f"agent {agent}" if agent else "fleet"
    record_view("evidence", subject)
    since, until = window(context.since, context.until)
    st.markdown(f"Bundle for **{subject}** over **{context.window_text()}**: the five readiness answers with "
                "their evidence span ids, their rows, the exact SQL, and a SHA-256 manifest of every file.")
    key = (context.server, agent, context.window_text())
    signing = context.settings.key_dir is not None and agent is not None
    if not signing:
        st.info("This dashboard has no ledger key (start it with `--key-dir`, as `make demo` does) or no agent is "
                "chosen: bundles built here are unsigned. `govtrace export` always signs.", icon=":material/info:")
    if st.button("Build bundle", type="primary", icon=":material/inventory_2:"):
        with st.spinner("Reading the events, proofs and answers and building the bundle…"):
            if signing:
                result = _signed(context, agent, since, until)
            else:
                payload = bundle.build(data.answers(agent), agent=agent, since=since, until=until,
                                       source=context.server, made_by=context.user.name)
                result = (payload, None)
        st.session_state[_BUILT] = (key, result)
    built = st.session_state.get(_BUILT)
    if built and built[0] == key:
        payload, verification = built[1]
        if verification is None:
            _show(payload, subject, agent)
        else:
            _show_signed(payload, verification, subject, agent)
    st.divider()
    st.subheader("Access log")
    st.caption("Every view opened and every export, as the collector recorded it (newest first).")
    ui.table(data.load("access_log"), height=320)


def _signed(context, agent: str, since: datetime, until: datetime) -> tuple[bytes, object]:
    """The real evidence bundle: exported through the collector, signed with the ledger key,
    then verified offline exactly as an auditor would (``govtrace verify``)."""
    from govtrace.analytics.evidence.export import export_bundle
    from govtrace.analytics.evidence.verify import verify_bundle
    from govtrace.analytics.reader import CollectorReader
    from govtrace.collector.ledger.signing import KeyStore

    signer = KeyStore(Path(context.settings.key_dir)).current()
    reader = CollectorReader(context.server, user=context.user.name, role=context.user.role,
                             purpose=f"evidence export {agent}")
    with tempfile.TemporaryDirectory(prefix="govtrace-evidence-") as tmp:
        out = Path(tmp) / "bundle.zip"
        export_bundle(reader, agent, since, until, out, signer=signer, exported_by=context.user.name,
                      role=context.user.role)
        verification = verify_bundle(out, signer.public_key.fingerprint)
        return out.read_bytes(), verification


def _show_signed(payload: bytes, verification, subject: str, agent: str) -> None:
    digest = hashlib.sha256(payload).hexdigest()
    with st.container(border=True):
        if verification.ok:
            st.success(f"Verified offline: all {len(verification.checks)} checks pass (signature, digests, "
                       "proofs, checkpoints, re-run queries, OSCAL).", icon=":material/verified:")
        else:
            st.error(f"Verification failed: {len(verification.failures)} checks.", icon=":material/gpp_bad:")
        st.caption(f"Bundle SHA-256 {digest} · {len(payload):,} bytes · signed with the ledger key")
        ui.table(pd.DataFrame([{"check": c.name, "result": c.status.upper(), "detail": c.detail}
                               for c in verification.checks]), height=min(38 * (len(verification.checks) + 1), 420))
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        ui.export_button("Download signed bundle (zip)", lambda: payload,
                         f"govtrace-evidence-{agent.replace('/', '_')}-{stamp}.zip",
                         "application/zip", f"evidence bundle {subject}", key="download_bundle",
                         detail=f"sha256 {digest}")


def _show(payload: bytes, subject: str, agent: str | None) -> None:
    checks = bundle.verify(payload)
    ok = all(check.ok for check in checks)
    digest = hashlib.sha256(payload).hexdigest()
    with st.container(border=True):
        if ok:
            st.success(f"Verified: all {len(checks) - 1} files match the manifest.", icon=":material/verified:")
        else:
            st.error("Verification failed: see the checks below.", icon=":material/gpp_bad:")
        st.caption(f"Bundle SHA-256 {digest} · {len(payload):,} bytes · unsigned: it proves the files are "
                   "intact since it was built, not who built it")
        ui.table(pd.DataFrame([{"check": c.name, "result": "pass" if c.ok else "FAIL", "detail": c.detail}
                               for c in checks]), height=min(38 * (len(checks) + 1), 320))
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        ui.export_button("Download bundle (zip)", lambda: payload,
                         f"govtrace-evidence-{(agent or 'fleet').replace('/', '_')}-{stamp}.zip",
                         "application/zip", f"evidence bundle {subject}", key="download_bundle",
                         detail=f"sha256 {digest}")


if __name__ == "__main__":
    render()
