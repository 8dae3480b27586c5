"""A plain evidence bundle for when ``govtrace.analytics.evidence`` is not installed.

A zip of the five readiness answers (JSON with their evidence span ids, CSV rows, the exact SQL)
and a manifest of every file's SHA-256. ``verify`` recomputes the digests from the archive's bytes.
It proves the archive is intact since it was made, not who made it: it is not signed, and the
manifest says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def build(answers: dict[str, Any], *, agent: str | None, since: datetime, until: datetime, source: str,
          made_by: str) -> bytes:
    files: dict[str, bytes] = {}
    for question, answer in answers.items():
        files[f"answers/{question}.json"] = json.dumps(answer.to_dict(), indent=2, default=str).encode()
        files[f"tables/{question}.csv"] = answer.rows.to_csv(index=False).encode()
        files[f"queries/{question}.sql"] = answer.sql.strip().encode() + b"\n"
    manifest = {
        "kind": "govtrace evidence bundle (unsigned)",
        "agent": agent or "all agents",
        "window": {"since": since.isoformat(), "until": until.isoformat()},
        "source": source,
        "made_by": made_by,
        "made_at": datetime.now(UTC).isoformat(),
        "signed": False,
        "files": {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())},
    }
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in sorted(files.items()):
            archive.writestr(path, data)
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
    return sink.getvalue()


def verify(data: bytes) -> list[Check]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        return [Check("archive", False, f"not a zip archive: {exc}")]
    with archive:
        names = set(archive.namelist())
        if MANIFEST not in names:
            return [Check("manifest", False, "manifest.json is missing")]
        try:
            manifest = json.loads(archive.read(MANIFEST))
            listed: dict[str, str] = manifest["files"]
        except (ValueError, KeyError, TypeError) as exc:
            return [Check("manifest", False, f"manifest.json is unreadable: {exc}")]
        checks = [Check("manifest", True, f"{len(listed)} files listed")]
        for path, expected in sorted(listed.items()):
            if path not in names:
                checks.append(Check(path, False, "listed in the manifest but missing"))
                continue
            actual = hashlib.sha256(archive.read(path)).hexdigest()
            checks.append(Check(path, actual == expected,
                                "SHA-256 matches" if actual == expected else f"SHA-256 {actual[:12]}… ≠ manifest"))
        for path in sorted(names - set(listed) - {MANIFEST}):
            checks.append(Check(path, False, "present but not in the manifest"))
    return checks
