"""The `agentledger` command line: try the demo, serve agents, start runs, and read the ledger.

Commands::

    agentledger demo [--ledger URL] [--ui]
        Start a local Temporal dev server, run the demo agent once (a tool that fails on its first
        attempt and succeeds on the retry) and print its answer and its timeline from the ledger.
        Needs no configuration: with $OPENAI_API_KEY (or $AGENTLEDGER_DEMO_MODEL) it uses a real
        model, otherwise a scripted one. --ui keeps the server and its web UI up until Ctrl-C.

    agentledger worker --agent module:attr [--agent ...] [--ledger URL] [--address HOST:PORT]
                       [--namespace NS] [--task-queue TQ] [--no-model-journal] [--outage fail|warn]
        Serve agents until Ctrl-C or SIGTERM. `attr` is an Agent, or a function with no arguments
        that returns one; each agent needs a name and the TemporalDurability capability.
        --no-model-journal turns the model-call journal off: every attempt calls the provider. --outage
        warn lets runs go on while the ledger is down (written late, marked degraded; `reconcile`
        repairs them); the default, fail, pauses them until it is back.

    agentledger run AGENT PROMPT [--address] [--namespace] [--task-queue] [--workflow-id]
                    [--deps JSON] [--json] [--park-on-failure]
        Run the agent named AGENT on a worker and print its output. Needs no ledger: the worker
        records the run. --park-on-failure parks the run when the agent fails (see `resume`).

    agentledger runs [--ledger URL] [--agent NAME] [--status STATUS] [--conversation ID]
                     [--parent RUN_ID] [--limit N] [--before RUN_ID] [--json]
        List runs, newest first. Page with --before <the last run id of the previous page>.

    agentledger show RUN_ID [--ledger URL] [--json]
        Print one run: its facts and lineage (the run it was seeded from, the runs continued or forked
        from it), one line per event (every attempt, including failed, abandoned and in-doubt ones)
        with its snapshots in place, which attempt of each step the run used, the delegate runs it
        started (5 levels deep), its model calls billed and replayed from the journal, its once-only
        effects, and the tool calls in doubt with what can be done about them.

    agentledger effects [--ledger URL] [--workflow-id ID] [--unknown] [--json]
        List once-only effects (`agentledger.once`): all, those keyed on one workflow id, or only
        those whose outcome is unknown and waits for `resolve`.

    agentledger resolve KEY --outcome done|not-done [--result JSON] [--ledger URL]
        Say what happened to a once-only effect whose attempt died mid-effect: `done` (with the
        result every later call returns) or `not-done` (the next attempt acts).

    agentledger snapshots RUN_ID [--ledger URL] [--json] [--messages SNAPSHOT_ID]
        List a run's snapshots (where `continue` and `fork` can start from), or print one snapshot's
        messages as pydantic-ai message JSON (`ModelMessagesTypeAdapter`).

    agentledger reconcile (RUN_ID | --all) [--ledger URL] [--address] [--namespace] [--dry-run]
                          [--repair-open] [--json]
        Compare runs with Temporal's history (fetched and decoded with the plugin's converter), row by
        row: ok, missing (in history, not in the ledger), divergent (the ledger disagrees with history),
        orphan (not in history), duplicate. Closed runs are repaired (each repair recorded as a
        `ledger_repaired` event with the row before and after) and sealed with how the workflow ended;
        runs whose workflow still runs are only reported unless --repair-open; --dry-run only reports.
        Exits 0 when the ledger agrees with history afterwards, 3 when findings remain unrepaired.

    agentledger continue RUN_ID [PROMPT] [--ledger URL] [--address] [--namespace] [--task-queue]
                         [--workflow-id] [--deps JSON] [--wait] [--json]
    agentledger fork RUN_ID (--at-step K | --snapshot ID) [--prompt TEXT] [same options]
        Start a new run seeded with RUN_ID's latest valid snapshot (continue), or the latest at or
        before step K, or exactly snapshot ID (fork), and print its ids and what it was seeded from;
        --wait waits for it and prints its output, as `run` does. The task queue defaults to the
        source run's. Needs the ledger (to check the run and snapshot before starting anything) and a
        worker that serves the agent with the same ledger.

    agentledger resume RUN_ID [PROMPT] [--ledger URL] [--address] [--namespace]
    agentledger abandon RUN_ID [--reason TEXT] [--ledger URL] [--address] [--namespace]
        A run started with --park-on-failure (Python: `park_on_failure=True`) that failed is `parked`:
        its workflow waits. `resume` goes on from its latest valid snapshot (completed tool calls are not
        run again), with PROMPT added to the history first if given; `abandon` makes it fail with the
        error it parked on. Both send the workflow's `resume` / `abandon` update; the Temporal UI can send
        the signals of the same names instead.

    agentledger codec-server [--ledger URL] [--host 127.0.0.1] [--port N] [--ui-origin ORIGIN ...]
                             [--auth-token-env VAR]
        Serve Temporal's remote codec protocol (POST /decode, /encode) until Ctrl-C or SIGTERM, so the
        Temporal UI (`temporal server start-dev --ui-codec-endpoint URL`) and CLI (`temporal workflow
        show --codec-endpoint URL`) show agent runs' payloads read back from the ledger: stored payloads
        in place of their references, and a model request's history messages beside its header.
        --ui-origin (repeatable, default http://localhost:8233 and http://127.0.0.1:8233, `*` for any)
        is the browser origin of the Temporal UI that may call it. The port defaults to 8081.
        --auth-token-env VAR requires `Authorization: Bearer <token>` on every request, the token read
        from environment variable VAR (`temporal workflow show --codec-auth "Bearer <token>"`).

    agentledger gc [--ledger URL] [--address HOST:PORT] [--grace-minutes N] [--dry-run] [--json]
        Delete payloads stored in the ledger through Temporal's external storage that no workflow
        inside its namespace's retention references any more (every referencing workflow is closed
        for longer than the retention, or gone), then the chunks nothing else uses. Payloads whose
        referrers Temporal cannot describe, or stored less than --grace-minutes ago (default 60), are
        kept and listed. --dry-run decides and reports without deleting.

Defaults: --ledger is $AGENTLEDGER_LEDGER or sqlite:///agentledger.db (the demo's is
sqlite:///agentledger-demo.db), --address is $TEMPORAL_ADDRESS or localhost:7233, --namespace is
`default`, --task-queue is `agentledger` (for `continue` and `fork`: the source run's).

JSON output (`--json`) is one document on stdout, with a `schema` key naming its shape:

- `run`: `{"schema": "agentledger.run/1", "output": <the agent's output as JSON>, "run_id": str,
  "workflow_id": str, "usage": {"requests", "input_tokens", "output_tokens", "tool_calls"}}`
- `runs`: `{"schema": "agentledger.runs/1", "runs": [RunRecord.to_json(), ...]}`
- `show`: `{"schema": "agentledger.show/1", "run": RunRecord.to_json(), "steps": [StepRecord.to_json(), ...],
  "events": [StepEvent.to_json(), ...], "snapshots": [SnapshotRecord.to_json(), ...],
  "tool_effects": [ToolEffect.to_json(), ...], "continuations": [run id, ...],
  "children": [RunRecord.to_json(), ...], "model_calls": Usage (accepted model requests, replayed ones
  counted apart), "effects": [EffectRecord.to_json(), ...]}` (events in ledger order, each with its
  derived `state`; continuations: the runs seeded from this one, oldest first; children: the delegate
  runs it started)
- `effects`: `{"schema": "agentledger.effects/1", "effects": [EffectRecord.to_json(), ...]}`
- `continue` / `fork`: `{"schema": "agentledger.start/1", "run_id": str, "workflow_id": str,
  "forked_from": {"run_id", "snapshot_id", "reason"}}`; with --wait, the `agentledger.run/1` document
  plus `forked_from`. For `continue` the snapshot is the latest when the command ran.
- `gc`: `{"schema": "agentledger.gc/1", "dry_run": bool, "deleted": [manifest, ...], "chunks": int,
  "bytes": int, "kept": [{"manifest", "reasons": [str, ...]}, ...], "referrers": [{"namespace",
  "workflow_id", "state": "open|retained|expired|gone|unknown", "detail"}, ...]}`
- `reconcile`: `{"schema": "agentledger.reconcile/1", "runs": [{"run_id", "workflow_id", "status", "open",
  "repaired", "counts": {"ok", "missing", "divergent", "orphan", "duplicate"}, "findings": [{"category", "row",
  "key", "reason", "before", "after", "stored_seqs"}, ...], "unknown_temporal_runs": [...]}, ...]}`
- `snapshots`: `{"schema": "agentledger.snapshots/1", "run_id": str, "latest": snapshot id or null,
  "snapshots": [SnapshotRecord.to_json(), ...]}`; `--messages` prints a JSON list of pydantic-ai
  messages instead (no `schema` key: it is pydantic-ai's own format)

Exit codes: 0 on success, 1 for an error the message explains (an unknown run id, snapshot id or
step, a bad ledger URL, Temporal unreachable, a failed run), printed as one `agentledger: <message>`
line on stderr, 2 for a usage error, and 3 from `reconcile` when findings remain unrepaired.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

from pydantic_ai.agent.abstract import AbstractAgent
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
from pydantic_ai.messages import ModelMessagesTypeAdapter
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, Plugin, WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentledger import __version__
from agentledger.cli._demo import DEMO_PROMPT, demo_agent
from agentledger.cli._devserver import start_dev_server
from agentledger.cli._render import (
    RunView,
    effects_json,
    reconcile_json,
    render_effects,
    render_gc,
    render_reconcile,
    render_runs,
    render_snapshots,
    render_timeline,
    result_json,
    run_json,
    runs_json,
    snapshots_json,
    start_json,
)
from agentledger.client import (
    AgentRunHandle,
    AgentRunResult,
    abandon_parked,
    continue_run,
    fork_run,
    resume_parked,
    start,
)
from agentledger.errors import AgentLedgerError
from agentledger.ledger import Ledger, open_ledger
from agentledger.ledger._lineage import resolve_seed
from agentledger.ledger._scopes import Scopes
from agentledger.model._effects import ResolveOutcome
from agentledger.model._records import ForkRef, RunRecord, RunStatus
from agentledger.payloads._codec_server import DEFAULT_UI_ORIGINS, CodecServer
from agentledger.payloads._gc import DEFAULT_GRACE, collect_garbage
from agentledger.plugin import LedgerPlugin
from agentledger.reconcile import reconcile_ledger, reconcile_run

__all__ = ['CliError', 'main']

DEFAULT_LEDGER = 'sqlite:///agentledger.db'
"""The ledger when neither --ledger nor $AGENTLEDGER_LEDGER is given."""

DEMO_LEDGER = 'sqlite:///agentledger-demo.db'
"""The demo's ledger when --ledger is not given (kept apart from a real one)."""

