"""End-to-end: the codec server decodes a real agent run's Temporal history from the ledger (SQLite and S3)."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from pydantic_ai import Agent
from pydantic_ai.durable_exec.temporal import TemporalDurability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

import agentledger
from agentledger import Ledger, SqliteLedger
from agentledger.cli import find_temporal_cli, start_dev_server
from agentledger.payloads import CodecServer

from ..conftest import serve
from ..helpers.s3_server import free_port, s3_ledger

STEPS = 3
UI = 'http://localhost:8233'
REFERENCE_TYPE = b'temporal.api.sdk.v1.ExternalStorageReference'


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = sum(1 for m in messages if isinstance(m, ModelResponse))
    if done + 1 >= STEPS:
        return ModelResponse(parts=[TextPart('finished')])
    return ModelResponse(parts=[ToolCallPart('report', {'i': done})])


codec_agent = Agent(FunctionModel(script), name='codec', capabilities=[TemporalDurability()])


def report_text(i: int) -> str:
    return f'report {i}: ' + f'line {i:03d} of a long report\n' * 300  # ~8 KB: stored in the ledger


@codec_agent.tool_plain
def report(i: int) -> str:
    return report_text(i)


@pytest.fixture(params=['sqlite', 's3'])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    opened = SqliteLedger(tmp_path / 'runs.db') if request.param == 'sqlite' else s3_ledger()
    async with opened:
        yield opened


def http(method: str, url: str, body: bytes | None = None, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


async def post(url: str, payloads: list[Payload], **headers: str) -> tuple[int, dict[str, str], list[Payload]]:
    """POST payloads the way the Temporal UI and CLI do, and read the answer as payloads."""
    body = json.dumps({'payloads': [json_format.MessageToDict(p) for p in payloads]}).encode()
    status, answer_headers, raw = await asyncio.to_thread(
        http, 'POST', url, body, **{'Content-Type': 'application/json', 'X-Namespace': 'default', **headers}
    )
    assert status == 200, raw
    answer = json.loads(raw)['payloads']
    return status, answer_headers, [json_format.ParseDict(p, Payload()) for p in answer]


async def assert_ui_reaches_codec_server(ui: str, codec_url: str, origins: list[str]) -> None:
    """The UI at `ui` names `codec_url` as its codec endpoint, which answers the preflight and decode of each origin."""
    status, _, body = await asyncio.to_thread(http, 'GET', f'{ui}/api/v1/settings')
    assert status == 200 and json.loads(body)['Codec']['Endpoint'] == codec_url
    for origin in origins:
        status, headers, _ = await asyncio.to_thread(
            http,
            'OPTIONS',
            f'{codec_url}/decode',
            Origin=origin,
            **{'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'x-namespace'},
        )
        assert status == 204 and headers['Access-Control-Allow-Origin'] == origin
        plain = Payload(metadata={'encoding': b'json/plain'}, data=b'{"a": 1}')
        _, headers, (same,) = await post(f'{codec_url}/decode', [plain], Origin=origin)
        assert same == plain and headers['Access-Control-Allow-Origin'] == origin


def is_reference(payload: Payload) -> bool:
    return payload.metadata.get('messageType') == REFERENCE_TYPE


def as_json(payload: Payload) -> Any:
    assert payload.metadata['encoding'] == b'json/plain', payload.metadata
    return json.loads(payload.data)


async def test_codec_server_decodes_a_real_history(temporal_env: WorkflowEnvironment, ledger: Ledger) -> None:
    """References in a real history decode to the stored payloads; a model request's header shows its history."""
    async with serve(temporal_env, ledger, [codec_agent]) as served:
        handle = await agentledger.start(served.client, codec_agent, 'write the reports', task_queue=served.task_queue)
        result = await handle.result()
    assert result.output == 'finished'
    history = await handle.workflow_handle.fetch_history()

    references: list[Payload] = []
    headers: list[Payload] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            references += [p for p in event.activity_task_completed_event_attributes.result.payloads if is_reference(p)]
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name.endswith('__model_request'):
                header = attributes.header.fields['agentledger']
                if 'history' in json.loads(header.data):
                    headers.append(header)
    assert references, 'the tool results (> 4 KiB) should be stored in the ledger, referenced from history'
    assert headers, 'later model requests should carry a history reference'

    async with CodecServer(ledger, ui_origins=[UI]) as server:
        _, answer_headers, decoded = await post(f'{server.url}/decode', references, Origin=UI)
        assert answer_headers['Access-Control-Allow-Origin'] == UI
        assert answer_headers['Access-Control-Allow-Credentials'] == 'true'
        texts = [json.dumps(as_json(p)) for p in decoded]
        for i in range(STEPS - 1):
            assert any(json.dumps(report_text(i))[1:-1] in text for text in texts), f'report {i} not decoded'

        # The last request's header: the messages the ledger held for it, i.e. what the model saw before the new ones.
        _, _, (shown,) = await post(f'{server.url}/decode', [headers[-1]])
        value = as_json(shown)
        assert value['run_id'] == result.run_id and 'history_error' not in value
        assert len(value['history_messages']) == value['history']['count']
        assert value['history_messages'][0]['parts'][0]['content'] == 'write the reports'
        contents = [part.get('content') for message in value['history_messages'] for part in message['parts']]
        assert report_text(0) in contents

        # Everything else passes through unchanged, and encode passes through too.
        plain = Payload(metadata={'encoding': b'json/plain'}, data=b'{"hello": "world"}')
        _, _, (same,) = await post(f'{server.url}/decode', [plain])
        assert same == plain
        _, _, encoded = await post(f'{server.url}/default/encode', [plain, references[0]])
        assert encoded == [plain, references[0]]

        # Unresolvable references give a readable error in the answer, not a failed request.
        missing = Payload()
        missing.CopyFrom(references[0])
        stored = json.loads(missing.data)
        stored['claimData']['manifest'] = 'f' * 64
        missing.data = json.dumps(stored).encode()
        bad_header = Payload()
        bad_header.CopyFrom(headers[-1])
        header_value = json.loads(bad_header.data)
        header_value['history'] = {'snapshot_id': f'{result.run_id}/snap-missing', 'count': 3}
        bad_header.data = json.dumps(header_value).encode()
        _, _, (gone, unresolved) = await post(f'{server.url}/decode', [missing, bad_header])
        # The answer says what, not why: the why (the ledger's location, what it holds) is in the debug log.
        assert as_json(gone)['agentledger_error'] == 'the stored payload cannot be resolved'
        assert as_json(gone)['reference']['claim_data']['manifest'] == 'f' * 64
        assert as_json(unresolved)['history_error'] == 'the history reference cannot be resolved'
        assert as_json(unresolved)['history']['snapshot_id'].endswith('snap-missing')
        assert 'history_messages' not in as_json(unresolved)


