"""Write the benchmark figures into README.md from the result files, so no figure is typed by hand.

Each `<!-- results:NAME -->` ... `<!-- /results:NAME -->` block of the README is replaced by a
table rendered from `benchmarks/results/NAME.json` (written by `benchmarks/NAME.py`).

    .venv/bin/python benchmarks/render_readme.py          # rewrite README.md
    .venv/bin/python benchmarks/render_readme.py --check  # exit 1 if README.md is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / 'results'


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)


def overhead(data: dict[str, Any]) -> str:
    return _table(
        [
            'model requests per run',
            'pydantic-ai alone (median)',
            'agentledger (median)',
            'ratio',
            'in your own workflow (median)',
            'ratio',
            'ledger events/s',
        ],
        [
            [
                str(data['steps']),
                f'{data["baseline_median_s"] * 1000:.0f} ms',
                f'{data["agentledger_median_s"] * 1000:.0f} ms',
                f'{data["ratio"]:.3f}',
                f'{data["own_workflow_median_s"] * 1000:.0f} ms',
                f'{data["own_workflow_ratio"]:.3f}',
                f'{data["ledger_events_per_s"]:.0f}',
            ]
        ],
    )


def snapshots(data: dict[str, Any]) -> str:
    writes = ', '.join(f'step {step}: {ms:.1f} ms' for step, ms in data['snapshot_write_ms'].items())
    harness = data.get('harness')
    comparison = ''
    if harness:
        comparison = (
            f'\n\nThe same shape through `pydantic_ai_harness.step_persistence` 0.62.0 (in process): '
            f'{harness["sqlite_bytes"] / 1e6:.2f} MB in its SQLite store, {harness["file_bytes"] / 1e6:.2f} MB '
            'in its file store.'
        )
    return (
        _table(
            [
                'steps',
                'final history',
                'snapshot storage',
                'ratio',
                'Temporal payloads stored beside it',
                'snapshot write time',
                'continue vs fresh start',
            ],
            [
                [
                    str(data['steps']),
                    f'{data["final_history_bytes"] / 1e6:.2f} MB',
                    f'{data["stored_content_bytes"] / 1e6:.2f} MB',
                    f'{data["storage_ratio"]:.2f}x',
                    f'{data["payload_bytes"] / 1e6:.2f} MB ({data["payload_ratio"]:.2f}x)',
                    writes,
                    f'{data["continue_median_s"] * 1000:.0f} ms vs {data["fresh_run_median_s"] * 1000:.0f} ms '
                    f'({data["continue_ratio"]:.2f}x)',
                ]
            ],
        )
        + comparison
    )


def ledger_backends(data: dict[str, Any]) -> str:
    def optional(value: float | None) -> str:
        return '-' if value is None else f'{value:.2f}'

    rows = [
        [
            str(row['backend']),
            str(row['concurrent_runs']),
            f'{row["events_per_s"]:.0f}',
            optional(row['requests_per_event']),
            f'{row["snapshot_ms_p50"]:.1f} ms',
            f'{row["snapshot_ms_p95"]:.1f} ms',
        ]
        for row in data['rows']
    ]
    ledgers = _table(
        [
            'backend',
            'concurrent runs',
            'events/s',
            'S3 requests per event',
            'snapshot write (median)',
            'snapshot write (p95)',
        ],
        rows,
    )
    raw = _table(
        ['threads', 'conditional PUT/s', 'PUT (median)', 'GET/s', 'GET (median)'],
        [
            [
                str(r['concurrency']),
                f'{r["put_per_s"]:.0f}',
                f'{r["put_ms_p50"]:.1f} ms',
                f'{r["get_per_s"]:.0f}',
                f'{r["get_ms_p50"]:.1f} ms',
            ]
            for r in data['raw']
        ],
    )

    def value(ratio: dict[str, Any]) -> str:
        if ratio['value'] is None:
            return '-'
        return f'{ratio["value"]:.0f}' if ratio['name'].startswith('SQLite') else f'{ratio["value"]:.2f}x'

    ratios = _table(
        ['measure', 'concurrent runs', 'value', 'target', 'verdict'],
        [
            [r['name'], str(r['concurrent_runs']), value(r), r['target'] or '-', r['verdict'] or '-']
            for r in data['ratios']
        ],
    )
    setup = (
        f'{data["steps_per_run"]} steps per run ({data["events_per_run"]} events, {data["snapshots_per_run"]} '
        f'snapshots); the S3 ledger with `max_concurrency` = max(16, concurrent runs). S3 server: '
        f'{data["s3_server"]}; {data["cpus"]} CPUs shared by the server, the ledger and boto3.'
    )
    limits = (
        f"The server's own rates in the same run, through the same client stack (threads sharing one boto3 "
        f'client, `max_pool_connections` = max(16, threads), {data["raw_body_bytes"]}-byte bodies, '
        f'{data["raw_seconds"]:g} s each):'
    )
    judged = 'The ratios the targets name, at every concurrency measured, judged at 32 concurrent runs:'
    return f'{ledgers}\n\n{setup}\n\n{limits}\n\n{raw}\n\n{judged}\n\n{ratios}'


def history(data: dict[str, Any]) -> str:
    def cell(run: dict[str, Any] | None) -> str:
        if run is None:
            return 'not run'
        size = f'{run["history_bytes"] / 1e6:.2f} MB, {run["events"]} events'
        if run.get('temporal_runs', 1) > 1:
            size += (
                f' in {run["temporal_runs"]} Temporal runs (largest {run["largest_temporal_run_bytes"] / 1e6:.2f} MB)'
            )
        size += f', largest payload {run["largest_payload_bytes"] / 1e3:.1f} KB'
        if 'stored_ratio' in run:
            size += f', stored {run["stored_ratio"]:.2f}x the new content'
        return size if run['outcome'] == 'completed' else f'{size}: {run["outcome"]}'

    rows = [
        [
            str(row['requests']),
            cell(row['baseline']),
            cell(row['agentledger']),
            f'{row["bytes_ratio"]}x' if 'bytes_ratio' in row else '-',
        ]
        for row in data['runs']
    ]
    table = _table(['model requests', 'pydantic-ai alone', 'agentledger', 'smaller by'], rows)
    shapes = [
        [shape['shape'], _ours(shape['agentledger']), _stepledger(shape['stepledger'])]
        for shape in data.get('shapes', [])
    ]
    if shapes:
        table += '\n\n' + _table(['shape', 'agentledger', 'stepledger (published)'], shapes)
    return table


def _ours(run: dict[str, Any]) -> str:
    return (
        f'{run["history_bytes"] / 2**20:.2f} MiB history, '
        f'largest payload {run["largest_payload_bytes"] / 2**10:.1f} KiB, '
        f'stored {run["stored_bytes"] / 1e6:.2f} MB ({run["stored_ratio"]:.2f}x the new content)'
    )


def _stepledger(figures: dict[str, Any]) -> str:
    if 'history_bytes' in figures:
        return (
            f'{figures["history_bytes"] / 2**20:.1f} MiB history, largest payload '
            f'{figures["largest_payload_bytes"] / 2**10:.0f} KiB'
        )
    return f'stored {figures["stored_bytes"] / 1e6:.2f} MB ({figures["stored_ratio"]}x the new content)'


def chaos(data: dict[str, Any]) -> str:
    results = data['results']
    actions: dict[str, int] = {}
    for fault in data['faults']:
        actions[fault['action']] = actions.get(fault['action'], 0) + 1
    mix = ', '.join(f'{count} {action}' for action, count in sorted(actions.items()))
    intro = (
        f'{data["runs"]} runs of {data["steps"]} model requests per ledger, seed {data["seed"]}, '
        f'{len(data["faults"])} faults ({mix}); a fault fires once per plan, whatever the restarts.\n\n'
    )
    rows = [
        [
            f'{r["variant"]}',
            r['backend'],
            f'{r["completed"]}/{r["runs"]}',
            str(r['rows']['duplicate']),
            str(r['rows']['divergent']),
            str(r['rows']['lost']),
            str(r['rows']['orphan']),
            str(r['duplicate_effects']),
            f'{r["faults_fired"]}/{r["faults_planned"]}',
            str(r['worker_restarts']),
        ]
        for r in results
    ]
    table = _table(
        [
            'ledger',
            'backend',
            'runs completed',
            'duplicate rows',
            'divergent rows',
            'lost rows',
            'orphan rows',
            'duplicate effects',
            'faults fired',
            'worker restarts',
        ],
        rows,
    )
    resets = [r for r in results if r['reset_runs']]
    reset_table = _table(
        ['ledger', 'backend', 'runs reset to their first workflow task', 'duplicate effects'],
        [
            [r['variant'], r['backend'], f'{r["reset_completed"]}/{r["reset_runs"]}', str(r['reset_duplicate_effects'])]
            for r in resets
        ],
    )
    baseline = next((r for r in results if r['variant'] == 'agentledger-no-journal'), None)

    def share(r: dict[str, Any]) -> str:
        if baseline is None or not baseline['wasted_calls']:
            return '-'
        return f'{r["wasted_calls"] / baseline["wasted_calls"]:.0%}'

    # Result files from before the split of the waste have no `paid_again_calls`: no column then.
    split = all('paid_again_calls' in r for r in results)

    def paid_again(r: dict[str, Any]) -> list[str]:
        if not split:
            return []
        return ['-' if r['paid_again_calls'] is None else str(r['paid_again_calls'])]

    cost_table = _table(
        [
            'ledger',
            'backend',
            'billed calls',
            'accepted calls',
            'wasted calls',
            *(['paid again after the answer was recorded'] if split else []),
            'wasted spend',
            'of no-journal waste',
        ],
        [
            [
                r['variant'],
                r['backend'],
                str(r['billed_calls']),
                str(r['accepted_calls']),
                str(r['wasted_calls']),
                *paid_again(r),
                f'USD {r["wasted_usd"]:.3f}',
                share(r),
            ]
            for r in results
        ],
    )
    price = data['price_per_call_usd']
    resets_part = f'Reset attack:\n\n{reset_table}' if resets else 'Reset attack: not run.'
    missed = ''.join(f'\n- {line}' for line in data.get('missed', []))
    verdict = f'\n\nTargets missed in this run:{missed}' if missed else '\n\nEvery target was met in this run.'
    return f'{intro}{table}\n\n{resets_part}\n\nCost (USD {price} per call):\n\n{cost_table}{verdict}'


def _runs(count: int) -> str:
    return f'{count // 1000}k' if count % 1000 == 0 else str(count)


def ledger_scale(data: dict[str, Any]) -> str:
    sizes = [str(size) for size in data['sizes']]
    target = data['target_ratio']
    rows = [
        [
            row['backend'],
            f'`{data["calls"][row["query"]]}`',
            *(f'{row["median_ms"][size]:.2f} ms ({row["returned"][size]})' for size in sizes),
            f'{row["ratio"]:.2f}x',
            'PASS' if row['pass'] else 'MISS',
        ]
        for row in data['results']
    ]
    first, last = _runs(int(sizes[0])), _runs(int(sizes[-1]))
    table = _table(
        [
            'backend',
            'listing',
            *(f'{_runs(int(size))} runs' for size in sizes),
            f'{last} / {first}',
            f'target: {target:g}x',
        ],
        rows,
    )
    shares = ', '.join(f'{share:.0%} {status}' for status, share in data['statuses'].items())
    writes: list[str] = []
    for backend in data['backends']:
        by_method: dict[str, list[float]] = {}
        for step in backend['sizes'].values():
            runs, seconds = by_method.setdefault(step['write']['method'], [0, 0.0])
            by_method[step['write']['method']] = [runs + step['write']['runs'], seconds + step['write']['seconds']]
        writes.append(
            f'{backend["backend"]}: '
            + ', then '.join(f'{_runs(int(n))} runs by {how} ({s:.0f} s)' for how, (n, s) in by_method.items())
        )
    note = (
        f'\n\nMedian of {data["repeat"]} calls after a warm-up; (n): runs returned. {data["agents"]} agents, '
        f'statuses {shares}; the agent filter is `{data["filtered_agent"]}`. One ledger per backend grows through '
        f'the sizes. How it was written: {"; ".join(writes)}. S3 server: {data["s3_server"]}; {data["cpus"]} CPUs; '
        f'the whole run took {data["seconds_total"]:.0f} s.'
    )
    missed = ''.join(f'\n- {line}' for line in data['missed'])
    verdict = f'\n\nTargets missed in this run:{missed}' if missed else '\n\nEvery target was met in this run.'
    return table + note + verdict


def worker_memory(data: dict[str, Any]) -> str:
    mib = 2**20
    rss = data['rss_bytes']
    flight = data['in_flight']
    table = _table(
        [
            'runs in flight',
            'worker RSS idle',
            'RSS, all in flight',
            'per in-flight run',
            'RSS after',
            'ledger events',
            'events/s',
        ],
        [
            [
                f'{data["runs"]} ({flight["model_requests_waiting"]} waiting, {flight["ledger_running"]} running)',
                f'{rss["idle"] / mib:.0f} MiB',
                f'{rss["peak"] / mib:.0f} MiB',
                f'{data["rss_per_in_flight_run_bytes"] / 1024:.0f} KiB',
                f'{rss["after"] / mib:.0f} MiB',
                f'{data["events"]} ({data["events_per_run"]:g} per run)',
                f'{data["events_per_s_active"]:.0f}',
            ]
        ],
    )
    seconds = data['seconds']
    worker = data['worker']
    note = (
        f'\n\nOne worker process (LedgerPlugin, SQLite ledger, default sandbox, '
        f'`max_concurrent_activities={worker["max_concurrent_activities"]}`); a fresh worker held '
        f'{rss["fresh"] / mib:.0f} MiB, its high-water mark was {rss["high_water_mark"] / mib:.0f} MiB. Events/s '
        f'over the {seconds["active"]:.1f} s the batch was active ({seconds["until_all_in_flight"]:.1f} s until all '
        f'runs were in flight, {seconds["release_to_done"]:.1f} s from their release to the last result), the '
        f'worker using {data["worker_cpu_s"]:.1f} s of CPU; {data["cpus"]} CPUs shared with the dev server and the '
        'client.'
    )
    return table + note


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    'chaos': chaos,
    'history': history,
    'overhead': overhead,
    'snapshots': snapshots,
    'ledger_backends': ledger_backends,
    'ledger_scale': ledger_scale,
    'worker_memory': worker_memory,
}


def render(readme: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        path = RESULTS / f'{name}.json'
        if name not in RENDERERS or not path.exists():
            return match.group(0)
        body = RENDERERS[name](json.loads(path.read_text()))
        return f'<!-- results:{name} -->\n{body}\n<!-- /results:{name} -->'

    return re.sub(r'<!-- results:(\w+) -->.*?<!-- /results:\1 -->', replace, readme, flags=re.DOTALL)


def main() -> int:
    parser = argparse.ArgumentParser(description='render benchmark results into README.md')
    parser.add_argument('--check', action='store_true', help='fail if README.md is not up to date')
    args = parser.parse_args()
    readme_path = ROOT / 'README.md'
    current = readme_path.read_text()
    updated = render(current)
    if args.check:
        if updated != current:
            print('README.md benchmark figures are out of date: run benchmarks/render_readme.py', file=sys.stderr)
            return 1
        return 0
    readme_path.write_text(updated)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
