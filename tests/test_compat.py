"""Pins every private pydantic-ai / temporalio shape agentledger reads (see agentledger/_compat.py).

When one of these fails after an upgrade, update `_compat.py` (and the supported range) first.
"""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
import tomllib
import typing
from importlib.metadata import version
from pathlib import Path

import pydantic_ai.durable_exec
from packaging.version import Version
from pydantic_ai.capabilities.abstract import AbstractCapability
from pydantic_ai.durable_exec import CallToolResult, ModelCompactMessagesId, ModelRequestId, ToolsetCallToolId
from pydantic_ai.durable_exec._base import BaseDurabilityCapability
from pydantic_ai.durable_exec.temporal import TemporalOperationNamer
from pydantic_ai.durable_exec.temporal._toolset import CallToolParams
from pydantic_ai.durable_exec.temporal._transports import _CompactMessagesParams, _RequestParams
from pydantic_ai.models import ModelRequestParameters
from temporalio.testing import WorkflowEnvironment

from agentledger import _compat
from agentledger.workflows._observer import LedgerObserver
from agentledger.workflows._own import OwnRunRecorder


def _within(installed: str, supported: tuple[str, str]) -> bool:
    return Version(supported[0]) <= Version(installed) < Version(supported[1])


def test_installed_versions_are_the_pinned_range() -> None:
    assert _within(version('pydantic-ai-slim'), _compat.SUPPORTED_PYDANTIC_AI)
    assert _within(version('temporalio'), _compat.SUPPORTED_TEMPORALIO)


def test_activity_names_end_with_the_classified_suffixes() -> None:
    namer = TemporalOperationNamer('a')
    assert namer.operation_name(ModelRequestId(model_name='m')).endswith(_compat.MODEL_REQUEST_SUFFIXES[0])
    assert namer.operation_name(ModelRequestId(model_name='m', streaming=True)).endswith(
        _compat.MODEL_REQUEST_SUFFIXES[1]
    )
    call = namer.operation_name(ToolsetCallToolId('function', toolset_id='<agent>'))
    assert call.endswith(_compat.TOOL_CALL_SUFFIX)
    assert _compat.classify_activity(call) == 'tool_call'
    assert _compat.classify_activity(namer.operation_name(ModelRequestId(model_name='m'))) == 'model_request'


def test_activity_inputs_carry_the_run_context_fields_read() -> None:
    request_fields = {f.name for f in dataclasses.fields(_RequestParams)}
    assert {
        _compat.RUN_CONTEXT_KEY,
        'messages',
        'model_id',
        'model_settings',
        'model_request_parameters',
    } <= request_fields
    tool_fields = {f.name for f in dataclasses.fields(CallToolParams)}
    assert {_compat.RUN_CONTEXT_KEY, 'name', _compat.TOOL_ARGS_FIELD} <= tool_fields
    source = inspect.getsource(_compat.read_activity_args)
    for key in ('run_step', 'tool_call_id', 'tool_name'):
        assert key in source


def test_tool_result_kinds_are_all_mapped() -> None:
    """Containment: the map may name kinds of other releases; a kind this release adds must be mapped."""
    union = typing.get_args(CallToolResult)[0]
    kinds = set()
    for member in typing.get_args(union):
        (kind,) = [f.default for f in dataclasses.fields(member) if f.name == 'kind']
        kinds.add(kind)
    assert {'tool_return', 'model_retry', 'approval_required'} <= kinds
    assert not kinds - set(_compat.TOOL_RESULT_OUTCOMES), (
        f'unmapped tool result kinds: {kinds - set(_compat.TOOL_RESULT_OUTCOMES)}'
    )