DEFAULT_ADDRESS = 'localhost:7233'
"""The Temporal address when neither --address nor $TEMPORAL_ADDRESS is given."""

DEFAULT_NAMESPACE = 'default'
"""The Temporal namespace when --namespace is not given."""

DEFAULT_TASK_QUEUE = 'agentledger'
"""The task queue when --task-queue is not given."""

DEMO_TASK_QUEUE = 'agentledger-demo'
"""The task queue of the demo's worker."""

_TEMPORAL_COMMANDS = frozenset({'demo', 'worker', 'run', 'continue', 'fork', 'resume', 'abandon', 'gc', 'reconcile'})
"""Commands that start the Temporal SDK's runtime (see `main` for why that matters)."""

DEFAULT_CODEC_PORT = 8081
"""The codec server's port when --port is not given."""

DELEGATE_DEPTH = 5
"""How many levels of delegate runs `show` reads below a run."""

_Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class CliError(Exception):
    """An expected failure: `main` prints `agentledger: <message>` to stderr and exits with 1."""


def main(argv: list[str] | None = None) -> int:
    """Run the `agentledger` command line with `argv` (default: `sys.argv[1:]`) and return its exit code.

    Called without `argv`, that is as the `agentledger` program, a command that used Temporal ends
    the process itself (`os._exit`, after flushing): the Temporal SDK's Rust threads can abort
    interpreter shutdown with "PyGILState_Release: thread state must be current"
    (temporalio/sdk-python#300), which would turn a finished command into exit code 134.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        # argparse exits on --help, --version (0) and usage errors (2); callers of main() get the code instead.
        return stop.code if isinstance(stop.code, int) else 0
    command: _Command = args.handler
    try:
        code = asyncio.run(command(args))
    except (CliError, AgentLedgerError) as error:
        print(f'agentledger: {error}', file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    if argv is None and args.command in _TEMPORAL_COMMANDS:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


# --- arguments ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='agentledger',
        description='Run pydantic-ai agents durably on Temporal and keep a ledger of every step.',
    )
    parser.add_argument('--version', action='version', version=f'agentledger {__version__}')
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    demo = commands.add_parser('demo', help='run the demo agent on a local Temporal dev server and show its timeline')
    demo.add_argument('--ledger', default=DEMO_LEDGER, help=f'ledger URL (default: {DEMO_LEDGER})')
    demo.add_argument('--ui', action='store_true', help='enable the Temporal web UI and keep it up until Ctrl-C')
    demo.set_defaults(handler=_demo)

    worker = commands.add_parser('worker', help='serve agents until Ctrl-C or SIGTERM')
    worker.add_argument(
        '--agent',
        action='append',
        required=True,
        metavar='MODULE:ATTR',
        help='an Agent, or a function returning one, to serve (repeat for several)',
    )
    _ledger_option(worker)
    _temporal_options(worker)
    worker.add_argument(
        '--no-model-journal',
        dest='model_journal',
        action='store_false',
        help='call the provider on every attempt instead of replaying journaled responses',
    )
    worker.add_argument(
        '--outage',
        choices=('fail', 'warn'),
        default='fail',
        help='when the ledger cannot be written: pause runs until it is back (fail, default), or go on, '
        'write late and mark the runs degraded (warn)',
    )
    worker.set_defaults(handler=_worker)

    run = commands.add_parser('run', help='run an agent on a worker and print its output')
    run.add_argument('agent', metavar='AGENT', help='the name of an agent a worker serves')
    run.add_argument('prompt', metavar='PROMPT', help='the user prompt')
    _temporal_options(run)
    run.add_argument('--workflow-id', help='the Temporal workflow id (default: <agent>-<random>)')
    run.add_argument('--deps', type=_json_value, help="the run's deps as JSON, validated against the agent's deps_type")
    run.add_argument('--json', action='store_true', help='print the result as JSON (schema agentledger.run/1)')
    run.add_argument(
        '--park-on-failure',
        action='store_true',
        help='if the agent fails, park the run until `agentledger resume` or `abandon` instead of failing',
    )
    run.set_defaults(handler=_run)

    runs = commands.add_parser('runs', help='list runs, newest first')
    _ledger_option(runs)
    runs.add_argument('--agent', help='only runs of this agent')
    runs.add_argument('--status', choices=get_args(RunStatus), help='only runs with this status')
    runs.add_argument('--conversation', metavar='ID', help='only runs of this conversation')
    runs.add_argument('--parent', metavar='RUN_ID', help='only runs started by this run')
    runs.add_argument('--limit', type=_positive_int, default=20, metavar='N', help='at most N runs (default: 20)')
    runs.add_argument('--before', metavar='RUN_ID', help='only runs older than this one (the next page)')
    runs.add_argument('--json', action='store_true', help='print JSON (schema agentledger.runs/1)')
    runs.set_defaults(handler=_runs)

    show = commands.add_parser('show', help="print a run's timeline: every event, attempt and step")
    show.add_argument('run_id', metavar='RUN_ID')
    _ledger_option(show)
    show.add_argument('--json', action='store_true', help='print JSON (schema agentledger.show/1)')
    show.set_defaults(handler=_show)

    effects = commands.add_parser('effects', help='list once-only effects (agentledger.once)')
    _ledger_option(effects)
    effects.add_argument('--workflow-id', metavar='ID', help='only effects keyed on this workflow id')
    effects.add_argument('--unknown', action='store_true', help='only effects whose outcome waits for `resolve`')
    effects.add_argument('--json', action='store_true', help='print JSON (schema agentledger.effects/1)')
    effects.set_defaults(handler=_effects)

    resolve = commands.add_parser('resolve', help='say whether a once-only effect in doubt happened')
    resolve.add_argument('key', metavar='KEY', help='the effect key (see `agentledger effects --unknown`)')
    resolve.add_argument('--outcome', required=True, choices=['done', 'not-done'])
    resolve.add_argument('--result', type=_json_value, help='with --outcome done: the result as JSON')
    _ledger_option(resolve)
    resolve.set_defaults(handler=_resolve)

    snapshots = commands.add_parser('snapshots', help="list a run's snapshots, or print one snapshot's messages")
    snapshots.add_argument('run_id', metavar='RUN_ID')
    _ledger_option(snapshots)
    snapshots.add_argument('--json', action='store_true', help='print JSON (schema agentledger.snapshots/1)')
    snapshots.add_argument(
        '--messages', metavar='SNAPSHOT_ID', help="print this snapshot's messages as pydantic-ai message JSON"
    )
    snapshots.set_defaults(handler=_snapshots)

    reconcile = commands.add_parser(
        'reconcile', help="compare runs with Temporal's history and repair what is lost or wrong (audited)"
    )
    reconcile.add_argument('run_id', metavar='RUN_ID', nargs='?', help='the run to reconcile')
    reconcile.add_argument('--all', action='store_true', help='every run of the ledger, newest first')
    _ledger_option(reconcile)
    _temporal_options(reconcile, task_queue=None, with_task_queue=False)
    reconcile.add_argument('--dry-run', action='store_true', help='only report, repair nothing')
    reconcile.add_argument(
        '--repair-open', action='store_true', help='repair runs whose workflow is still running too (default: report)'
    )
    reconcile.add_argument('--json', action='store_true', help='print JSON (schema agentledger.reconcile/1)')
    reconcile.set_defaults(handler=_reconcile)

    continuing = commands.add_parser('continue', help="start a new run from a run's latest valid snapshot")
    continuing.add_argument('run_id', metavar='RUN_ID', help='the run to continue')
    continuing.add_argument('prompt', metavar='PROMPT', nargs='?', help='a new user prompt (default: none)')
    _seeded_options(continuing)
    continuing.set_defaults(handler=_continue)

    fork = commands.add_parser('fork', help='start a new run from an earlier snapshot of a run')
    fork.add_argument('run_id', metavar='RUN_ID', help='the run to fork')
    point = fork.add_mutually_exclusive_group(required=True)
    point.add_argument('--at-step', type=int, metavar='K', help='from the latest valid snapshot at or before step K')
    point.add_argument('--snapshot', metavar='ID', help='from exactly this snapshot (see `agentledger snapshots`)')
    fork.add_argument('--prompt', metavar='TEXT', help='a new user prompt (default: none)')
    _seeded_options(fork)
    fork.set_defaults(handler=_fork)

    resume = commands.add_parser('resume', help='resume a parked run from its latest valid snapshot')
    resume.add_argument('run_id', metavar='RUN_ID', help='the parked run')
    resume.add_argument('prompt', metavar='PROMPT', nargs='?', help='a new user prompt to add first (default: none)')
    _ledger_option(resume)
    _temporal_options(resume, with_task_queue=False)
    resume.set_defaults(handler=_resume_or_abandon)

    abandon = commands.add_parser('abandon', help='give up on a parked run: it fails with the error it parked on')
    abandon.add_argument('run_id', metavar='RUN_ID', help='the parked run')
    abandon.add_argument('--reason', help='why, recorded with the failure')
    _ledger_option(abandon)
    _temporal_options(abandon, with_task_queue=False)
    abandon.set_defaults(handler=_resume_or_abandon)

    codec = commands.add_parser('codec-server', help='serve decoded payloads to the Temporal UI and CLI')
    _ledger_option(codec)
    codec.add_argument('--host', default='127.0.0.1', help='the address to listen on (default: 127.0.0.1)')
    codec.add_argument(
        '--port', type=int, default=DEFAULT_CODEC_PORT, metavar='N', help=f'(default: {DEFAULT_CODEC_PORT})'
    )
    codec.add_argument(
        '--ui-origin',
        action='append',
        metavar='ORIGIN',
        help=f'a Temporal UI origin that may call it, repeatable, * for any (default: {" ".join(DEFAULT_UI_ORIGINS)})',
    )
    codec.add_argument(
        '--auth-token-env',
        metavar='VAR',
        help='require "Authorization: Bearer <token>", the token read from environment variable VAR',
    )
    codec.set_defaults(handler=_codec_server)

    gc = commands.add_parser('gc', help='delete stored payloads no workflow inside its retention references')
    _ledger_option(gc)
    gc.add_argument(
        '--address',
        default=os.environ.get('TEMPORAL_ADDRESS', DEFAULT_ADDRESS),
        metavar='HOST:PORT',
        help=f'the Temporal server the workflows ran on (default: $TEMPORAL_ADDRESS or {DEFAULT_ADDRESS})',
    )
    gc.add_argument(
        '--grace-minutes',
        type=_non_negative_int,
        default=int(DEFAULT_GRACE.total_seconds() // 60),
        metavar='N',
        help='keep payloads stored less than N minutes ago (default: %(default)s)',
    )
    gc.add_argument('--dry-run', action='store_true', help='report what would be deleted, delete nothing')
    gc.add_argument('--json', action='store_true', help='print JSON (schema agentledger.gc/1)')
    gc.set_defaults(handler=_gc)
    return parser


def _ledger_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--ledger',
        default=os.environ.get('AGENTLEDGER_LEDGER', DEFAULT_LEDGER),
        metavar='URL',
        help=f'ledger URL (default: $AGENTLEDGER_LEDGER or {DEFAULT_LEDGER})',
    )


def _temporal_options(
    parser: argparse.ArgumentParser, *, task_queue: str | None = DEFAULT_TASK_QUEUE, with_task_queue: bool = True
) -> None:
    parser.add_argument(
        '--address',
        default=os.environ.get('TEMPORAL_ADDRESS', DEFAULT_ADDRESS),
        metavar='HOST:PORT',
        help=f'the Temporal server (default: $TEMPORAL_ADDRESS or {DEFAULT_ADDRESS})',
    )
    parser.add_argument('--namespace', default=DEFAULT_NAMESPACE, help=f'(default: {DEFAULT_NAMESPACE})')
    if not with_task_queue:
        return
    # A continued or forked run goes to its source run's task queue unless told otherwise.
    shown = task_queue if task_queue is not None else "the source run's"
    parser.add_argument('--task-queue', default=task_queue, help=f'(default: {shown})')


def _seeded_options(parser: argparse.ArgumentParser) -> None:
    """The options `continue` and `fork` share: where the ledger and Temporal are, and how to start and report."""
    _ledger_option(parser)
    _temporal_options(parser, task_queue=None)
    parser.add_argument('--workflow-id', help='the Temporal workflow id (default: <agent>-<continue|fork>-<random>)')
    parser.add_argument('--deps', type=_json_value, help="the new run's deps as JSON")
    parser.add_argument('--wait', action='store_true', help='wait for the run and print its output')
    parser.add_argument(
        '--json', action='store_true', help='print JSON (schema agentledger.start/1, with --wait agentledger.run/1)'
    )


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f'not valid JSON: {error}') from error


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected a whole number of at least 0, got {text!r}')
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'expected a positive whole number, got {text!r}')
    return value


# --- commands ----------------------------------------------------------------------------------------


async def _demo(args: argparse.Namespace) -> int:
    ledger = open_ledger(args.ledger)
    await _check_ledger(args.ledger)
    agent = demo_agent()
    plugin = LedgerPlugin(ledger, agents=[agent])
    # The demo fails one attempt on purpose and its timeline shows that; Temporal's warning with a
    # traceback for the same failure would only look like a crash.
    logging.getLogger('temporalio.activity').setLevel(logging.ERROR)
    _status('starting a Temporal dev server (building the Temporal CLI first if needed)...')
    ui_port = _free_port() if args.ui else None
    env = await _dev_server(plugin, ui_port)
    try:
        if ui_port is not None:
            _status(f'Temporal UI: http://localhost:{ui_port}')
        async with Worker(env.client, task_queue=DEMO_TASK_QUEUE):
            model = agent.model if isinstance(agent.model, str) else getattr(agent.model, 'model_name', '?')
            _status(f'running the demo agent (model {model}): {DEMO_PROMPT}')
            handle = await start(env.client, agent, DEMO_PROMPT, task_queue=DEMO_TASK_QUEUE)
            result = await _result(handle)
            # Read while the worker (which opened the ledger) is still up.
            view = await _read_view(ledger, result.run_id)
        print(result.output)
        print()
        print(render_timeline(view, ledger_url=ledger.url))
        print()
        print(f'agentledger show {result.run_id} --ledger {args.ledger}')
        if ui_port is not None:
            print(
                f'Temporal UI: http://localhost:{ui_port}/namespaces/{DEFAULT_NAMESPACE}/workflows/{view.run.workflow_id}'
            )
            sys.stdout.flush()
            await _until_stopped('the dev server stays up for the UI; press Ctrl-C to stop it')
    finally:
        await env.shutdown()
    return 0


async def _worker(args: argparse.Namespace) -> int:
    agents = [_import_agent(spec) for spec in args.agent]
    ledger = open_ledger(args.ledger)
    try:
        plugin = LedgerPlugin(ledger, agents=agents, model_journal=args.model_journal, outage=args.outage)
    except ValueError as error:
        raise CliError(str(error)) from error
    await _check_ledger(args.ledger)
    # A long-running process: its warnings (failed activity attempts, ledger retries) belong in its log.
    logging.basicConfig(level=logging.WARNING, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    client = await _connect(args.address, args.namespace, plugin)
    # A worker checks its namespace when it starts, but reports a missing one as a bare RuntimeError.
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=args.namespace))
    except RPCError as error:
        raise CliError(f'cannot use namespace {args.namespace!r} at {args.address}: {error.message}') from error
    names = ', '.join(repr(agent.name) for agent in agents)
    async with Worker(client, task_queue=args.task_queue):
        await _until_stopped(
            f'worker: serving {names} on task queue {args.task_queue!r} at {args.address} '
            f'(namespace {args.namespace}), ledger {ledger.url}; Ctrl-C to stop'
        )
        _status('worker: stopping')
    return 0


async def _run(args: argparse.Namespace) -> int:
    # The client needs pydantic-ai's payload converter only; the worker records the run in its ledger.
    client = await _connect(args.address, args.namespace, PydanticAIPlugin())
    with _starting(args):
        handle: AgentRunHandle[Any] = await start(
            client,
            args.agent,
            args.prompt,
            task_queue=args.task_queue,
            deps=args.deps,
            workflow_id=args.workflow_id,
            park_on_failure=args.park_on_failure,
        )
    _status(f'started run {handle.run_id} (workflow {handle.workflow_id}); waiting for a worker on {args.task_queue!r}')
    if args.park_on_failure:
        _status(f'if it parks: agentledger resume {handle.run_id} [PROMPT], or agentledger abandon {handle.run_id}')
    _print_result(await _result(handle), as_json=args.json)
    return 0


async def _resume_or_abandon(args: argparse.Namespace) -> int:
    """`resume` / `abandon`: send the update to the parked run's workflow, after checking the ledger says parked."""
    async with _reading(args.ledger) as ledger:
        record = await ledger.run(args.run_id)
    if record.status != 'parked':
        raise CliError(
            f'run {record.run_id} is not parked (status {record.status}); only a parked run can be resumed or '
            'abandoned (a run parks on failure when started with --park-on-failure)'
        )
    client = await _connect(args.address, args.namespace, PydanticAIPlugin())
    handle = client.get_workflow_handle(record.workflow_id)
    try:
        if args.command == 'resume':
            await resume_parked(handle, args.prompt)
        else:
            await abandon_parked(handle, args.reason)
    except WorkflowUpdateFailedError as error:
        raise CliError(f'workflow {record.workflow_id} refused {args.command}: {error.cause}') from error
    except RPCError as error:
        raise CliError(f'cannot reach workflow {record.workflow_id} of run {record.run_id}: {error}') from error
    done = 'resumed from its latest valid snapshot' if args.command == 'resume' else 'abandoned: it fails'
    _status(f'run {record.run_id} (workflow {record.workflow_id}) {done}')
    return 0