async def test_cors_preflight_and_bad_requests(tmp_path: Path) -> None:
    """The browser's preflight is answered for the UI origin only (403 for others); bad requests get a JSON error."""
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, CodecServer(ledger, ui_origins=[UI]) as server:
        status, headers, _ = await asyncio.to_thread(
            http,
            'OPTIONS',
            f'{server.url}/decode',
            Origin=UI,
            **{'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'x-namespace,content-type'},
        )
        assert status == 204
        assert headers['Access-Control-Allow-Origin'] == UI
        assert headers['Access-Control-Allow-Credentials'] == 'true'
        allowed = {h.strip().lower() for h in headers['Access-Control-Allow-Headers'].split(',')}
        assert {'x-namespace', 'content-type', 'authorization'} <= allowed
        assert 'POST' in headers['Access-Control-Allow-Methods']

        status, headers, _ = await asyncio.to_thread(http, 'OPTIONS', f'{server.url}/decode', Origin='http://evil.test')
        assert status == 403 and 'Access-Control-Allow-Origin' not in headers

        status, _, body = await asyncio.to_thread(http, 'POST', f'{server.url}/decode', b'{"payloads": 7}')
        assert status == 400 and 'payloads' in json.loads(body)['error']
        status, _, body = await asyncio.to_thread(http, 'POST', f'{server.url}/decode', b'\xff\xfe not text')
        assert status == 400 and 'error' in json.loads(body)
        status, _, body = await asyncio.to_thread(http, 'GET', f'{server.url}/decode')
        assert status == 405
        status, _, body = await asyncio.to_thread(http, 'POST', f'{server.url}/other', b'{}')
        assert status == 404 and '/decode' in json.loads(body)['error']


async def test_temporal_cli_shows_decoded_payloads(temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """`temporal workflow show --codec-endpoint` prints the stored tool results instead of references."""
    cli = find_temporal_cli()
    assert cli is not None
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        async with serve(temporal_env, ledger, [codec_agent]) as served:
            handle = await agentledger.start(served.client, codec_agent, 'go', task_queue=served.task_queue)
            await handle.result()
        command = [
            cli,
            'workflow',
            'show',
            '--address',
            temporal_env.client.service_client.config.target_host,
            '--workflow-id',
            handle.workflow_id,
            '--output',
            'json',
        ]
        plain = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
        assert plain.returncode == 0, plain.stderr
        needle = 'line 000 of a long report'
        # Without the codec server the history shows only references.
        assert not any(needle in text for text in activity_results(plain.stdout))

        async with CodecServer(ledger) as server:
            shown = await asyncio.to_thread(
                subprocess.run,
                [*command, '--codec-endpoint', server.url],
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert shown.returncode == 0, shown.stderr
        assert any(needle in text for text in activity_results(shown.stdout))

        # With a token: the CLI's --codec-auth gets the decoded payloads, a wrong one nothing.
        async with CodecServer(ledger, auth_token='s3cret-token') as server:
            for auth, decoded in (('Bearer s3cret-token', True), ('Bearer guess', False)):
                shown = await asyncio.to_thread(
                    subprocess.run,
                    [*command, '--codec-endpoint', server.url, '--codec-auth', auth],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                if decoded:
                    assert shown.returncode == 0, shown.stderr
                    assert any(needle in text for text in activity_results(shown.stdout))
                else:  # the CLI retries the refused decode until its deadline, then gives up
                    assert shown.returncode != 0 and not activity_results(shown.stdout or '{"events": []}')


def activity_results(shown: str) -> list[str]:
    """The activity results of `temporal workflow show --output json`, decoded from base64."""
    return [
        base64.b64decode(p.get('data', '')).decode()
        for event in json.loads(shown)['events']
        for p in event.get('activityTaskCompletedEventAttributes', {}).get('result', {}).get('payloads', [])
    ]


async def test_a_token_guards_decode_but_not_the_preflight(tmp_path: Path) -> None:
    """With `auth_token`, decode needs `Authorization: Bearer <token>`; the browser's preflight does not."""
    plain = Payload(metadata={'encoding': b'json/plain'}, data=b'"hi"')
    body = json.dumps({'payloads': [json_format.MessageToDict(plain)]}).encode()
    async with SqliteLedger(tmp_path / 'runs.db') as ledger:
        with pytest.raises(ValueError, match='non-empty'):
            CodecServer(ledger, auth_token=' ')
        async with CodecServer(ledger, ui_origins=[UI], auth_token='s3cret-token') as server:
            status, headers, _ = await asyncio.to_thread(
                http, 'OPTIONS', f'{server.url}/decode', Origin=UI, **{'Access-Control-Request-Method': 'POST'}
            )
            assert status == 204 and headers['Access-Control-Allow-Origin'] == UI
            status, headers, answer = await asyncio.to_thread(http, 'POST', f'{server.url}/decode', body)
            assert status == 401 and headers['WWW-Authenticate'] == 'Bearer'
            assert json.loads(answer)['error'].startswith('no Authorization header')
            status, _, answer = await asyncio.to_thread(
                http, 'POST', f'{server.url}/decode', body, Authorization='Bearer s3cret-tokeN'
            )
            assert status == 401 and json.loads(answer)['error'].startswith('a wrong Authorization header')
            _, _, (same,) = await post(f'{server.url}/decode', [plain], Authorization='Bearer s3cret-token')
            assert same == plain


async def test_codec_server_command(tmp_path: Path) -> None:
    """`agentledger codec-server` prints its URL, serves the protocol (its namespace only), and stops on SIGTERM."""
    async with SqliteLedger(tmp_path / 'runs.db'):
        pass
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        '-m',
        'agentledger',
        'codec-server',
        '--ledger',
        f'sqlite:///{tmp_path / "runs.db"}',
        '--port',
        '0',
        '--ui-origin',
        UI,
        '--namespace',
        'default',
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert process.stdout is not None
        url = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()
        assert url.startswith('http://127.0.0.1:')
        plain = Payload(metadata={'encoding': b'json/plain'}, data=b'"hi"')
        _, headers, (same,) = await post(f'{url}/decode', [plain], Origin=UI)
        assert same == plain and headers['Access-Control-Allow-Origin'] == UI
        status, _, _ = await asyncio.to_thread(http, 'POST', f'{url}/decode', b'{}', **{'X-Namespace': 'other'})
        assert status == 403
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()

    missing = subprocess.run(
        [sys.executable, '-m', 'agentledger', 'codec-server', '--ledger', f'sqlite:///{tmp_path / "none.db"}'],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert missing.returncode == 1 and 'does not exist' in missing.stderr

    unset = subprocess.run(
        [
            *(sys.executable, '-m', 'agentledger', 'codec-server', '--ledger', f'sqlite:///{tmp_path / "runs.db"}'),
            *('--auth-token-env', 'AGENTLEDGER_TEST_NO_SUCH_TOKEN'),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert unset.returncode == 1 and 'AGENTLEDGER_TEST_NO_SUCH_TOKEN' in unset.stderr and 'unset' in unset.stderr


async def test_dev_server_ui_points_the_browser_at_the_codec_server(tmp_path: Path) -> None:
    """`start-dev --ui-codec-endpoint`: the UI tells the browser our URL, and we answer that UI origin's CORS."""
    ui_port = free_port()
    ui = f'http://localhost:{ui_port}'
    async with SqliteLedger(tmp_path / 'runs.db') as ledger, CodecServer(ledger, ui_origins=[ui]) as server:
        env = await start_dev_server(ui=True, ui_port=ui_port, ui_codec_endpoint=server.url)
        try:
            await assert_ui_reaches_codec_server(ui, server.url, [ui])
        finally:
            await env.shutdown()
