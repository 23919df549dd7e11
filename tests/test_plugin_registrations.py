"""One registration per activity and workflow name when a worker registers some of `LedgerPlugin`'s itself."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic_ai.durable_exec.temporal import TemporalDurability
from temporalio import activity, workflow
from temporalio.worker import WorkerConfig

from agentledger.plugin._registrations import registered_once
from agentledger.workflows import AgentRunWorkflow

from .helpers.agents import calc_agent
from .helpers.own_setup import ReportWorkflow, make_report


class Recorder:
    """Activities as bound methods: each object's methods are its own activities."""

    @activity.defn(name='record')
    async def record(self) -> None:
        """Nothing."""


@activity.defn(name='make_report')
async def another_report(size: int) -> str:
    return ''


@workflow.defn(name='AgentRunWorkflow')
class Impostor:
    @workflow.run
    async def run(self) -> None:
        """Nothing."""


def _config(activities: list[Any], workflows: list[type]) -> WorkerConfig:
    return {'task_queue': 'tq', 'activities': activities, 'workflows': workflows}


def test_equal_registrations_are_kept_once_in_order() -> None:
    agent_activities = TemporalDurability.from_agent(calc_agent).temporal_activities  # type: ignore[union-attr]
    recorder = Recorder()
    config = registered_once(
        _config(
            [make_report, *agent_activities, recorder.record, make_report, *agent_activities, recorder.record],
            [ReportWorkflow, AgentRunWorkflow, AgentRunWorkflow],
        ),
        activities=agent_activities,
        workflows=[AgentRunWorkflow],
    )
    # Bound methods of one object are equal (they are not the same object).
    assert recorder.record is not recorder.record and recorder.record == recorder.record
    assert config['activities'] == [make_report, *agent_activities, recorder.record]
    assert config['workflows'] == [ReportWorkflow, AgentRunWorkflow]


def test_two_activities_under_one_name_are_refused_naming_both_and_whose() -> None:
    with pytest.raises(ValueError) as info:
        registered_once(_config([make_report, another_report], []), activities=[another_report], workflows=[])
    message = str(info.value)
    assert "activity 'make_report' is registered twice" in message
    assert 'tests.helpers.own_setup.make_report (from the worker or another plugin)' in message
    assert 'tests.test_plugin_registrations.another_report (from LedgerPlugin)' in message

    # Bound methods of two objects are two activities.
    with pytest.raises(ValueError, match=r"activity 'record' is registered twice.*Recorder\.record.*Recorder\.record"):
        registered_once(_config([Recorder().record, Recorder().record], []), activities=[], workflows=[])


def test_two_workflows_under_one_name_are_refused() -> None:
    with pytest.raises(ValueError) as info:
        registered_once(_config([], [Impostor, AgentRunWorkflow]), activities=[], workflows=[AgentRunWorkflow])
    message = str(info.value)
    assert "workflow 'AgentRunWorkflow' is registered twice" in message
    assert 'tests.test_plugin_registrations.Impostor (from the worker or another plugin)' in message
    assert 'agentledger.workflows._agent_run.AgentRunWorkflow (from LedgerPlugin)' in message
