"""Agent runs inside users' own workflows: every run of a listed agent is a ledger run.

Teams on Temporal call a durable agent's `run()` (or `iter()`) inside their own workflow classes,
between their own activities, signals and child workflows. On a `LedgerPlugin` worker the workflow
interceptor adds an `OwnRunRecorder` to the runs of every agent the plugin lists, for as long as each
of the workflow's handlers runs (pydantic-ai's `Agent.override`, `_compat.with_added_capability`).
Its `wrap_run` turns the run into a ledger run, as `AgentRunWorkflow` does for its one run:

- the ledger run id comes from the workflow id, the chain's first Temporal run id, the Temporal run it
  continued from (if any) and the run's ordinal among the workflow's agent runs (`own_workflow_run_id`):
  all replay-stable, so a replay or a reset finds the same ledger run;
- the run's state lives in a context variable that pydantic-ai carries into the run's tasks, so
  concurrent agent runs of one workflow each find their own, and the workflow outbound interceptor
  gives their activities their own ids (`agent-<ordinal>.<n>`) and headers;
- a `run_started` activity records the start and a seal activity the outcome, the final history and
  what the run's last activities' ends added.

Adding the plugin to a fleet whose workflows are in flight must replay their histories: everything the
recorder adds to a workflow's commands (the two activities, the activity ids of the agent's own
activities) happens only where `workflow.patched('agentledger.agent_run.<ordinal>')` says the run was
recorded. A run replayed from a history written without the plugin goes on unrecorded, exactly as
it ran; the workflow's later agent runs, made live with the plugin, are recorded.

Workflow code only: deterministic, no I/O.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic_ai.capabilities.abstract import WrapRunHandler
from pydantic_ai.messages import ModelResponse
from pydantic_ai.run import AgentRunResult
from pydantic_ai.tools import RunContext
from temporalio import workflow

from agentledger._compat import mark_safe_at_runtime
from agentledger.model._conversions import error_info, ledger_usage
from agentledger.model._ids import own_workflow_run_id
from agentledger.model._records import RunStart
from agentledger.workflows._approvals import APPROVALS_PATCH, own_workflow_gate
from agentledger.workflows._ledger_calls import ledger_activity, preview, seal_run
from agentledger.workflows._observer import LedgerObserver
from agentledger.workflows._registry import approvals_in_own_workflows
from agentledger.workflows._state import CURRENT_RUN, LedgerRunState, current_state
from agentledger.workflows._types import RUN_STARTED_ACTIVITY, RunStartInput, RunStartResult

__all__ = ['RUN_PATCH_PREFIX', 'OwnRunRecorder']

RUN_PATCH_PREFIX = 'agentledger.agent_run.'
"""The `workflow.patched()` id of a user workflow's n-th agent run, with n appended: marks it recorded."""


@mark_safe_at_runtime
class OwnRunRecorder(LedgerObserver):
    """Makes each run of a listed agent inside a user's workflow a ledger run (one recorder per workflow run).

    Also records, like `LedgerObserver`, the tool calls that end in workflow code (a validation error,
    a deferred call), for the run the hook belongs to.
    """

    def __init__(self) -> None:
        super().__init__()
        self._runs = 0

    async def wrap_run(self, ctx: RunContext[Any], *, handler: WrapRunHandler) -> AgentRunResult[Any]:
        """Record the run's start, run it with its ledger state current, seal it with its outcome."""
        if not workflow.in_workflow():
            return await handler()
        self._runs += 1
        ordinal = self._runs
        outer = current_state()
        if not workflow.patched(f'{RUN_PATCH_PREFIX}{ordinal}'):
            # Started before the plugin recorded runs here: it replays, and goes on, unrecorded.
            CURRENT_RUN.set(None)
            return await handler()
        info = workflow.info()
        state = LedgerRunState(
            run_id=own_workflow_run_id(info.workflow_id, info.first_execution_run_id, info.continued_run_id, ordinal),
            workflow_id=info.workflow_id,
            temporal_run_id=info.run_id,
            activity_prefix=f'agent-{ordinal}.',
        )
        if approvals_in_own_workflows(info.task_queue) and workflow.patched(APPROVALS_PATCH):
            state.approvals = own_workflow_gate(state)
        # pydantic-ai hands what `wrap_run` set to the run's own task, so the run's activities find it.
        CURRENT_RUN.set(state)
        agent_name = ctx.agent.name if ctx.agent is not None and ctx.agent.name else 'agent'
        await ledger_activity(
            RUN_STARTED_ACTIVITY,
            RunStartInput(
                start=RunStart(
                    run_id=state.run_id,
                    workflow_id=state.workflow_id,
                    temporal_run_id=state.temporal_run_id,
                    agent_name=agent_name,
                    started_at=workflow.now(),
                    task_queue=info.task_queue,
                    conversation_id=ctx.conversation_id,
                    parent_run_id=outer.run_id if outer is not None else None,
                    prompt_preview=preview(ctx.prompt),
                    workflow_type=info.workflow_type,
                    event_id=state.run_event_id,
                ),
                fresh_start=True,
            ),
            f'start {state.run_id} ({agent_name} in {info.workflow_type})',
            result_type=RunStartResult,
        )
        try:
            result = await handler()
        except asyncio.CancelledError:
            await asyncio.shield(seal_run(state, 'cancelled', usage=ledger_usage(ctx.usage)))
            raise
        except workflow.NondeterminismError:
            raise
        except Exception as error:
            await seal_run(state, 'failed', usage=ledger_usage(ctx.usage), error=error_info(error, retryable=False))
            raise
        await seal_run(
            state,
            'completed',
            usage=ledger_usage(result.usage),
            output_preview=preview(result.output),
            final_messages=result.all_messages(),
            final_step=sum(isinstance(m, ModelResponse) for m in result.new_messages()),
        )
        return result
