"""Which agents a worker serves, by task queue and name.

`LedgerPlugin` fills it when it configures a worker; `AgentRunWorkflow` reads it to find the agent
a run names. It lives in a module the workflow sandbox passes through, so workflow code sees the
same agent objects the worker registered (pydantic-ai is passed through as well).
"""

from __future__ import annotations

from typing import Any

from pydantic_ai.agent.abstract import AbstractAgent

__all__ = [
    'agent_names',
    'approvals_in_own_workflows',
    'lookup_agent',
    'register_agent',
    'served_agents',
    'set_approvals',
]

_agents: dict[tuple[str | None, str], AbstractAgent[Any, Any]] = {}
_no_approval_waits: set[str | None] = set()


def register_agent(task_queue: str | None, agent: AbstractAgent[Any, Any]) -> None:
    """Serve `agent` on `task_queue` under its name; a different agent under the same name is an error.

    `task_queue=None` registers it for any task queue: a `Replayer` replays histories recorded on
    queues it does not know.
    """
    if agent.name is None:
        raise ValueError('an agent run by agentledger needs a name: Agent(..., name="...")')
    existing = _agents.get((task_queue, agent.name))
    if existing is not None and existing is not agent:
        raise ValueError(
            f'two different agents are named {agent.name!r} on task queue {task_queue!r}; agent names must be unique'
        )
    _agents[(task_queue, agent.name)] = agent


def lookup_agent(task_queue: str, name: str) -> AbstractAgent[Any, Any] | None:
    """The agent served on `task_queue` under `name` (or registered for any queue), if any."""
    return _agents.get((task_queue, name)) or _agents.get((None, name))


def agent_names(task_queue: str) -> list[str]:
    """The names of the agents served on `task_queue`, sorted."""
    return sorted({name for queue, name in _agents if queue in (task_queue, None)})


def served_agents(task_queue: str) -> list[AbstractAgent[Any, Any]]:
    """The agents served on `task_queue` (or registered for any queue), each once, in registration order."""
    found: list[AbstractAgent[Any, Any]] = []
    for (queue, _), agent in _agents.items():
        if queue in (task_queue, None) and all(agent is not seen for seen in found):
            found.append(agent)
    return found


def set_approvals(task_queue: str | None, wait: bool) -> None:
    """Whether agent runs in users' own workflows on `task_queue` wait for approvals (`LedgerPlugin` option)."""
    if wait:
        _no_approval_waits.discard(task_queue)
    else:
        _no_approval_waits.add(task_queue)


def approvals_in_own_workflows(task_queue: str) -> bool:
    """Whether agent runs in users' own workflows on `task_queue` wait for approvals (the default)."""
    return task_queue not in _no_approval_waits and None not in _no_approval_waits
