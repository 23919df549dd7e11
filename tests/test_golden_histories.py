"""C18 on committed histories: every `tests/histories/*.json` replays without nondeterminism, no dev server needed.

The histories were recorded by `tests/histories/record.py` with every payload inline, so replaying
them needs the plugin and the agents, not the ledger they were recorded with. They were recorded with
the oldest supported pydantic-ai; the full suite replays them on the newest (and the oldest-release
subset on the oldest), so a worker upgraded mid-run replays what an older one wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from agentledger import LedgerPlugin, MemoryLedger
from agentledger._compat import SUPPORTED_PYDANTIC_AI

from .histories.record import AGENTS, SCENARIOS

HISTORIES = sorted((Path(__file__).parent / 'histories').glob('*.json'))


def test_every_scenario_has_committed_histories() -> None:
    recorded = {path.stem.rsplit('-', 1)[0] for path in HISTORIES}
    assert recorded == set(SCENARIOS)


def test_histories_were_recorded_with_the_oldest_supported_release() -> None:
    for path in HISTORIES:
        assert json.loads(path.read_text())['recorded_with']['pydantic-ai-slim'] == SUPPORTED_PYDANTIC_AI[0], path.name


@pytest.mark.parametrize('path', HISTORIES, ids=[path.stem for path in HISTORIES])
async def test_committed_history_replays_c18(path: Path) -> None:
    recorded = json.loads(path.read_text())
    history = WorkflowHistory.from_json(recorded['workflow_id'], recorded['history'])
    replayer = Replayer(workflows=[], plugins=[LedgerPlugin(MemoryLedger(), agents=AGENTS)])
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f'{path.name}: {result.replay_failure}'
