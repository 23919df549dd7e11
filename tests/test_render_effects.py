"""How `agentledger show` and `agentledger effects` print billed vs replayed model calls and once-only effects."""

from __future__ import annotations

import dataclasses
import json

from agentledger.cli._parser import build_parser
from agentledger.cli._render import RunView, effects_json, render_effects, render_timeline, run_json
from agentledger.model import EffectRecord, StepRecord, Usage

from .e2e.test_cli import RUN, T0, at, fact, line_with

REPLAYED = Usage(1, 70, 5, replayed_requests=1, replayed_input_tokens=70, replayed_output_tokens=5)
STEPS = [
    StepRecord('run-abc', 't1', '1', 'model_request', 1, 2, 2, 'completed', usage=REPLAYED, replayed=True),
    StepRecord('run-abc', 't1', '3', 'model_request', 2, 1, 1, 'completed', usage=Usage(1, 90, 10)),
]
DONE = EffectRecord(
    key='demo-123/call-1/charge',
    workflow_id='demo-123',
    tool_call_id='call-1',
    name='charge',
    run_id='run-abc',
    status='done',
    created_at=T0,
    updated_at=at(1),
    attempts=2,
    result={'charge_id': 'ch-1'},
    resolution='reconciled',
)
UNKNOWN = dataclasses.replace(
    DONE, key='demo-123/call-2/charge', status='unknown', result=None, resolution=None, error='attempt x died'
)


def test_show_counts_billed_and_replayed_model_calls_and_lists_effects() -> None:
    # The counts are the run record's usage (as the ledger settled it), the same the workflow reported.
    run = dataclasses.replace(RUN, usage=REPLAYED + Usage(1, 90, 10))
    text = render_timeline(RunView(run, [], STEPS, effects=[DONE, UNKNOWN]), ledger_url='sqlite:///runs.db')
    assert fact(text, 'model calls') == '1 billed (100 tokens), 1 replayed from the journal (75 tokens not paid again)'
    steps = text.split('\nSteps\n', 1)[1]
    assert line_with(steps, '75 tokens').endswith('75 tokens replayed')
    assert line_with(steps, '100 tokens').endswith('100 tokens billed')
    effects = text.split('\nOnce-only effects\n', 1)[1]
    assert line_with(effects, 'call-1').split() == [
        'demo-123/call-1/charge',
        'done',
        'reconciled',
        '2',
        'run-abc',
        '{"charge_id":',
        '"ch-1"}',
    ]
    assert 'attempt x died' in line_with(effects, 'call-2', 'died')
    assert (
        '`agentledger resolve demo-123/call-2/charge --outcome done --result JSON --ledger sqlite:///runs.db`'
        in effects
    )


def test_effects_listing_and_json() -> None:
    assert render_effects([]) == '(no once-only effects)'
    assert render_effects([DONE]).splitlines()[0].split() == [
        'KEY',
        'STATUS',
        'DECIDED',
        'BY',
        'ATTEMPTS',
        'RUN',
        'RESULT',
        '/',
        'ERROR',
    ]
    document = json.loads(json.dumps(effects_json([DONE])))
    assert document['schema'] == 'agentledger.effects/1'
    assert document['effects'][0]['key'] == DONE.key and document['effects'][0]['result'] == {'charge_id': 'ch-1'}
    shown = run_json(RunView(RUN, [], STEPS, effects=[DONE]))
    assert shown['model_calls']['replayed_requests'] == 1 and shown['model_calls']['requests'] == 2
    assert [e['key'] for e in shown['effects']] == [DONE.key]


def test_worker_takes_no_model_journal() -> None:
    parse = build_parser().parse_args
    assert parse(['worker', '--agent', 'app:agent']).model_journal is True
    assert parse(['worker', '--agent', 'app:agent', '--no-model-journal']).model_journal is False
