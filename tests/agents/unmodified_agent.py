"""An unmodified LangChain agent: no govtrace import, no OpenTelemetry code. Run under
``opentelemetry-instrument``, it becomes accountable with zero lines of code."""

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool


class ScriptedChatModel(GenericFakeChatModel):
    def bind_tools(self, tools, **kwargs):
        return self


@tool
def lookup_invoice(invoice: str) -> str:
    """Look up an invoice."""
    return f"{invoice}: 180 USD, approved"


@tool
def pay_invoice(invoice: str) -> str:
    """Pay an invoice."""
    return f"{invoice} paid"


chat = ScriptedChatModel(messages=iter([
    AIMessage(content="", tool_calls=[
        {"name": "lookup_invoice", "args": {"invoice": "INV-7"}, "id": "call_lookup", "type": "tool_call"},
        {"name": "pay_invoice", "args": {"invoice": "INV-7"}, "id": "call_pay", "type": "tool_call"},
    ]),
    AIMessage(content="Invoice INV-7 is paid."),
]))
agent = create_agent(chat, tools=[lookup_invoice, pay_invoice], system_prompt="Pay approved invoices.")
result = agent.invoke({"messages": [("user", "Pay INV-7")]})
print(result["messages"][-1].content)
