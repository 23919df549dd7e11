"""Every private shape of pydantic-ai and temporalio that agentledger reads, named in one place.

pydantic-ai's Temporal integration passes its activity inputs and results as private dataclasses.
agentledger reads them on the worker (never constructs them) to classify activities and attribute
events. Each shape used is listed here and pinned by `tests/test_compat.py`, which fails loudly
when an upstream release changes one, so an upgrade breaks a test rather than the ledger.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic_ai._utils import Some
from pydantic_ai.agent.abstract import AbstractAgent
from pydantic_ai.capabilities import AbstractCapability, CombinedCapability
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models import ModelRequestParameters

from agentledger.model._records import StepKind, ToolOutcome

__all__ = [
    'CHILD_WORKFLOW_SUFFIX',
    'EXTERNAL_STORAGE_CONTEXTS',
    'HISTORY_CARRYING_SUFFIXES',
    'MODEL_REQUEST_SUFFIXES',
    'OVERRIDE_ROOT_CAPABILITY',
    'RUNTIME_SAFE_FLAG',
    'RUN_CONTEXT_KEY',
    'SUPPORTED_PYDANTIC_AI',
    'SUPPORTED_TEMPORALIO',
    'TOOL_ARGS_FIELD',
    'TOOL_CALL_SUFFIX',
    'TOOL_RESULT_OUTCOMES',
    'WORKER_SHUTDOWN_COMPLETE',
    'WORKFLOW_HANDLE_CLIENT',
    'ActivityShape',
    'caller_identity',
    'carries_history',
    'classify_activity',
    'is_journaled_model_request',
    'is_tool_child_workflow',
    'keep_storage_contexts',
    'mark_safe_at_runtime',
    'mark_worker_never_started',
    'model_request_inputs',
    'model_request_messages',
    'read_activity_args',
    'registered_activity_name',
    'registered_workflow_name',
    'tool_call_arguments',
    'tool_outcome',
    'tool_result_detail',
    'with_added_capability',
    'with_model_request_messages',
]

SUPPORTED_PYDANTIC_AI = ('2.68.0', '2.79.0')
"""The pydantic-ai-slim range (inclusive lower, exclusive upper) whose private shapes are pinned here.

The upper bound is the next minor release not yet tested; `.ci/run` tests both ends of the range.
"""

SUPPORTED_TEMPORALIO = ('1.35.0', '1.36.0')
"""The temporalio range pinned here."""

MODEL_REQUEST_SUFFIXES = ('__model_request', '__model_request_stream')
"""Activity-type suffixes of pydantic-ai's model-request activities (`TemporalOperationNamer`)."""

HISTORY_CARRYING_SUFFIXES = ('__model_count_tokens', '__model_compact_messages')
"""Activity-type suffixes of the other activities whose input carries the message history (a `messages` field).

Token counting (`UsageLimits.count_tokens_before_request`, 2.78 and later) and message compaction are not
steps of the conversation and are not recorded as steps; their history is bounded like a model request's.
"""

TOOL_CALL_SUFFIX = '__call_tool'
"""Activity-type suffix of pydantic-ai's tool-call activities (`TemporalOperationNamer`)."""

CHILD_WORKFLOW_SUFFIX = '__child_workflow'
"""Workflow-type suffix pydantic-ai puts after a tool-call activity's name for a tool run as a child workflow.

Its input is the tool activity's (the same `CallToolParams` wire form) and its result a `CallToolResult`.
"""


def is_tool_child_workflow(workflow_type: str) -> bool:
    """Whether a child workflow type is pydantic-ai's for a tool configured to run as a child workflow."""
    return workflow_type.endswith(TOOL_CALL_SUFFIX + CHILD_WORKFLOW_SUFFIX)


RUN_CONTEXT_KEY = 'serialized_run_context'
"""The attribute of the private `_RequestParams` / `CallToolParams` activity inputs holding the run context.

Its dict carries `run_step`, `tool_call_id`, `tool_name` and `retry` (`TemporalRunContext`).
"""

TOOL_ARGS_FIELD = 'tool_args'
"""The attribute of the private `CallToolParams` tool-call activity input holding the tool's arguments."""

