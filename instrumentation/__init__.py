"""govtrace.instrumentation: make an agent accountable with one line, or none.

    from govtrace.instrumentation import instrument, governed_tool

    instrument(agent_id="billing-agent", owner="finance-team", policies="policies.yaml")

    @governed_tool(resource="invoices", operation="write", classification="confidential")
    def issue_refund(invoice_id: str, amount: float) -> str: ...

See docs/instrumentation.md.
"""

from govtrace.instrumentation.enforcement import Denial, Enforcer, ToolRequest, Unenforced
from govtrace.instrumentation.governed import FAULTS, Governance, describe_tool
from govtrace.instrumentation.setup import governed_tool, instrument, uninstrument
from govtrace.instrumentation.telemetry import AgentTelemetry

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
