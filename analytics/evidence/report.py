"""The human documents of a bundle: ``reports/readiness.html`` and ``VERIFY.md``.

Both are rendered from the bundle's own JSON (manifest facts, readiness answers, figures,
completeness, redactions, policies, registry), so every number they show is one ``queries.sql``
reproduces. Plain HTML with inline CSS: it opens offline, in any browser, years from now.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

STATUS_COLOURS = {"complete": "#1a7f37", "gaps": "#9a6700", "breach": "#cf222e", "no_data": "#57606a"}


def readiness_html(facts: Mapping[str, Any], readiness: Mapping[str, Any], figures: Mapping[str, Mapping[str, Any]],
                   completeness: Mapping[str, Any], redactions: Mapping[str, Any], policy_index: Mapping[str, Any],
                   registry: Mapping[str, Any]) -> str:
    e = html.escape
    parts = [f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Evidence: agent {e(facts['agent'])}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #1f2328; }}
table {{ border-collapse: collapse; margin: .5rem 0 1rem; }}
td, th {{ border: 1px solid #d0d7de; padding: .25rem .6rem; text-align: left; vertical-align: top; }}
th {{ background: #f6f8fa; }}
.status {{ color: #fff; border-radius: 1rem; padding: .1rem .6rem; font-size: 85%; }}
code {{ font-size: 90%; word-break: break-all; }}
</style></head><body>
<h1>Evidence bundle: agent {e(facts['agent'])}</h1>
<p>Window <b>{e(facts['since'])}</b> to <b>{e(facts['until'])}</b> (UTC, end excluded).
Bundle <code>{e(facts['bundle_id'])}</code>, made {e(facts['created_at'])} by {e(facts['exported_by'])}
from {e(facts['source'])} with govtrace {e(facts['generator_version'])}.</p>
<p>Every event below is proven to be in the ledger <code>{e(facts['origin'])}</code> under its signed checkpoint of
{facts['tree_size']} events (root <code>{e(facts['root'])}</code>), signed by the key with fingerprint
<code>{e(facts['key_fingerprint'])}</code>. Check it yourself: see <code>VERIFY.md</code>.</p>
"""]
    parts.append("<h2>Readiness</h2>")
    for question, answer in (readiness.get("answers") or {}).items():
        colour = STATUS_COLOURS.get(answer["status"], "#57606a")
        parts.append(f"<h3>{e(question.capitalize())} <span class=status style='background:{colour}'>"
                     f"{e(answer['status'])}</span></h3><p>{e(answer['verdict'])}</p>")
        if answer.get("coverage"):
            parts.append("<p>What the telemetry does not say:</p><ul>"
                         + "".join(f"<li>{e(c)}</li>" for c in answer["coverage"]) + "</ul>")
        table = answer.get("table")
        if table and figures.get(table):
            parts.append(_pairs(f"Figures (<code>{e(table)}</code>, reproduced by reports/queries.sql)",
                                figures[table]))
    for name in ("events", "decisions", "oversight", "delegation"):
        if figures.get(name):
            parts.append(_pairs(f"Figures: {name}", figures[name]))
    parts.append("<h2>Completeness</h2><ul>")
    for key in ("sequence", "dropped", "unsealed", "collector"):
        statement = (completeness.get(key) or {}).get("statement")
        if statement:
            parts.append(f"<li><b>{e(key)}</b>: {e(statement)}</li>")
    collector = completeness.get("collector") or {}
    parts.append(f"<li>collector downtime intervals in the window: {len(collector.get('downtime') or [])}; unclean "
                 f"restarts: {collector.get('unclean_restarts', 0)}; spans rejected as malformed: "
                 f"{collector.get('spans_rejected', 0)}</li></ul>")
    parts.append(f"<h2>Redactions</h2><p>Profile <code>{e(redactions.get('profile', ''))}</code>: "
                 f"{e(redactions.get('description', ''))} Withheld events: {len(redactions.get('withheld') or [])}; "
                 f"payloads erased by retention: {len(redactions.get('erased') or [])}.</p>")
    parts.append(f"<h2>Policies in force</h2><p>{e(policy_index.get('statement', ''))}</p><table><tr><th>policy"
                 "</th><th>version</th><th>decisions</th><th>file</th></tr>")
    for row in policy_index.get("in_force") or []:
        parts.append(f"<tr><td>{e(str(row['policy_id']))}</td><td><code>{e(str(row['policy_version']))}</code></td>"
                     f"<td>{row['decisions']}</td><td>{e(row['file'] or 'not supplied')}</td></tr>")
    parts.append("</table><h2>Registry entry</h2>")
    entry = registry.get("entry")
    if entry:
        parts.append(_pairs("The agent's entry in the registry in force at the window's end",
                            {k: v for k, v in entry.items() if not isinstance(v, dict | list)}))
    parts.append(f"<p>{e(registry.get('note') or '')}</p></body></html>\n")
    return "".join(parts)