TOOL_RESULT_OUTCOMES: Mapping[str, ToolOutcome] = {
    'tool_return': 'returned',
    'tool_content_result': 'returned',
    'tool_return_with_raw_content': 'returned',
    'model_retry': 'retry_requested',
    'validation_error': 'validation_error',
    'call_deferred': 'deferred',
    'approval_required': 'approval_required',
    'tool_failed': 'failed',
    'run_cancelled': 'cancelled',
}
"""The `kind` discriminator of pydantic-ai's `CallToolResult` union, mapped to ledger outcomes.

It holds every kind of every supported release (2.78 added `tool_return_with_raw_content`).
"""


@dataclass(frozen=True)
class ActivityShape:
    """What the ledger knows about one pydantic-ai activity input."""

    kind: StepKind
    step: int | None
    tool_call_id: str | None
    tool_name: str | None
    model_name: str | None


RUNTIME_SAFE_FLAG = '_safe_at_runtime'
"""The private `AbstractCapability` class flag that lets a capability be added per run inside a workflow.

pydantic-ai rejects per-run capabilities in durable runs because they could contribute toolsets or
durable operations with no registered activities; a capability with neither sets this flag.
"""


def mark_safe_at_runtime(cls: type[Any]) -> type[Any]:
    """Class decorator: declare a capability that adds no toolsets and no durable operations."""
    setattr(cls, RUNTIME_SAFE_FLAG, True)
    return cls


OVERRIDE_ROOT_CAPABILITY = '_override_root_capability'
"""The private `Agent` context variable holding the root capability an `override` installs (pydantic-ai < 2.78).

pydantic-ai 2.78 added `Agent.override(capabilities=...)`; before it, the only way to add a capability to
the runs of an agent the user built (and calls in their own workflow) is to set this variable to the
agent's own capabilities plus the added one, which is what that public parameter does.
"""


def with_added_capability(agent: AbstractAgent[Any, Any], capability: AbstractCapability[Any]) -> Any:
    """A context manager in which every run of `agent` also has `capability` (pydantic-ai's `override`).

    The agent's own capabilities stay as they are (already bound to it); only `capability` is added.
    """
    own = list(agent.root_capability.capabilities)
    if 'capabilities' in inspect.signature(agent.override).parameters:
        return agent.override(capabilities=[*own, capability])
    return _legacy_override(agent, CombinedCapability([*own, capability.for_agent(agent)]))


@contextmanager
def _legacy_override(agent: AbstractAgent[Any, Any], root: CombinedCapability[Any]) -> Iterator[None]:
    variable = getattr(agent, OVERRIDE_ROOT_CAPABILITY)
    token = variable.set(Some(root))
    try:
        yield
    finally:
        variable.reset(token)


def registered_activity_name(activity: Any) -> str | None:
    """The activity type a callable is registered under, as Temporal's worker reads it (`None`: not an activity).

    temporalio keeps it in the private `temporalio.activity._Definition`; dynamic activities have no name.
    """
    import temporalio.activity

    definition = temporalio.activity._Definition.from_callable(activity)
    return definition.name if definition is not None else None


def registered_workflow_name(workflow_class: type) -> str | None:
    """The workflow type a class is registered under (`temporalio.workflow._Definition`; `None`: not a workflow)."""
    import temporalio.workflow

    definition = temporalio.workflow._Definition.from_class(workflow_class)
    return definition.name if definition is not None else None


EXTERNAL_STORAGE_CONTEXTS = ('_store_context', '_select_context')
"""The private fields of `temporalio.converter.ExternalStorage` that hold the store context Temporal binds.

They are not `__init__` fields, so `dataclasses.replace` resets them; a copy of a bound storage must carry them.
"""


def keep_storage_contexts(source: object, copy: object) -> None:
    """Give `copy` (made by `dataclasses.replace`) the store context Temporal bound to `source`, if any."""
    for name in EXTERNAL_STORAGE_CONTEXTS:
        object.__setattr__(copy, name, getattr(source, name))


WORKER_SHUTDOWN_COMPLETE = '_shutdown_complete_event'
"""The private `temporalio.worker.Worker` event that `shutdown()` and `async with` wait on.

A plugin whose `run_worker` fails before the worker starts (a ledger that cannot be opened) leaves
it unset, so `async with Worker(...)` would wait forever instead of raising the error.
"""


WORKFLOW_HANDLE_CLIENT = '_client'
"""temporalio's private attribute of a `WorkflowHandle` holding the client it calls through: the approval
helpers name who decided after that client's `identity` when the caller does not say."""


def caller_identity(handle: object) -> str:
    """The `identity` of the client a temporalio `WorkflowHandle` sends its requests with."""
    return str(getattr(handle, WORKFLOW_HANDLE_CLIENT).identity)


