"""End-to-end in a real browser: an operator's work in the Temporal Web UI on agent runs.

Headless Debian Chromium, driven by Playwright, against the dev server's UI, with the ledger's codec
server as the UI's codec endpoint and a worker with `LedgerPlugin`: find runs by search attribute,
reset a failed run after fixing its cause, resume a parked run with the Update dialog, read a payload
the ledger holds, decoded.

With `AGENTLEDGER_SCREENSHOTS=<dir>` the scenarios save the README's Operators images there:
`AGENTLEDGER_SCREENSHOTS=docs/operators .venv/bin/pytest tests/browser`.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect
from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.worker import Worker
from temporalio.workflow import ActivityConfig

import agentledger
from agentledger import Ledger, LedgerPlugin, SqliteLedger
from agentledger.cli import start_dev_server
from agentledger.payloads import CodecServer

from ..helpers.s3_server import free_port
from ..helpers.temporal_ui import TemporalUI, chromium_executable, eventually, wait_until_served

pytestmark = pytest.mark.e2e

REFERENCE_TYPE = b'temporal.api.sdk.v1.ExternalStorageReference'

executions: Counter[tuple[str, str]] = Counter()
"""(workflow id, tool) -> how many times the tool's body ran."""
broken: set[str] = set()
"""Workflow ids whose `ship` tool fails, until the test fixes the cause."""


def _responses(messages: list[ModelMessage]) -> int:
    return sum(1 for m in messages if isinstance(m, ModelResponse))


def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return ModelResponse(parts=[TextPart('done')])


def shipping(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Reserve the item, ship it, then say so."""
    match _responses(messages):
        case 0:
            return ModelResponse(parts=[ToolCallPart('reserve', {'item': 'lamp'})])
        case 1:
            return ModelResponse(parts=[ToolCallPart('ship', {'item': 'lamp'})])
        case _:
            return ModelResponse(parts=[TextPart('shipped')])


triage_agent = Agent(FunctionModel(answer), name='triage', capabilities=[TemporalDurability()])
reporter_agent = Agent(FunctionModel(answer), name='reporter', capabilities=[TemporalDurability()])
shipper_agent = Agent(FunctionModel(shipping), name='shipper', capabilities=[TemporalDurability()])


@shipper_agent.tool_plain
def reserve(item: str) -> str:
    """Always works; counted, since a reset or resume must not run it again."""
    executions[activity.info().workflow_id, 'reserve'] += 1
    return f'{item} reserved'


@shipper_agent.tool_plain(
    metadata={
        'temporal': ActivityConfig(
            start_to_close_timeout=timedelta(seconds=10), retry_policy=RetryPolicy(maximum_attempts=1)
        )
    }
)
def ship(item: str) -> str:
    """Fails (with no retry, so the run fails or parks) while its workflow is broken."""
    workflow_id = activity.info().workflow_id
    executions[workflow_id, 'ship'] += 1
    if workflow_id in broken:
        raise RuntimeError('the carrier is down')
    return f'{item} shipped'


@dataclass
class Operated:
    """The dev server's UI with the codec endpoint, a worker serving the agents, and a browser."""

    client: Client
    task_queue: str
    ledger: Ledger
    ui_url: str
    browser: Browser


@pytest.fixture(scope='module')
async def operated(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Operated]:
    executable = chromium_executable(os.environ.get('AGENTLEDGER_CHROMIUM'))
    ui_port = free_port()
    ui_url = f'http://127.0.0.1:{ui_port}'
    # The UI calls the codec server from the browser, from the origin the UI is opened at.
    origins = [ui_url, f'http://localhost:{ui_port}']
    path = tmp_path_factory.mktemp('operator-ui') / 'runs.db'
    async with SqliteLedger(path) as ledger, CodecServer(ledger, ui_origins=origins) as codec:
        # The dev server starts with agentledger's search attributes registered.
        env = await start_dev_server(ui=True, ui_port=ui_port, ui_codec_endpoint=codec.url)
        try:
            plugin = LedgerPlugin(ledger, agents=[triage_agent, reporter_agent, shipper_agent])
            client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
            task_queue = f'tq-{uuid.uuid4().hex[:8]}'
            await wait_until_served(ui_url)
            async with Worker(client, task_queue=task_queue), async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=executable)
                try:
                    yield Operated(client, task_queue, ledger, ui_url, browser)
                finally:
                    await browser.close()
        finally:
            await env.shutdown()


@pytest.fixture
async def ui(operated: Operated, tmp_path: Path) -> AsyncIterator[TemporalUI]:
    context = await operated.browser.new_context(viewport={'width': 1280, 'height': 800})
    try:
        page = await context.new_page()
        screenshots = os.environ.get('AGENTLEDGER_SCREENSHOTS')
        yield TemporalUI(
            page, operated.ui_url, tmp_path / 'browser-artifacts', Path(screenshots) if screenshots else None
        )
    finally:
        await context.close()