async def _continue(args: argparse.Namespace) -> int:
    return await _start_seeded(args, prompt=args.prompt, at_step=None, snapshot=None)


async def _fork(args: argparse.Namespace) -> int:
    return await _start_seeded(args, prompt=args.prompt, at_step=args.at_step, snapshot=args.snapshot)


async def _start_seeded(
    args: argparse.Namespace, *, prompt: str | None, at_step: int | None, snapshot: str | None
) -> int:
    """Start a run seeded from `args.run_id` (continue without `at_step` / `snapshot`, else fork) and report it."""
    async with _reading(args.ledger) as ledger:
        # Resolved before connecting, so a bad run id, snapshot id or step says so even when Temporal is down.
        seed = await resolve_seed(ledger, continue_from=args.run_id, at_step=at_step, snapshot_id=snapshot)
        task_queue: str = args.task_queue or (await ledger.run(args.run_id)).task_queue
        # No agents: this client only starts workflows. continue_run / fork_run take the ledger from the plugin
        # and check the seed again; this context's open keeps it open across their own open and close.
        client = await _connect(args.address, args.namespace, LedgerPlugin(ledger))
        with _starting(args):
            handle: AgentRunHandle[Any]
            if at_step is None and snapshot is None:
                handle = await continue_run(
                    client, args.run_id, prompt, deps=args.deps, task_queue=task_queue, workflow_id=args.workflow_id
                )
            else:
                handle = await fork_run(
                    client,
                    args.run_id,
                    at_step=at_step,
                    snapshot=snapshot,
                    prompt=prompt,
                    deps=args.deps,
                    task_queue=task_queue,
                    workflow_id=args.workflow_id,
                )
    seeded = f'{seed.run_id} ({seed.reason}, snapshot {seed.snapshot_id})'
    if args.wait:
        _status(
            f'started run {handle.run_id} (workflow {handle.workflow_id}) seeded from {seeded}; '
            f'waiting for a worker on {task_queue!r}'
        )
        _print_result(await _result(handle), as_json=args.json, forked_from=seed)
    elif args.json:
        print(json.dumps(start_json(handle.run_id, handle.workflow_id, seed), indent=2, ensure_ascii=False))
    else:
        facts = [
            ('run', handle.run_id),
            ('workflow', handle.workflow_id),
            ('task queue', task_queue),
            ('seeded from', seeded),
        ]
        width = max(len(label) for label, _ in facts)
        print('\n'.join(f'{label:<{width}}  {value}' for label, value in facts))
        _status(f'agentledger show {handle.run_id}')
    return 0


