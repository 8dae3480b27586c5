"""Signed evidence bundles for one agent and window, and their offline verification.

Modules, one job each:
- ``collect``: what an export reads from the store, through a ``Reader``;
- ``export``: ``export_bundle``, the order of the steps;
- ``tables``: the typed tables and figures, and ``reports/queries.sql`` that makes them;
- ``dsse``: the DSSE envelope over an in-toto Statement of every file;
- ``oscal``: the readiness answers as OSCAL assessment-results (compliance-trestle);
- ``report``: the HTML report and VERIFY.md; ``completeness``, ``redaction``, ``policies``,
  ``registry_entry``: one bundle document each;
- ``layout``: where files sit, directory or zip;
- ``verify``: ``verify_bundle``, the checks ``govtrace verify`` prints;
- ``commands``: ``govtrace export``, ``govtrace verify`` (and ``govtrace retention``).
"""

from govtrace.analytics.evidence.export import ExportError, ExportResult, export_bundle

__all__ = ["ExportError", "ExportResult", "export_bundle"]