def mark_worker_never_started(worker: object) -> None:
    """Tell a worker that never started that its shutdown is complete, so its error surfaces."""
    getattr(worker, WORKER_SHUTDOWN_COMPLETE).set()


def classify_activity(activity_type: str) -> StepKind | None:
    """`model_request`, `tool_call`, or `None` for activities the ledger does not record as steps."""
    if activity_type.endswith(MODEL_REQUEST_SUFFIXES):
        return 'model_request'
    if activity_type.endswith(TOOL_CALL_SUFFIX):
        return 'tool_call'
    return None


def carries_history(activity_type: str) -> bool:
    """Whether the activity's input carries the message history (`_RequestParams` or `_CompactMessagesParams`)."""
    return activity_type.endswith((*MODEL_REQUEST_SUFFIXES, *HISTORY_CARRYING_SUFFIXES))


def _field(value: object, name: str) -> Any:
    """An attribute of a private input or result, or the same key of its JSON form (as read back from history)."""
    return value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)


def read_activity_args(kind: StepKind, args: Sequence[Any]) -> ActivityShape:
    """Read step index, tool call id and tool name from a pydantic-ai activity's arguments.

    The arguments may be the private input dataclasses (on the worker) or their JSON form (decoded
    from Temporal's history without type hints, as `reconcile` reads them).
    """
    wire = args[0] if args else None
    context: Any = _field(wire, RUN_CONTEXT_KEY)
    if not isinstance(context, Mapping):
        context = {}
    step = context.get('run_step')
    model_name = _field(wire, 'model_id') if kind == 'model_request' else None
    return ActivityShape(
        kind=kind,
        step=step if isinstance(step, int) else None,
        tool_call_id=context.get('tool_call_id') if kind == 'tool_call' else None,
        tool_name=(context.get('tool_name') or _field(wire, 'name')) if kind == 'tool_call' else None,
        model_name=model_name if isinstance(model_name, str) else None,
    )


def tool_call_arguments(args: Sequence[Any]) -> Mapping[str, Any]:
    """The arguments a tool-call activity calls its tool with (`CallToolParams.tool_args`; `{}` if it has none)."""
    arguments = _field(args[0], TOOL_ARGS_FIELD) if args else None
    return arguments if isinstance(arguments, Mapping) else {}


def model_request_messages(args: Sequence[Any]) -> list[ModelMessage]:
    """The message history a history-carrying activity received (`_RequestParams.messages`)."""
    messages = getattr(args[0], 'messages', None) if args else None
    return list(messages) if isinstance(messages, list) else []


def is_journaled_model_request(activity_type: str) -> bool:
    """Whether the model-call journal covers this activity: the plain model request, not the streaming one.

    The streaming activity runs the agent's `event_stream_handler` on the provider's live stream;
    answering it from the journal would skip that handler's side (the events it forwards), so it is
    always sent to the provider.
    """
    return activity_type.endswith(MODEL_REQUEST_SUFFIXES[0])


def model_request_inputs(args: Sequence[Any]) -> tuple[str | None, Mapping[str, Any] | None, ModelRequestParameters]:
    """The model id, settings and request parameters of a model-request activity (`_RequestParams`)."""
    wire = args[0]
    parameters = getattr(wire, 'model_request_parameters', None)
    if not isinstance(parameters, ModelRequestParameters):
        raise TypeError(f'not a pydantic-ai model request input: {type(wire).__name__}')
    model_id = getattr(wire, 'model_id', None)
    settings = getattr(wire, 'model_settings', None)
    return (
        model_id if isinstance(model_id, str) else None,
        settings if isinstance(settings, Mapping) else None,
        parameters,
    )


def with_model_request_messages(args: Sequence[Any], messages: list[ModelMessage]) -> list[Any]:
    """The activity arguments with their `messages` replaced (a dataclass copy of the private input)."""
    return [dataclasses.replace(args[0], messages=messages), *args[1:]]


def tool_outcome(result: object) -> ToolOutcome:
    """The ledger outcome of a tool activity's result (the private `CallToolResult` union)."""
    kind = _field(result, 'kind')
    return TOOL_RESULT_OUTCOMES.get(kind, 'returned') if isinstance(kind, str) else 'returned'


def tool_result_detail(result: object) -> str | None:
    """A short note for outcomes that carry a message (a retry prompt)."""
    message = _field(result, 'message')
    return message[:500] if isinstance(message, str) else None