async def _runs(args: argparse.Namespace) -> int:
    async with _reading(args.ledger) as ledger:
        runs = await ledger.runs(
            agent=args.agent,
            status=args.status,
            conversation_id=args.conversation,
            parent_run_id=args.parent,
            limit=args.limit,
            before=args.before,
        )
    print(json.dumps(runs_json(runs), indent=2, ensure_ascii=False) if args.json else render_runs(runs))
    return 0


async def _show(args: argparse.Namespace) -> int:
    async with _reading(args.ledger) as ledger:
        view = await _read_view(ledger, args.run_id)
    if args.json:
        print(json.dumps(run_json(view), indent=2, ensure_ascii=False))
    else:
        print(render_timeline(view, ledger_url=ledger.url))
    return 0


async def _effects(args: argparse.Namespace) -> int:
    async with _reading(args.ledger) as ledger:
        found = await ledger.effects(workflow_id=args.workflow_id, status='unknown' if args.unknown else None)
    print(json.dumps(effects_json(found), indent=2, ensure_ascii=False) if args.json else render_effects(found))
    return 0


async def _resolve(args: argparse.Namespace) -> int:
    outcome: ResolveOutcome = args.outcome
    if outcome == 'not-done' and args.result is not None:
        raise CliError('--result goes with --outcome done: an effect that did not happen has no result')
    async with _reading(args.ledger) as ledger:
        effect = await ledger.resolve_effect(args.key, outcome, args.result)
    print(f'{effect.key}: {effect.status} (resolved by an operator)')
    return 0


