"""Findings and the verification report shared by chain and store verification.

A finding is one sentence a person can act on ("seq 41 is missing"), tagged with a level so a
report can say "ok, with warnings": only ``error`` findings make verification fail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ERROR = "error"
WARNING = "warning"
INFO = "info"


@dataclass(frozen=True)
class Finding:
    level: str  # ERROR | WARNING | INFO
    code: str  # stable machine-readable kind, e.g. "root_mismatch", "seq_gap"
    message: str  # the human reason
    seq: int | None = None  # the row concerned, where one is known
    checkpoint: int | None = None  # the checkpoint's seq_no (or chain index), where one is known

    def __str__(self) -> str:
        return f"[{self.level}] {self.code}: {self.message}"


@dataclass
class VerificationReport:
    findings: list[Finding] = field(default_factory=list)
    rows_checked: int = 0
    checkpoints_checked: int = 0
    root_hash: bytes | None = None  # root recomputed over every stored row

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == WARNING]

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def add(self, level: str, code: str, message: str, **where: int | None) -> None:
        self.findings.append(Finding(level, code, message, **where))

    def summary(self) -> str:
        head = "OK" if self.ok else "FAILED"
        lines = [
            f"ledger verification {head}: {self.rows_checked} rows, {self.checkpoints_checked} checkpoints, "
            f"{len(self.errors)} errors, {len(self.warnings)} warnings"
        ]
        lines += [f"  {f}" for f in self.findings]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "rows_checked": self.rows_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "root_hash": self.root_hash.hex() if self.root_hash else None,
            "findings": [asdict(f) for f in self.findings],
        }