def test_history_carrying_activities_are_named_and_carry_messages() -> None:
    """Compaction and (from 2.78) token counting carry the history: their names end as classified."""
    namer = TemporalOperationNamer('a')
    compact = namer.operation_name(ModelCompactMessagesId(model_name='m'))
    assert _compat.carries_history(compact) and _compat.classify_activity(compact) is None
    assert 'messages' in {f.name for f in dataclasses.fields(_CompactMessagesParams)}
    assert 'messages' in {f.name for f in dataclasses.fields(_RequestParams)}
    count_tokens = getattr(pydantic_ai.durable_exec, 'ModelCountTokensId', None)
    if Version(version('pydantic-ai-slim')) >= Version('2.78'):
        assert count_tokens is not None
    if count_tokens is not None:
        name = namer.operation_name(count_tokens(model_name='m'))
        assert _compat.carries_history(name) and _compat.classify_activity(name) is None
    for other in ('a__event_stream_handler', 'a__toolset__x__get_tools', 'external_event_ask'):
        assert not _compat.carries_history(other)


def test_runtime_safe_flag_is_what_pydantic_ai_checks() -> None:
    assert hasattr(AbstractCapability, _compat.RUNTIME_SAFE_FLAG)
    assert _compat.RUNTIME_SAFE_FLAG in inspect.getsource(BaseDurabilityCapability._validate_runtime_capabilities)
    assert getattr(LedgerObserver, _compat.RUNTIME_SAFE_FLAG) is True


def test_workflow_code_never_imports_ledger_backends() -> None:
    """The workflow package and the public package import neither aiosqlite nor boto3."""
    code = (
        'import sys, agentledger, agentledger.workflows; '
        'bad = [m for m in ("aiosqlite", "boto3", "botocore") if m in sys.modules]; '
        'print(bad); sys.exit(1 if bad else 0)'
    )
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_worker_shutdown_event_is_what_async_with_waits_on() -> None:
    from temporalio.worker import Worker

    assert _compat.WORKER_SHUTDOWN_COMPLETE in inspect.getsource(Worker.shutdown)
    # The SDK sets it itself when its own start-up validation fails, the case the plugin mirrors.
    assert _compat.WORKER_SHUTDOWN_COMPLETE in inspect.getsource(Worker._run)


async def test_a_workflow_handle_calls_through_the_named_client(temporal_env: WorkflowEnvironment) -> None:
    handle = temporal_env.client.get_workflow_handle('any-workflow')
    assert getattr(handle, _compat.WORKFLOW_HANDLE_CLIENT) is temporal_env.client
    assert _compat.caller_identity(handle) == temporal_env.client.identity != ''


def test_only_the_plain_model_request_is_journaled() -> None:
    """The streaming model request runs the agent's event stream handler, so it is never answered from the journal."""
    namer = TemporalOperationNamer('a')
    assert _compat.is_journaled_model_request(namer.operation_name(ModelRequestId(model_name='m')))
    assert not _compat.is_journaled_model_request(namer.operation_name(ModelRequestId(model_name='m', streaming=True)))
    params = _RequestParams(
        messages=[],
        model_settings={'temperature': 0.1},
        model_request_parameters=ModelRequestParameters(),
        serialized_run_context={},
        model_id='test',
    )
    assert _compat.model_request_inputs([params]) == ('test', {'temperature': 0.1}, ModelRequestParameters())


def test_history_json_of_a_tool_activity_reads_like_the_object() -> None:
    """reconcile reads activity inputs and results decoded from history without type hints: their JSON form."""
    from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
    from temporalio.converter import DataConverter

    converter: DataConverter = PydanticAIPlugin().configure_client({})['data_converter']  # type: ignore[typeddict-item]
    context = {'run_step': 2, 'tool_call_id': 'c7', 'tool_name': 'add', 'retry': 0}
    params = CallToolParams(name='add', tool_args={'a': 1}, serialized_run_context=context, tool_def=None)
    [payload] = converter.payload_converter.to_payloads([params])
    [as_json] = converter.payload_converter.from_payloads([payload])
    assert isinstance(as_json, dict)
    assert _compat.read_activity_args('tool_call', [as_json]) == _compat.read_activity_args('tool_call', [params])
    assert _compat.tool_call_arguments([as_json]) == _compat.tool_call_arguments([params]) == {'a': 1}
    union = typing.get_args(typing.get_args(CallToolResult)[0])
    for member in union:
        (kind,) = [f.default for f in dataclasses.fields(member) if f.name == 'kind']
        assert _compat.tool_outcome({'kind': kind}) == _compat.TOOL_RESULT_OUTCOMES[kind]