async def _reconcile(args: argparse.Namespace) -> int:
    if (args.run_id is None) == (not args.all):
        raise CliError('give a RUN_ID or --all (not both)')
    if args.dry_run and args.repair_open:
        raise CliError('--dry-run repairs nothing; it cannot be combined with --repair-open')
    repair = False if args.dry_run else True if args.repair_open else None
    async with _reading(args.ledger) as ledger:
        # No agents: this client only reads histories, decoded with the converter the workers use.
        client = await _connect(args.address, args.namespace, LedgerPlugin(ledger))
        try:
            if args.all:
                reports = await reconcile_ledger(client, ledger, repair=repair)
            else:
                reports = [await reconcile_run(client, ledger, args.run_id, repair=repair)]
        except RPCError as error:
            raise CliError(f'cannot read histories from Temporal at {args.address}: {error.message}') from error
    print(json.dumps(reconcile_json(reports), indent=2, ensure_ascii=False) if args.json else render_reconcile(reports))
    return 0 if all(report.clean or report.repaired for report in reports) else 3


async def _snapshots(args: argparse.Namespace) -> int:
    async with _reading(args.ledger) as ledger:
        if args.messages is not None:
            await ledger.run(args.run_id)
            snapshot = await ledger.snapshot(args.messages)
            if snapshot.record.run_id != args.run_id:
                raise CliError(f'snapshot {args.messages!r} does not belong to run {args.run_id!r}')
            # pydantic-ai's own message format, so the output loads back with ModelMessagesTypeAdapter.
            print(ModelMessagesTypeAdapter.dump_json(snapshot.messages, indent=2).decode())
            return 0
        snapshots = await ledger.snapshots(args.run_id)
        latest = await ledger.latest_snapshot(args.run_id) if snapshots else None
    if args.json:
        print(json.dumps(snapshots_json(args.run_id, snapshots, latest), indent=2, ensure_ascii=False))
        return 0
    print(render_snapshots(snapshots))
    if latest is not None:
        _status(
            f'continue starts from the latest, {latest.snapshot_id}; fork --at-step K from the latest at or before K'
        )
        _status(f"agentledger snapshots {args.run_id} --messages SNAPSHOT_ID prints a snapshot's messages")
    return 0


