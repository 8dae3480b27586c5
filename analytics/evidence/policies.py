"""The policies in force: which policy versions decided the agent's calls, and their text.

Spans carry the deciding policy's id and version; the version is the SHA-256 of the policy file's
bytes (first 12 hex characters, see ``instrumentation/policy/loader.py``), so a supplied file can be
matched to the decisions it made, and an auditor can re-check the match. A version that decided
calls but whose text was not supplied is listed as such, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from govtrace.instrumentation.policy.loader import PolicyLoadError, load_policy_bytes

IN_FORCE_SQL = """SELECT policy_id, policy_version, count(*) AS decisions
FROM decisions WHERE policy_id IS NOT NULL GROUP BY ALL ORDER BY policy_id, policy_version"""


def describe(data: bytes, name: str, base_dir: Path | None = None) -> dict[str, Any]:
    """Id and version of a policy file as the enforcement point computes them."""
    policy = load_policy_bytes(data, source=name, base_dir=base_dir)
    return {"policy_id": policy.policy_id, "version": policy.version, "sha256": policy.digest}


def supplied(paths: Sequence[str | Path]) -> list[tuple[str, bytes, dict[str, Any]]]:
    """(bundle name, bytes, description) per supplied policy file; names are made unique."""
    out, used = [], set()
    for p in paths:
        path = Path(p)
        data = path.read_bytes()
        info = describe(data, str(path), path.parent)
        name = path.name
        n = 2
        while name in used:
            name, n = f"{path.stem}-{n}{path.suffix}", n + 1
        used.add(name)
        out.append((f"policy/{name}", data, info))
    return out


def index(files: Iterable[tuple[str, bytes, dict[str, Any]]], in_force: list[dict[str, Any]]) -> dict[str, Any]:
    """``policy/index.json``: the files, and each version in force matched to its file (or not)."""
    files = list(files)
    by_version = {(i["policy_id"], i["version"]): name for name, _, i in files}
    matched = [{**row, "file": by_version.get((row["policy_id"], row["policy_version"]))} for row in in_force]
    missing = [f"{r['policy_id']}@{r['policy_version']}" for r in matched if r["file"] is None]
    return {
        "files": [{"file": name, **info} for name, _, info in files],
        "in_force": matched,
        "missing": missing,
        "statement": ("every policy version that decided the agent's calls is included" if not missing else
                      f"policy text not supplied for {', '.join(missing)}: the decisions name these versions, "
                      "but the bundle cannot show their rules"),
    }


def recheck(bundle_dir: Path, document: dict[str, Any]) -> list[str]:
    """Problems with the listed policy files: unreadable, or a different id or version than claimed."""
    problems = []
    for f in document.get("files") or []:
        path = bundle_dir / f["file"]
        try:
            info = describe(path.read_bytes(), f["file"], path.parent)
        except (OSError, PolicyLoadError) as exc:
            problems.append(f"{f['file']}: cannot be loaded as a policy ({exc})")
            continue
        for key in ("policy_id", "version"):
            if info[key] != f.get(key):
                problems.append(f"{f['file']}: {key} is {info[key]!r}, the index says {f.get(key)!r}")
    return problems
