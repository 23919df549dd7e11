"""Each activity and workflow registered once on a worker that registers some of the plugin's itself.

`LedgerPlugin` adds `AgentRunWorkflow`, the ledger's activities and every served agent's activities
(and child workflows) to the worker's configuration. A worker that also registers some of them
itself (`activities=[*durability.temporal_activities]`, its own `AgentPlugin(agent)`,
`workflows=[AgentRunWorkflow]`) would then name them twice, which Temporal refuses ("More than one
activity named ..."). Registrations of one name are one registration when they are equal (the same
function, bound methods of the same object, the same class): the first is kept. Different ones
under one name are a mistake, raised as a `ValueError` naming both and which one is the plugin's.

Names are read as Temporal's worker reads them (`agentledger._compat.registered_activity_name`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from temporalio.worker import ReplayerConfig, WorkerConfig

from agentledger._compat import registered_activity_name, registered_workflow_name

__all__ = ['activity_name', 'registered_once', 'workflows_registered_once']

T = TypeVar('T')


def activity_name(activity: Callable[..., Any]) -> str | None:
    """The activity type an activity callable is registered under (`None`: dynamic, or not an activity)."""
    return registered_activity_name(activity)


def _qualified(registered: object) -> str:
    function = getattr(registered, '__func__', registered)
    name = getattr(function, '__qualname__', None) or type(registered).__qualname__
    module = getattr(function, '__module__', None) or type(registered).__module__
    return f'{module}.{name}'


def _same(first: object, other: object) -> bool:
    try:
        return first is other or bool(first == other)
    except Exception:
        return False


def _once(kind: str, registered: Sequence[T], name_of: Callable[[T], str | None], ours: Sequence[object]) -> list[T]:
    kept: list[T] = []
    by_name: dict[str, T] = {}
    for item in registered:
        name = name_of(item)
        if name is None:
            # Dynamic or not registrable at all: Temporal says what is wrong with it.
            kept.append(item)
            continue
        first = by_name.get(name)
        if first is None:
            by_name[name] = item
            kept.append(item)
        elif not _same(first, item):

            def described(one: object) -> str:
                mine = any(_same(one, own) for own in ours)
                return f'{_qualified(one)} ({"from LedgerPlugin" if mine else "from the worker or another plugin"})'

            raise ValueError(
                f'{kind} {name!r} is registered twice, as two different {kind}s: {described(first)} and '
                f'{described(item)}; register one {kind} per name (LedgerPlugin registers AgentRunWorkflow, '
                "the ledger's activities and the activities of the agents it serves)"
            )
    return kept


def registered_once(
    config: WorkerConfig, activities: Sequence[Callable[..., Any]], workflows: Sequence[type]
) -> WorkerConfig:
    """`config` with every activity and workflow registered once; `activities` and `workflows` are the plugin's."""
    if 'activities' in config:
        config['activities'] = _once('activity', list(config['activities']), activity_name, activities)
    if 'workflows' in config:
        config['workflows'] = _once('workflow', list(config['workflows']), registered_workflow_name, workflows)
    return config


def workflows_registered_once(config: ReplayerConfig, workflows: Sequence[type]) -> ReplayerConfig:
    """A replayer's `config` with every workflow registered once; `workflows` are the plugin's."""
    if 'workflows' in config:
        config['workflows'] = _once('workflow', list(config['workflows']), registered_workflow_name, workflows)
    return config
