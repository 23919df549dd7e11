"""C18 for users' own workflows: turning the plugin on for workflows in flight does not break their replay.

`tests/histories/own/` holds the histories of `BriefingWorkflow` (`tests/histories/own_workflows.py`),
recorded by `tests/histories/record_own.py` with the oldest supported pydantic-ai: run without the ledger
plugin (to its end, and stopped at its signal wait or in the middle of its first agent run), taken over
at those points by a worker with the plugin and run to the end there, and run with the plugin throughout.
Each replays with a `Replayer` configured with `LedgerPlugin`, on whichever release this suite runs: the
plugin's `workflow.patched` gate leaves every agent run that started without it unrecorded on replay.
Two controls show the replays can fail: without the plugin, and without the gate. No dev server needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.durable_exec.temporal import AgentPlugin, PydanticAIPlugin
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from agentledger import MemoryLedger
from agentledger._compat import SUPPORTED_PYDANTIC_AI
from agentledger.workflows import _own
from agentledger.workflows._own import RUN_PATCH_PREFIX

from .histories.own_workflows import AGENTS, BriefingWorkflow
from .histories.record_own import HERE, LEDGER_WORKER, PLAIN_WORKER, SCENARIOS, ledger_replayer, patch_ids

HISTORIES = sorted(HERE.glob('*.json'))


def _load(path: Path) -> WorkflowHistory:
    recorded = json.loads(path.read_text())
    return WorkflowHistory.from_json(recorded['workflow_id'], recorded['history'])


def _activity_types(history: WorkflowHistory) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def test_every_scenario_has_committed_histories() -> None:
    assert {path.stem.rsplit('-', 1)[0] for path in HISTORIES} == set(SCENARIOS)


def test_histories_were_recorded_with_the_oldest_supported_release() -> None:
    for path in HISTORIES:
        assert json.loads(path.read_text())['recorded_with']['pydantic-ai-slim'] == SUPPORTED_PYDANTIC_AI[0], path.name


def _task_workers(history: WorkflowHistory) -> list[str]:
    """The identities of the workers that completed the workflow's tasks, each run of them once."""
    found: list[str] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            identity = event.workflow_task_completed_event_attributes.identity
            if not found or found[-1] != identity:
                found.append(identity)
    return found


@pytest.mark.parametrize(
    ('scenario', 'recorded_runs', 'workers'),
    [
        ('plain-complete', [], [PLAIN_WORKER]),
        ('plain-waiting', [], [PLAIN_WORKER]),
        ('upgraded', [2, 3, 4], [PLAIN_WORKER, LEDGER_WORKER]),
        ('plain-mid-run', [], [PLAIN_WORKER]),
        ('upgraded-mid-run', [2, 3, 4], [PLAIN_WORKER, LEDGER_WORKER]),
        ('with-plugin', [1, 2, 3, 4], [LEDGER_WORKER]),
    ],
)
def test_histories_are_what_their_names_say(scenario: str, recorded_runs: list[int], workers: list[str]) -> None:
    """Only the agent runs started on a worker with the plugin carry its patch marker and its activities."""
    history = _load(HERE / f'{scenario}-1.json')
    assert _task_workers(history) == workers
    ours = [patch for patch in patch_ids(history) if patch.startswith(RUN_PATCH_PREFIX)]
    assert ours == [f'{RUN_PATCH_PREFIX}{n}' for n in recorded_runs]
    activities = _activity_types(history)
    ledger_activities = [name for name in activities if name.startswith('agentledger')]
    assert len(ledger_activities) == 2 * len(recorded_runs)  # a run_started and a seal per recorded run
    children = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED]
    signals = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    if scenario.startswith('plain-') and scenario != 'plain-complete':  # stopped mid-way
        assert (len(children), len(signals)) == (1, 0)
        assert history.events[-1].event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
        # Mid-run: the first agent run's tool calls are out, its last model request is not.
        assert activities.count('agent__scout__model_request') == (1 if scenario == 'plain-mid-run' else 2)
    else:
        assert (len(children), len(signals)) == (2, 1)
        assert history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
        assert (activities[0], activities[-1]) == ('prepare_brief', 'file_report')


@pytest.mark.parametrize('path', HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_committed_history_replays_with_the_plugin_c18(path: Path) -> None:
    result = await ledger_replayer(MemoryLedger()).replay_workflow(_load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f'{path.name}: {result.replay_failure}'


async def test_the_replayer_sees_what_the_plugin_adds() -> None:
    """A control: a history written with the plugin does not replay without it, so the replays above prove something."""
    replayer = Replayer(
        workflows=[BriefingWorkflow], plugins=[PydanticAIPlugin(), *(AgentPlugin(agent) for agent in AGENTS)]
    )
    result = await replayer.replay_workflow(_load(HERE / 'with-plugin-1.json'), raise_on_replay_failure=False)
    assert isinstance(result.replay_failure, workflow.NondeterminismError), result.replay_failure
    assert f'patch marker encountered for change {RUN_PATCH_PREFIX}1' in str(result.replay_failure)


class _Ungated:
    """`temporalio.workflow` for `workflows/_own.py`, except that every agent run counts as recorded."""

    def __getattr__(self, name: str) -> Any:
        return getattr(workflow, name)

    @staticmethod
    def patched(patch_id: str) -> bool:
        return patch_id.startswith(RUN_PATCH_PREFIX) or workflow.patched(patch_id)


async def test_without_the_gate_a_history_from_before_the_plugin_would_not_replay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other control: the `workflow.patched` gate is what keeps the plain histories replaying."""
    monkeypatch.setattr(_own, 'workflow', _Ungated())
    result = await ledger_replayer(MemoryLedger()).replay_workflow(
        _load(HERE / 'plain-complete-1.json'), raise_on_replay_failure=False
    )
    assert isinstance(result.replay_failure, workflow.NondeterminismError), result.replay_failure
    # Its first agent run's run_started activity, where the history has the run's first model request.
    assert "Activity id of scheduled event '2' does not match activity id of activity command 'agent-1.1'" in str(
        result.replay_failure
    )