async def test_the_list_filtered_by_agent_shows_exactly_its_runs(operated: Operated, ui: TemporalUI) -> None:
    """`AgentLedgerAgent = "triage"` lists the triage agent's runs and no other agent's."""
    triaged = []
    for prompt in ('sort the inbox', 'label the tickets'):
        handle = await agentledger.start(operated.client, triage_agent, prompt, task_queue=operated.task_queue)
        triaged.append(handle.workflow_id)
        await handle.result()
    other = await agentledger.start(operated.client, reporter_agent, 'report', task_queue=operated.task_queue)
    await other.result()

    async with ui.step('list runs by agent'):
        await ui.wait_for_list('AgentLedgerAgent = "triage"', set(triaged))
        await ui.capture('runs-by-agent')


async def test_a_failed_run_reset_in_the_ui_completes_without_running_its_completed_tool_again(
    operated: Operated, ui: TemporalUI
) -> None:
    """Fix the cause, Reset to the first workflow task in the UI: the run completes; `reserve` ran once."""
    workflow_id = f'shipper-{uuid.uuid4().hex[:8]}'
    broken.add(workflow_id)
    handle = await agentledger.start(
        operated.client, shipper_agent, 'ship the lamp', task_queue=operated.task_queue, workflow_id=workflow_id
    )
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert (executions[workflow_id, 'reserve'], executions[workflow_id, 'ship']) == (1, 1)

    async with ui.step('open the failed run'):
        await ui.wait_for_status(workflow_id, 'Failed')
        failure = ui.page.get_by_test_id('input-and-result').get_by_text('the carrier is down').first
        await expect(failure).to_be_visible()
        await ui.capture('failed-run', down_to=failure)

    broken.discard(workflow_id)  # the cause is fixed
    async with ui.step('reset to the first workflow task'):
        await ui.reset_to_first_workflow_task('the carrier is back')
    async with ui.step('the reset run completes'):
        await ui.wait_for_status(workflow_id, 'Completed')
        await ui.capture('completed-after-reset')

    assert (await operated.client.get_workflow_handle(workflow_id).result())['output'] == 'shipped'
    assert executions[workflow_id, 'ship'] == 2
    assert executions[workflow_id, 'reserve'] == 1, 'the completed tool ran again after the reset'


async def test_a_parked_run_resumes_by_the_update_dialog(operated: Operated, ui: TemporalUI) -> None:
    """A run parked on a failing tool, its cause fixed, resumes with the UI's Update dialog and completes."""
    workflow_id = f'shipper-{uuid.uuid4().hex[:8]}'
    broken.add(workflow_id)
    await agentledger.start(
        operated.client, shipper_agent, 'ship the lamp', task_queue=operated.task_queue,
        workflow_id=workflow_id, park_on_failure=True,
    )  # fmt: skip

    async def parked() -> bool:
        return any(run.status == 'parked' for run in await operated.ledger.runs(workflow_id=workflow_id))

    await eventually(parked, f'{workflow_id} parks')

    async with ui.step('open the parked run'):
        await ui.wait_for_status(workflow_id, 'Running')
    broken.discard(workflow_id)  # the cause is fixed
    async with ui.step('resume by the update dialog'):
        await ui.send_update('resume', {'prompt': 'the carrier is back: ship it'})
    async with ui.step('the resumed run completes'):
        await ui.wait_for_status(workflow_id, 'Completed')

    assert (executions[workflow_id, 'reserve'], executions[workflow_id, 'ship']) == (1, 2)


async def test_the_input_the_ledger_holds_shows_decoded_through_the_codec_server(
    operated: Operated, ui: TemporalUI
) -> None:
    """A prompt over the payload threshold is a reference in history; the UI shows its text, decoded."""
    opening = 'Summarise the incident report below for the on-call channel.'
    prompt = opening + '\n' + ''.join(f'{i:02d}:00 the queue depth was {i * 37} messages\n' for i in range(150))
    handle = await agentledger.start(operated.client, reporter_agent, prompt, task_queue=operated.task_queue)
    await handle.result()

    # What Temporal holds: a reference into the ledger, which only the codec server can turn back into the prompt.
    history = await handle.workflow_handle.fetch_history()
    started = next(e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
    [stored] = started.workflow_execution_started_event_attributes.input.payloads
    assert stored.metadata['messageType'] == REFERENCE_TYPE and opening.encode() not in stored.data

    async with ui.step('read the decoded input'):
        await ui.open_workflow(handle.workflow_id)
        await expect(ui.input_panel()).to_contain_text(opening, timeout=30_000)
        await expect(ui.input_panel()).not_to_contain_text('claimData')
        await ui.capture('decoded-payload')