async def _codec_server(args: argparse.Namespace) -> int:
    token: str | None = None
    if args.auth_token_env is not None:
        # From the environment, never the command line: a process list would show it.
        token = os.environ.get(args.auth_token_env, '').strip()
        if not token:
            raise CliError(f'--auth-token-env {args.auth_token_env}: that environment variable is unset or empty')
    async with _reading(args.ledger) as ledger:
        server = CodecServer(
            ledger,
            host=args.host,
            port=args.port,
            ui_origins=args.ui_origin or DEFAULT_UI_ORIGINS,
            auth_token=token,
        )
        try:
            await server.start()
        except OSError as error:
            raise CliError(f'cannot listen on {args.host}:{args.port}: {error}') from error
        try:
            # The URL on stdout (one line) is what the Temporal UI and CLI are given.
            print(server.url, flush=True)
            await _until_stopped(
                f'codec server: decoding payloads from {ledger.url} at {server.url}; '
                f'temporal server start-dev --ui-codec-endpoint {server.url} (or temporal workflow show '
                f'--codec-endpoint {server.url}); Ctrl-C to stop'
            )
        finally:
            await server.close()
    return 0


async def _gc(args: argparse.Namespace) -> int:
    async with _reading(args.ledger) as ledger:
        try:
            client = await Client.connect(args.address)
        except RuntimeError as error:
            raise CliError(
                f'cannot connect to Temporal at {args.address} ({error}); nothing was deleted: '
                'whether a payload is still referenced is only known from Temporal'
            ) from error
        report = await collect_garbage(
            ledger, client, dry_run=args.dry_run, grace=timedelta(minutes=args.grace_minutes)
        )
    print(json.dumps(report.to_json(), indent=2, ensure_ascii=False) if args.json else render_gc(report))
    return 0


