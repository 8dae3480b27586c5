"""Where everything sits in a bundle, and reading or writing one as a directory or a ``.zip``.

The layout follows the proposal in the project's governance notes (§4.4), with one deliberate
change: the events' exact bytes travel in ``data/events.parquet`` (column ``record``) next to their
typed columns instead of in a separate NDJSON file, so the leaf preimages and the columns derived
from them cannot drift apart and the bundle is not twice the size.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST = "manifest.json"
ENVELOPE = "manifest.dsse.json"
SUMS = "SHA256SUMS"
VERIFY_MD = "VERIFY.md"
EVENTS = "data/events.parquet"
PROOF = "proofs/events.json"
CHECKPOINTS = "proofs/checkpoints.json"
KEYS = "keys/keys.json"
QUERIES = "reports/queries.sql"
FIGURES = "reports/figures.json"
READINESS = "reports/readiness.json"
REPORT_HTML = "reports/readiness.html"
OSCAL = "oscal/assessment-results.json"
REGISTRY = "registry/agent.json"
POLICY_INDEX = "policy/index.json"
PRICES = "reports/prices.yaml"
COMPLETENESS = "completeness.json"
REDACTIONS = "redactions.json"

# Files every bundle has (policy files, tables and keys vary).
REQUIRED = (MANIFEST, ENVELOPE, SUMS, VERIFY_MD, EVENTS, PROOF, CHECKPOINTS, KEYS, QUERIES, FIGURES, READINESS,
            REPORT_HTML, OSCAL, REGISTRY, POLICY_INDEX, PRICES, COMPLETENESS, REDACTIONS)

MEDIA_TYPES = {
    ".json": "application/json",
    ".parquet": "application/vnd.apache.parquet",
    ".sql": "application/sql",
    ".html": "text/html",
    ".md": "text/markdown",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".cedar": "text/plain",
    "": "text/plain",
}


def write_json(path: Path, value: Any) -> None:
    """Indented, key-sorted JSON: stable bytes, readable by a person."""
    path.write_text(json.dumps(value, indent=1, sort_keys=True, default=_default, ensure_ascii=False) + "\n")


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def media_type(path: str) -> str:
    return MEDIA_TYPES.get(PurePosixPath(path).suffix, "application/octet-stream")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def list_files(root: Path) -> list[str]:
    """Every regular file under ``root`` as a POSIX path relative to it, sorted."""
    out = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            out.append(Path(dirpath, name).relative_to(root).as_posix())
    return sorted(out)


def staging_dir(out: Path) -> Path:
    """A fresh directory beside ``out`` to build the bundle in (same filesystem: the final move is a rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))


def publish(staging: Path, out: Path) -> None:
    """Move a finished bundle into place as a directory, or as a zip when ``out`` ends in ``.zip``."""
    if out.exists():
        raise FileExistsError(f"{out} exists: evidence bundles are never overwritten")
    if out.suffix.lower() != ".zip":
        os.replace(staging, out)
        return
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name in list_files(staging):
            # Parquet is already compressed; deflating it again costs time and saves nothing.
            compress = zipfile.ZIP_STORED if name.endswith(".parquet") else zipfile.ZIP_DEFLATED
            archive.write(staging / name, name, compress_type=compress)
    os.replace(partial, out)
    shutil.rmtree(staging)


class BundleError(ValueError):
    """The path is not a readable bundle (not a directory or zip, or an unsafe archive)."""


@contextmanager
def opened(path: str | Path) -> Iterator[Path]:
    """The bundle as a directory: itself, or a zip extracted to a temporary one (names checked first)."""
    path = Path(path)
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise BundleError(f"no bundle at {path}")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise BundleError(f"{path} is neither a bundle directory nor a zip archive: {exc}") from None
    with archive, tempfile.TemporaryDirectory(prefix="govtrace-verify-") as tmp:
        names = archive.namelist()
        if len(names) != len(set(names)):
            raise BundleError(f"{path} holds the same file name twice: refusing an ambiguous archive")
        for name in names:
            p = PurePosixPath(name)
            if p.is_absolute() or ".." in p.parts or "\\" in name:
                raise BundleError(f"{path} holds an unsafe file name {name!r}")
        archive.extractall(tmp)
        yield Path(tmp)
