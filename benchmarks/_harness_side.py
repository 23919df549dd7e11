"""The `pydantic_ai_harness.step_persistence` side of `snapshots.py`, run in its own environment.

`snapshots.py --harness` installs `pydantic-ai-harness==0.62.0` (with the pydantic-ai it pins) into
`benchmarks/.harness-venv` and runs this script there: the same scripted shape (N steps, ~4 KB of
new tool output per step), in process, with the harness's SQLite and file stores. Prints one JSON
line with the bytes each store used.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import UsageLimits
from pydantic_ai_harness.step_persistence import FileStepStore, SqliteStepStore, StepPersistence


def make_agent(steps: int, store: object) -> Agent[None, str]:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = sum(1 for m in messages if isinstance(m, ModelResponse))
        if done + 1 >= steps:
            return ModelResponse(parts=[TextPart(f'done after {done + 1}')])
        return ModelResponse(parts=[ToolCallPart('fetch', {'i': done})])

    agent = Agent(FunctionModel(script), capabilities=[StepPersistence(store=store, agent_name='bench')])

    @agent.tool_plain
    def fetch(i: int) -> str:
        return f'{i:06d}' * 683

    return agent


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob('*') if f.is_file())


async def main(steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sqlite_path = root / 'harness.db'
        await make_agent(steps, SqliteStepStore(database=sqlite_path)).run(
            'go', usage_limits=UsageLimits(request_limit=None)
        )
        files = root / 'files'
        await make_agent(steps, FileStepStore(files)).run('go', usage_limits=UsageLimits(request_limit=None))
        sizes = {'sqlite_bytes': directory_bytes(root) - directory_bytes(files), 'file_bytes': directory_bytes(files)}
    print(json.dumps(sizes))


if __name__ == '__main__':
    asyncio.run(main(int(sys.argv[1])))