# --- helpers -----------------------------------------------------------------------------------------


@asynccontextmanager
async def _reading(url: str) -> AsyncIterator[Ledger]:
    """Open the ledger at `url` for reading; a SQLite file that does not exist is an error, not an empty ledger."""
    ledger = open_ledger(url)
    # Opening a SQLite ledger creates its file; for a read that only hides a wrong path or directory.
    sqlite_path = ledger.url.removeprefix('sqlite:///') if ledger.url.startswith('sqlite:///') else None
    if sqlite_path is not None and not Path(sqlite_path).exists():
        raise CliError(f'no ledger at {url}: {sqlite_path} does not exist (pass --ledger or set $AGENTLEDGER_LEDGER)')
    async with ledger:
        yield ledger


async def _check_ledger(url: str) -> None:
    """Open and close the ledger at `url` once, so a ledger that cannot be opened fails here with its own message.

    The worker's `LedgerPlugin` opens its ledger as the worker starts; when that fails, temporalio
    (1.35) never marks the worker shut down, and leaving `async with Worker(...)` waits forever.
    """
    async with open_ledger(url):
        pass


async def _read_view(ledger: Ledger, run_id: str) -> RunView:
    """Everything `show` prints about a run: its records, snapshots, tool effects and lineage both ways."""
    return RunView(
        run=await ledger.run(run_id),
        events=await ledger.events(run_id),
        steps=await ledger.steps(run_id),
        snapshots=await ledger.snapshots(run_id),
        tool_effects=await ledger.tool_effects(run_id),
        continuations=await _continuations(ledger, run_id),
        delegates=await ledger.run_tree(run_id, max_depth=DELEGATE_DEPTH),
        effects=await ledger.effects(workflow_id=await Scopes(ledger).effect_scope(run_id), run_id=run_id),
    )