def verify_md(facts: Mapping[str, Any]) -> str:
    fp = facts["key_fingerprint"]
    return f"""# How to verify this evidence bundle

Bundle `{facts['bundle_id']}`: agent `{facts['agent']}`, window `{facts['since']}` to `{facts['until']}` (UTC).

Trust comes from one thing you get **out of band** (not from this bundle): the fingerprint of the
operator's ledger key. This bundle says it was signed with

    {fp}

Do not take that line's word for it: compare it with the fingerprint the operator gave you.

## With govtrace (offline, needs no network and no access to the operator's systems)

    govtrace verify <this bundle> --key-fingerprint <the fingerprint you were given>

It checks, and prints a pass/fail line for each: the DSSE signature of `manifest.dsse.json` and
that its in-toto Statement lists every file with its SHA-256; the signed checkpoints and the
consistency proof between them; the multi-leaf inclusion proof of every event against the head
checkpoint's root, recomputed from the events' bytes; that seqs are strictly increasing and inside
the signed log; that each event's typed columns are what its bytes say; that every table and figure
is reproduced by `reports/queries.sql` from `data/events.parquet`; the readiness answers recomputed;
the OSCAL document; the registry entry against the proven registry events; the policy files against
the versions that decided; the signed drop counters; the redaction manifest. It exits non-zero on
any failure.

## By hand

1. File integrity: `sha256sum -c SHA256SUMS` (this only shows the files match the list; the list is
   trusted only because the signed Statement in `manifest.dsse.json` carries the same digests).
2. Signature: `manifest.dsse.json` is a DSSE envelope (payload type `application/vnd.in-toto+json`);
   the Ed25519 signature covers `PAE = "DSSEv1" SP len(type) SP type SP len(payload) SP payload`.
   The public keys are in `keys/keys.json` as C2SP signed-note verifier keys; the fingerprint is
   the SHA-256 of the raw 32-byte key. Keys rotated to are trusted through the rotation statements
   there (signed by both keys).
3. Checkpoints: `proofs/checkpoints.json` holds C2SP signed-note checkpoints (`origin`, size, base64
   root, then `prev`, `time`, `dropped` and `retention` lines) and an RFC 9162 consistency proof from
   the anchor checkpoint to the head.
4. Events: each leaf is `SHA-256(0x00 || record)` where `record` is the UTF-8 of the `record` column of
   `data/events.parquet` (or the leaf hash listed in `proofs/events.json` for withheld or erased
   events). `proofs/events.json` lists the proven seqs and the roots of the maximal subtrees holding
   none of them, left to right, in the RFC 6962 tree of `tree_size` leaves; with the leaves they
   rebuild the head root (node hash `SHA-256(0x01 || left || right)`).
5. Numbers: from this directory run `duckdb < reports/queries.sql` and compare each figure with
   `reports/figures.json` and each table with `data/<table>.parquet`.

## What a valid bundle proves, and what it does not

It proves the included events are exactly as the operator's ledger sealed them, at those positions,
and that the log only grew between the two checkpoints. It does not prove that no other event of this
agent exists: an operator could leave events out of an export. `completeness.json` gives the signed
drop counters and what the collector reported about its own downtime. And it is tamper-evident, not
tamper-proof: whoever holds the ledger key could rewrite the log and re-sign it, unless checkpoints
were escrowed outside their control (with you, a witness or a timestamping service) — compare
`proofs/checkpoints.json` with any checkpoint you hold.
"""


def _pairs(title: str, values: Mapping[str, Any]) -> str:
    e = html.escape
    rows = "".join(f"<tr><th>{e(str(k))}</th><td>{e(_fmt(v))}</td></tr>" for k, v in values.items())
    return f"<p>{title}</p><table>{rows}</table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
