"""The agent behind `agentledger demo`: a small order assistant whose order service fails once.

The demo exists to show what the ledger records, so the agent is built to produce the interesting
case on every run: `place_order` raises on the first attempt of each call (a transient outage) and
succeeds when Temporal retries it a moment later. The timeline then shows the failed attempt
(kept, marked abandoned) next to the attempt the run used.

The model is real when one is configured and scripted otherwise, so the demo runs offline and in CI
with the same tools, the same retry and the same ledger:

- `$AGENTLEDGER_DEMO_MODEL` (any pydantic-ai model name, e.g. `anthropic:claude-sonnet-4-5`) wins;
- else, with `$OPENAI_API_KEY` set, `openai:gpt-4o-mini`;
- else a `FunctionModel` that calls `check_inventory`, then `place_order`, then answers.
"""

from __future__ import annotations

import os
from datetime import timedelta

from pydantic_ai import Agent, RunContext
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityConfig

__all__ = ['DEMO_ITEM', 'DEMO_PROMPT', 'DEMO_QUANTITY', 'demo_agent', 'demo_model']

DEMO_PROMPT = 'Please order 3 widgets if we have enough in stock.'
"""The prompt `agentledger demo` sends."""

DEMO_ITEM = 'widget'
"""The item the scripted model orders."""

DEMO_QUANTITY = 3
"""How many the scripted model orders."""

_STOCK = {'widget': 12, 'gadget': 0}

_failed_once: set[str] = set()
"""Tool call ids whose first `place_order` attempt already failed; module-level because each Temporal
attempt calls the tool afresh, and the demo's worker runs in this process."""

_ACTIVITY_CONFIG: ActivityConfig = {
    # Long enough for a real model's request; the scripted model answers at once.
    'start_to_close_timeout': timedelta(seconds=60),
    # A short first interval so the failing tool is retried promptly (on a dev server that takes about 1 s).
    'retry_policy': RetryPolicy(
        initial_interval=timedelta(milliseconds=500), backoff_coefficient=2.0, maximum_attempts=3
    ),
}


def demo_model() -> Model | str:
    """The demo's model: `$AGENTLEDGER_DEMO_MODEL`, else OpenAI with `$OPENAI_API_KEY`, else the scripted model."""
    configured = os.environ.get('AGENTLEDGER_DEMO_MODEL')
    if configured:
        return configured
    if os.environ.get('OPENAI_API_KEY'):
        return 'openai:gpt-4o-mini'
    return FunctionModel(_script, model_name='demo-script')


def demo_agent() -> Agent[None, str]:
    """A new `demo` agent (durable on Temporal) with the tools `check_inventory` and `place_order`.

    `place_order` fails on the first attempt of every call and succeeds on the retry.
    """
    agent: Agent[None, str] = Agent(
        demo_model(),
        name='demo',
        instructions=(
            'You place orders for the user. Check the inventory before ordering, order only what is in stock, '
            'then answer in one sentence with the stock you found and the order confirmation.'
        ),
        capabilities=[TemporalDurability(activity_config=_ACTIVITY_CONFIG)],
    )

    @agent.tool_plain
    def check_inventory(item: str) -> int:
        """How many units of `item` are in stock."""
        return _STOCK.get(item, 0)

    @agent.tool
    def place_order(ctx: RunContext[None], item: str, quantity: int) -> str:
        """Order `quantity` units of `item`; returns the order confirmation."""
        # pydantic-ai always sets the id of a tool call; the first attempt of each call fails.
        call_id = ctx.tool_call_id or ''
        if call_id not in _failed_once:
            _failed_once.add(call_id)
            raise ConnectionError('order service unavailable (simulated)')
        return f'order confirmed: {quantity} x {item}'

    return agent


def _script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """The scripted model: it decides by how many responses it already gave."""
    match sum(1 for message in messages if isinstance(message, ModelResponse)):
        case 0:
            return ModelResponse(parts=[ToolCallPart('check_inventory', {'item': DEMO_ITEM})])
        case 1:
            return ModelResponse(parts=[ToolCallPart('place_order', {'item': DEMO_ITEM, 'quantity': DEMO_QUANTITY})])
        case _:
            results = {
                part.tool_name: part.content
                for message in messages
                if isinstance(message, ModelRequest)
                for part in message.parts
                if isinstance(part, ToolReturnPart)
            }
            stock, order = results.get('check_inventory'), results.get('place_order')
            return ModelResponse(
                parts=[TextPart(f'We had {stock} {DEMO_ITEM}s in stock, so I placed the order: {order}.')]
            )
