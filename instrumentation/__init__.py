"""govtrace.instrumentation: make an agent accountable with one line, or none.

    from govtrace.instrumentation import instrument, governed_tool

    instrument(agent_id="billing-agent", owner="finance-team", policies="policies.yaml")

    @governed_tool(resource="invoices", operation="write", classification="confidential")
    def issue_refund(invoice_id: str, amount: float) -> str: ...

See docs/instrumentation.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from govtrace.instrumentation.lazy import lazy_exports

if TYPE_CHECKING:
    from govtrace.instrumentation.enforcement import Denial, Enforcer, ToolRequest, Unenforced
    from govtrace.instrumentation.governed import FAULTS, Governance, describe_tool
    from govtrace.instrumentation.setup import governed_tool, instrument, uninstrument
    from govtrace.instrumentation.telemetry import AgentTelemetry

# Loaded on first use: the collector imports ``attributes`` (the key names) and has no use for the
# OpenTelemetry SDK the rest pulls in.
_EXPORTS = {
    "Denial": "govtrace.instrumentation.enforcement",
    "Enforcer": "govtrace.instrumentation.enforcement",
    "ToolRequest": "govtrace.instrumentation.enforcement",
    "Unenforced": "govtrace.instrumentation.enforcement",
    "FAULTS": "govtrace.instrumentation.governed",
    "Governance": "govtrace.instrumentation.governed",
    "describe_tool": "govtrace.instrumentation.governed",
    "governed_tool": "govtrace.instrumentation.setup",
    "instrument": "govtrace.instrumentation.setup",
    "uninstrument": "govtrace.instrumentation.setup",
    "AgentTelemetry": "govtrace.instrumentation.telemetry",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "FAULTS",
    "AgentTelemetry",
    "Denial",
    "Enforcer",
    "Governance",
    "ToolRequest",
    "Unenforced",
    "describe_tool",
    "governed_tool",
    "instrument",
    "uninstrument",
]