async def _continuations(ledger: Ledger, run_id: str) -> list[RunRecord]:
    """Every run seeded from `run_id`, oldest first (the ledger lists newest first, a page at a time)."""
    found: list[RunRecord] = []
    while True:
        page = await ledger.runs(forked_from_run_id=run_id, limit=100, before=found[-1].run_id if found else None)
        found += page
        if len(page) < 100:
            return found[::-1]


async def _connect(address: str, namespace: str, plugin: Plugin) -> Client:
    try:
        return await Client.connect(address, namespace=namespace, plugins=[plugin])
    except RuntimeError as error:
        raise CliError(
            f'cannot connect to Temporal at {address} ({error}); is a server running? '
            '`temporal server start-dev` starts one, or pass --address / set $TEMPORAL_ADDRESS'
        ) from error


@contextmanager
def _starting(args: argparse.Namespace) -> Iterator[None]:
    """Turn Temporal's refusals to start a workflow into `CliError`s that say which."""
    try:
        yield
    except WorkflowAlreadyStartedError as error:
        raise CliError(f'a workflow with id {args.workflow_id!r} is already running') from error
    except RPCError as error:
        raise CliError(f'Temporal at {args.address} refused to start the run: {error.message}') from error


def _print_result(result: AgentRunResult[Any], *, as_json: bool, forked_from: ForkRef | None = None) -> None:
    """The output on stdout (as JSON with `as_json`), and on stderr how to see its timeline."""
    if as_json:
        print(json.dumps(result_json(result, forked_from=forked_from), indent=2, ensure_ascii=False))
    else:
        output = result.output
        print(output if isinstance(output, str) else json.dumps(output, indent=2, ensure_ascii=False))
        _status(f'agentledger show {result.run_id}')


async def _result(handle: AgentRunHandle[Any]) -> AgentRunResult[Any]:
    try:
        return await handle.result()
    except WorkflowFailureError as error:
        raise CliError(f'run {handle.run_id} (workflow {handle.workflow_id}) failed: {_failure(error)}') from error


def _failure(error: BaseException) -> str:
    # Temporal wraps what went wrong (workflow failure -> activity error -> application error); the innermost says it.
    while error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, ApplicationError) and error.type:
        return f'{error.type}: {error.message}'
    return str(error)


async def _dev_server(plugin: Plugin, ui_port: int | None) -> WorkflowEnvironment:
    try:
        with _stdout_to_stderr():
            return await start_dev_server(plugins=[plugin], ui=ui_port is not None, ui_port=ui_port)
    except (RuntimeError, OSError) as error:
        raise CliError(f'cannot start a Temporal dev server: {error}') from error


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Point file descriptor 1 at stderr while the dev server starts: it inherits it and prints its banner there.

    The demo's stdout is its answer and timeline; the banner ("CLI ... Server: localhost:...") is progress.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port: int = probe.getsockname()[1]
        return port


async def _until_stopped(announcement: str) -> None:
    """Print `announcement`, then wait for Ctrl-C or SIGTERM (a container's stop) so the caller's cleanup runs.

    The handlers are installed before the announcement: whoever acts on it (a person, a supervisor,
    a test) may signal at once.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except NotImplementedError:
            # Windows: Ctrl-C still ends the wait, as KeyboardInterrupt through asyncio.run.
            continue
        installed.append(signum)
    _status(announcement)
    try:
        await stop.wait()
    finally:
        # A second Ctrl-C during the caller's cleanup interrupts it instead of being swallowed.
        for signum in installed:
            loop.remove_signal_handler(signum)


def _import_agent(spec: str) -> AbstractAgent[Any, Any]:
    """Import `module:attr` (attr may be dotted), calling it when it is a function rather than an agent."""
    module_name, _, attr = spec.partition(':')
    if not module_name or not attr:
        raise CliError(f'cannot import agent {spec!r}: expected module:attribute, e.g. myapp.agents:support_agent')
    # Console scripts do not put the current directory on sys.path; `python -m` does, and users expect the same.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
        for name in attr.split('.'):
            target = getattr(target, name)
        if not isinstance(target, AbstractAgent) and callable(target):
            target = target()
    except Exception as error:
        raise CliError(f'cannot import agent {spec!r}: {type(error).__name__}: {error}') from error
    if not isinstance(target, AbstractAgent):
        raise CliError(f'cannot import agent {spec!r}: it is a {type(target).__name__}, not a pydantic-ai agent')
    return target


def _status(message: str) -> None:
    """Progress for the person at the terminal, on stderr so stdout stays the command's result."""
    print(message, file=sys.stderr, flush=True)


if __name__ == '__main__':
    raise SystemExit(main())