def test_the_tested_ends_are_the_supported_range() -> None:
    """The constraint files the test script installs are the ends of the range pyproject and _compat state."""
    root = Path(__file__).parents[1]
    project = tomllib.loads((root / 'pyproject.toml').read_text())
    [requirement] = [r for r in project['project']['dependencies'] if r.startswith('pydantic-ai-slim')]
    assert requirement.endswith(f'>={_compat.SUPPORTED_PYDANTIC_AI[0][:-2]},<{_compat.SUPPORTED_PYDANTIC_AI[1][:-2]}')

    def pinned(name: str) -> Version:
        lines = (root / 'scripts' / 'constraints' / name).read_text().splitlines()
        [pin] = [line for line in lines if line.startswith('pydantic-ai-slim==')]
        return Version(pin.split('==')[1])

    assert pinned('oldest.txt') == Version(_compat.SUPPORTED_PYDANTIC_AI[0])
    assert Version(_compat.SUPPORTED_PYDANTIC_AI[0]) < pinned('newest.txt') < Version(_compat.SUPPORTED_PYDANTIC_AI[1])


def test_an_added_capability_runs_with_the_agents_own_and_only_inside_the_block() -> None:
    """`with_added_capability` adds a capability to an agent's runs (the public `override(capabilities=...)` where the
    release has it, else the private override variable, which must then exist and hold an `Option`)."""
    from pydantic_ai import Agent
    from pydantic_ai.capabilities import AbstractCapability as Capability
    from pydantic_ai.durable_exec.temporal import TemporalDurability
    from pydantic_ai.models.test import TestModel

    class Counting(Capability[None]):
        runs = 0

        async def before_run(self, ctx: typing.Any) -> None:
            Counting.runs += 1

    agent = Agent(TestModel(), name='compat-probe', capabilities=[TemporalDurability()])
    own = list(agent.root_capability.capabilities)
    if 'capabilities' not in inspect.signature(agent.override).parameters:
        variable = getattr(agent, _compat.OVERRIDE_ROOT_CAPABILITY)
        assert variable.get() is None
    with _compat.with_added_capability(agent, Counting()):
        agent.run_sync('hi')
    agent.run_sync('hi')
    assert Counting.runs == 1
    assert list(agent.root_capability.capabilities) == own
    assert getattr(OwnRunRecorder, _compat.RUNTIME_SAFE_FLAG) is True


def test_registered_names_are_read_as_temporal_reads_them() -> None:
    from temporalio import activity

    from agentledger.workflows import AgentRunWorkflow

    @activity.defn(name='probe-activity')
    async def probe() -> None: ...

    assert _compat.registered_activity_name(probe) == 'probe-activity'
    assert _compat.registered_activity_name(lambda: None) is None
    assert _compat.registered_workflow_name(AgentRunWorkflow) == 'AgentRunWorkflow'
    assert _compat.registered_workflow_name(int) is None


def test_external_storage_keeps_its_store_context_in_the_named_fields() -> None:
    """The fields `keep_storage_contexts` copies are ExternalStorage's non-init fields that hold the bound context."""
    from temporalio.converter import ExternalStorage

    fields = {field.name: field for field in dataclasses.fields(ExternalStorage)}
    for name in _compat.EXTERNAL_STORAGE_CONTEXTS:
        assert name in fields and not fields[name].init, name
    assert '_store_context' in inspect.getsource(ExternalStorage._with_store_context)
