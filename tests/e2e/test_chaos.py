"""The chaos harness (`benchmarks/chaos.py`): its checker's definitions, its fault plan, and a tiny run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / 'benchmarks'))

from _chaos_check import (  # noqa: E402
    RECORDED_MARGIN_S,
    BilledCall,
    HistoryFacts,
    Row,
    Step,
    compare_rows,
    compare_run_record,
    duplicate_effects,
    paid_again,
)
from _chaos_worker import Fault, Faults  # noqa: E402
from chaos import make_plan  # noqa: E402
from render_readme import chaos as render_chaos  # noqa: E402


def _facts() -> HistoryFacts:
    facts = HistoryFacts(run_status='completed')
    facts.steps = {
        '2': Step('2', 'model_request', 'completed', 1),
        '3': Step('3', 'tool_call', 'completed', 2),
        '4': Step('4', 'model_request', 'completed', 1),
    }
    return facts


def test_rows_that_match_history_count_nothing() -> None:
    rows = [Row('2', 1, 'completed'), Row('3', 2, 'completed'), Row('4', 1, 'completed')]
    counts = compare_rows(_facts(), rows)
    assert (counts.duplicate, counts.divergent, counts.lost, counts.orphan, counts.steps) == (0, 0, 0, 0, 3)


def test_each_kind_of_bad_row_is_counted_as_defined() -> None:
    rows = [
        Row('2', 1, 'completed'),
        Row('3', 1, 'failed'),  # the retried attempt's row: a duplicate, and it disagrees with history
        Row('3', 2, 'completed'),
        Row('9', 1, 'completed'),  # an activity history never closed
    ]
    counts = compare_rows(_facts(), rows, unclassified=2)
    assert counts.duplicate == 1
    assert counts.divergent == 1
    assert counts.lost == 1  # activity 4
    assert counts.orphan == 3  # activity 9, plus the two undecided rows
    assert counts.total == 6


def test_a_zombie_overwriting_the_accepted_row_is_divergent() -> None:
    counts = compare_rows(_facts(), [Row('2', 1, 'completed'), Row('3', 1, 'completed'), Row('4', 1, 'completed')])
    assert (counts.duplicate, counts.divergent) == (0, 1)


def test_run_record_against_how_the_workflow_ended() -> None:
    assert compare_run_record(_facts(), 'completed', 1).total == 0
    assert compare_run_record(_facts(), 'failed', 1).divergent == 1
    assert compare_run_record(_facts(), None, 0).lost == 1
    assert compare_run_record(_facts(), 'completed', 2).duplicate == 1


def test_duplicate_effects_count_executions_after_the_first() -> None:
    assert duplicate_effects(['a#1', 'a#2', 'a#1', 'a#1', 'b#1']) == 2
    assert duplicate_effects([]) == 0


def test_a_call_counts_as_paid_again_only_when_the_answer_was_recorded_before_it_was_asked() -> None:
    recorded = {'2': 100.0}
    late = 100.0 + RECORDED_MARGIN_S + 0.5
    assert paid_again([BilledCall('2', late)], recorded) == 1
    # Asked before the answer was recorded (the earlier attempt's worker died, or it raced it).
    assert paid_again([BilledCall('2', 99.0), BilledCall('2', 100.2)], recorded) == 0
    # A request the ledger never recorded as answered: every call is waste, none is paid again.
    assert paid_again([BilledCall('4', late), BilledCall('4', late + 1)], recorded) == 0


def test_plan_is_seeded_and_targets_the_right_activities() -> None:
    plan = make_plan(7, 20, 30)
    assert plan == make_plan(7, 20, 30)
    assert plan != make_plan(8, 20, 30)
    for fault in plan:
        if fault.point == 'in_seal':
            assert fault.activity_id is None
        elif fault.point in ('before_tool', 'zombie', 'in_effect') or fault.id.endswith('.tool'):
            assert fault.activity_id is not None and int(fault.activity_id) % 2 == 1  # tool calls: 2n + 1
            assert 3 <= int(fault.activity_id) <= 59
        else:
            assert fault.activity_id is not None and int(fault.activity_id) % 2 == 0  # model requests: 2n
    assert len({f.id for f in plan}) == len(plan)


def test_a_fault_fires_once_even_across_worker_restarts(tmp_path: Path) -> None:
    fault = Fault('0.tool', 0, 'before_tool', 'raise', '3')
    first = Faults([fault], str(tmp_path / 'fired.db'))
    assert first.match('chaos-x-0', 'before_tool', '3') == fault
    assert first.match('chaos-x-1', 'before_tool', '3') is None
    assert first.claim(fault)
    restarted = Faults([fault], str(tmp_path / 'fired.db'))
    assert not restarted.claim(fault)


@pytest.mark.e2e
def test_a_tiny_plan_end_to_end(tmp_path: Path) -> None:
    """Two crash-injected runs on SQLite: every planned fault fires, every run completes, no bad ledger row."""
    out = tmp_path / 'chaos.json'
    environment = {**os.environ, 'PYTHONPATH': str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / 'benchmarks' / 'chaos.py'),
            *('--runs', '2', '--steps', '4', '--quick', '--backends', 'sqlite', '--resets', '1'),
            *('--out', str(out)),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    data = json.loads(out.read_text())
    assert data['missed'] == []
    [result, *others] = data['results']
    assert (result['variant'], result['backend']) == ('agentledger', 'sqlite')
    assert result['completed'] == result['runs'] == 2
    # Every fault fired, except one inside an effect that an earlier killed attempt already performed.
    points = {f['id']: f['point'] for f in data['faults']}
    assert all(points[unfired] == 'in_effect' for unfired in result['unfired'])
    assert result['faults_fired'] == result['faults_planned'] - len(result['unfired'])
    assert result['faults_planned'] == len(data['faults']) >= 4
    assert result['rows'] == {'duplicate': 0, 'divergent': 0, 'lost': 0, 'orphan': 0, 'steps': 14}
    exits = [f for f in data['faults'] if f['action'] == 'exit' and f['id'] not in result['unfired']]
    assert result['worker_restarts'] == len(exits)
    assert result['accepted_calls'] == 8
    assert result['billed_calls'] >= result['accepted_calls']
    assert result['paid_again_calls'] == 0
    assert all(r['variant'] == 'agentledger-no-journal' for r in others)
    rendered = render_chaos(data)
    assert '| agentledger | sqlite | 2/2 | 0 | 0 | 0 | 0 |' in rendered
