"""The `agentledger` command line's arguments: every command, its options and their defaults.

Commands::

    Every RUN_ID a command takes (`show`, `snapshots`, `continue`, `fork`, `reset`, `resume`, `abandon`,
    `approve`, `deny`, `reconcile`) may be any id the Temporal UI shows: a ledger run id (`run-...`), a workflow id
    (the run of its latest execution) or a Temporal run id (the ledger run that Temporal run belongs to).

    agentledger demo [--ledger URL] [--ui]
        Start a local Temporal dev server, run the demo agent once (a tool that fails on its first
        attempt and succeeds on the retry) and print its answer and its timeline from the ledger.
        Needs no configuration: with $OPENAI_API_KEY (or $AGENTLEDGER_DEMO_MODEL) it uses a real
        model, otherwise a scripted one. --ui keeps the server and its web UI up until Ctrl-C, with
        the ledger's codec server behind the UI (allowing the UI's origin), and prints their URLs.

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
                     [--parent RUN_ID] [--workflow-id ID] [--limit N] [--before RUN_ID] [--json]
        List runs, newest first, with the Temporal workflow each ran in and its type (AgentRunWorkflow,
        or a user's own workflow that ran the agent). --workflow-id lists the runs of one workflow id:
        the agent runs of a user's workflow, or an AgentRunWorkflow's run and the runs restarting it.
        --status is one of running, completed, failed, cancelled, terminated, parked, awaiting_approval
        (or awaiting-approval). Page with --before <the last run id of the previous page>.

    agentledger show RUN_ID [--ledger URL] [--json]
        Print one run: its facts (the workflow it ran in and its type; for an agent run inside a user's
        own workflow, the workflow's agent runs too) and lineage (the run it was seeded from, the runs
        continued or forked from it), one line per event (every attempt, including failed, abandoned
        and in-doubt ones) with its snapshots in place, which attempt of each step the run used, the
        delegate runs it started (5 levels deep), its model calls billed and replayed from the journal,
        its once-only effects, the tool calls in doubt with what can be done about them, and, for a run
        awaiting approval, each call waiting for a decision with the `approve` / `deny` commands to take it.
        A run reset in Temporal lists its steps by Temporal run: the `run reset` event says where, why
        and by whom, and a step the new run ran again is accepted once, the reset run's attempt `superseded`.

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

    agentledger approve RUN_ID TOOL_CALL_ID [--args JSON] [--by NAME] [--ledger URL] [--address] [--namespace]
    agentledger deny RUN_ID TOOL_CALL_ID --reason TEXT [--by NAME] [--ledger URL] [--address] [--namespace]
        A run whose agent called a tool that needs approval (`requires_approval=True`, or one raising
        `ApprovalRequired`) is `awaiting_approval`: its workflow waits for a decision on each such call
        (`show` lists them with these commands; `runs --status awaiting-approval` lists the runs).
        `approve` runs the call, with the arguments of --args (a JSON object) instead of the model's if
        given; `deny` does not, and the model reads --reason as the call's result. Each reads the waiting
        calls from the workflow, prints the tool, its arguments and the digest the decision names, and sends
        the workflow's `approve` / `deny` update, which refuses a call that is not waiting, was decided
        already or whose arguments changed. --by is who decided, as the ledger records it (default: this
        client's Temporal identity, pid@host). The run goes on once every waiting call is decided.

    agentledger codec-server [--ledger URL] [--host 127.0.0.1] [--port N] [--ui-origin ORIGIN ...]
                             [--auth-token-env VAR] [--allowed-host HOST[:PORT] ...] [--namespace NS ...]
        Serve Temporal's remote codec protocol (POST /decode, /encode) until Ctrl-C or SIGTERM, so the
        Temporal UI (`temporal server start-dev --ui-codec-endpoint URL`) and CLI (`temporal workflow
        show --codec-endpoint URL`) show agent runs' payloads read back from the ledger: stored payloads
        in place of their references, and a model request's history messages beside its header.
        --ui-origin (repeatable, default http://localhost:8233 and http://127.0.0.1:8233, `*` for any)
        is the browser origin of the Temporal UI that may call it. The port defaults to 8081.
        --auth-token-env VAR requires `Authorization: Bearer <token>` on every request, the token read
        from environment variable VAR (`temporal workflow show --codec-auth "Bearer <token>"`).
        --allowed-host (repeatable, `*` for any) adds a Host header value accepted besides the loopback
        names on its port (against DNS rebinding): the name clients use behind a proxy or beyond
        loopback. --namespace (repeatable) serves only requests whose X-Namespace is one of them.

    agentledger gc [--ledger URL] [--address HOST:PORT] [--grace-minutes N] [--dry-run] [--json]
        Delete payloads stored in the ledger through Temporal's external storage that no workflow
        inside its namespace's retention references any more (every referencing workflow is closed
        for longer than the retention, or gone), then the chunks nothing else uses. Payloads whose
        referrers Temporal cannot describe, or stored less than --grace-minutes ago (default 60), are
        kept and listed. --dry-run decides and reports without deleting.

    agentledger search-attributes [--register] [--address HOST:PORT] [--namespace NS]
        Say which of the agentledger search attributes (AgentLedgerAgent, AgentLedgerRunId,
        AgentLedgerStatus, AgentLedgerConversationId, AgentLedgerParentRunId, AgentLedgerRestartOf)
        the namespace has; --register adds the missing ones (dev server, self-hosted). Exits 1, with
        the `temporal` and `tcld` commands that register them, while any is missing.

Defaults: --ledger is $AGENTLEDGER_LEDGER or sqlite:///agentledger.db (the demo's is
sqlite:///agentledger-demo.db), --address is $TEMPORAL_ADDRESS or localhost:7233, --namespace is
`default`, --task-queue is `agentledger` (for `continue` and `fork`: the source run's).

JSON output (`--json`) is one document on stdout, with a `schema` key naming its shape:

- `run`: `{"schema": "agentledger.run/1", "output": <the agent's output as JSON>, "run_id": str,
  "workflow_id": str, "usage": Usage (the run's usage, the same `runs` and `show` report)}`
- `runs`: `{"schema": "agentledger.runs/1", "runs": [RunRecord.to_json(), ...]}`
- `show`: `{"schema": "agentledger.show/1", "run": RunRecord.to_json(), "steps": [StepRecord.to_json(), ...],
  "events": [StepEvent.to_json(), ...], "snapshots": [SnapshotRecord.to_json(), ...],
  "tool_effects": [ToolEffect.to_json(), ...], "continuations": [run id, ...],
  "children": [RunRecord.to_json(), ...], "model_calls": Usage (accepted model requests, replayed ones
  counted apart), "effects": [EffectRecord.to_json(), ...], "workflow_runs": [run id, ...],
  "pending_approvals": [{"tool_call_id", "tool_name", "digest", "arguments", "requested_at"}, ...]}` (events
  in ledger order, each with its derived `state`; continuations: the runs seeded from this one, oldest
  first; children: the delegate runs it started; workflow_runs: for an agent run inside a user's own
  workflow, every ledger run of that workflow id, this one included, oldest first, else empty;
  pending_approvals: for a run awaiting approval, the calls waiting for a decision as the ledger recorded
  them, `arguments` the JSON text of their arguments (cut at 200 characters), else empty)
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
import json
import os
from typing import Any, get_args

from agentledger import __version__
from agentledger.model import RunStatus
from agentledger.payloads._codec_server import DEFAULT_UI_ORIGINS
from agentledger.payloads._codec_wire import parse_host
from agentledger.payloads._gc import DEFAULT_GRACE

__all__ = [
    'DEFAULT_ADDRESS',
    'DEFAULT_CODEC_PORT',
    'DEFAULT_LEDGER',
    'DEFAULT_NAMESPACE',
    'DEFAULT_TASK_QUEUE',
    'DELEGATE_DEPTH',
    'DEMO_LEDGER',
    'DEMO_TASK_QUEUE',
    'build_parser',
]

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

DEFAULT_CODEC_PORT = 8081
"""The codec server's port when --port is not given."""

DELEGATE_DEPTH = 5
"""How many levels of delegate runs `show` reads below a run."""


def build_parser() -> argparse.ArgumentParser:
    """The `agentledger` argument parser: one subcommand per command, `args.command` names it."""
    parser = argparse.ArgumentParser(
        prog='agentledger',
        description='Run pydantic-ai agents durably on Temporal and keep a ledger of every step.',
    )
    parser.add_argument('--version', action='version', version=f'agentledger {__version__}')
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    demo = commands.add_parser('demo', help='run the demo agent on a local Temporal dev server and show its timeline')
    demo.add_argument('--ledger', default=DEMO_LEDGER, help=f'ledger URL (default: {DEMO_LEDGER})')
    demo.add_argument(
        '--ui',
        action='store_true',
        help="enable the Temporal web UI, with the ledger's codec server behind it, and keep both up until Ctrl-C",
    )

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
        '--no-tool-journal',
        dest='tool_journal',
        action='store_false',
        help='run a tool call on every attempt instead of replaying the result a completed attempt journaled',
    )
    worker.add_argument(
        '--outage',
        choices=('fail', 'warn'),
        default='fail',
        help='when the ledger cannot be written: pause runs until it is back (fail, default), or go on, '
        'write late and mark the runs degraded (warn)',
    )

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
    run.add_argument(
        '--reexecute-tools',
        action='store_true',
        help='restarting a failed workflow id: run again the tool calls it completed instead of replaying them',
    )

    runs = commands.add_parser('runs', help='list runs, newest first')
    _ledger_option(runs)
    runs.add_argument('--agent', help='only runs of this agent')
    runs.add_argument(
        '--status',
        type=_run_status,
        choices=get_args(RunStatus),
        help='only runs with this status (awaiting-approval is accepted for awaiting_approval)',
    )
    runs.add_argument('--conversation', metavar='ID', help='only runs of this conversation')
    runs.add_argument('--parent', metavar='RUN_ID', help='only runs started by this run')
    runs.add_argument(
        '--workflow-id', metavar='ID', help="only runs of this Temporal workflow id (a user workflow's agent runs)"
    )
    runs.add_argument('--limit', type=_positive_int, default=20, metavar='N', help='at most N runs (default: 20)')
    runs.add_argument('--before', metavar='RUN_ID', help='only runs older than this one (the next page)')
    runs.add_argument('--json', action='store_true', help='print JSON (schema agentledger.runs/1)')

    show = commands.add_parser('show', help="print a run's timeline: every event, attempt and step")
    show.add_argument('run_id', metavar='RUN_ID')
    _ledger_option(show)
    show.add_argument('--json', action='store_true', help='print JSON (schema agentledger.show/1)')

    effects = commands.add_parser('effects', help='list once-only effects (agentledger.once)')
    _ledger_option(effects)
    effects.add_argument('--workflow-id', metavar='ID', help='only effects keyed on this workflow id')
    effects.add_argument('--unknown', action='store_true', help='only effects whose outcome waits for `resolve`')
    effects.add_argument('--json', action='store_true', help='print JSON (schema agentledger.effects/1)')

    resolve = commands.add_parser('resolve', help='say whether a once-only effect in doubt happened')
    resolve.add_argument('key', metavar='KEY', help='the effect key (see `agentledger effects --unknown`)')
    resolve.add_argument('--outcome', required=True, choices=['done', 'not-done'])
    resolve.add_argument('--result', type=_json_value, help='with --outcome done: the result as JSON')
    _ledger_option(resolve)

    snapshots = commands.add_parser('snapshots', help="list a run's snapshots, or print one snapshot's messages")
    snapshots.add_argument('run_id', metavar='RUN_ID')
    _ledger_option(snapshots)
    snapshots.add_argument('--json', action='store_true', help='print JSON (schema agentledger.snapshots/1)')
    snapshots.add_argument(
        '--messages', metavar='SNAPSHOT_ID', help="print this snapshot's messages as pydantic-ai message JSON"
    )

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

    continuing = commands.add_parser('continue', help="start a new run from a run's latest valid snapshot")
    continuing.add_argument('run_id', metavar='RUN_ID', help='the run to continue')
    continuing.add_argument('prompt', metavar='PROMPT', nargs='?', help='a new user prompt (default: none)')
    _seeded_options(continuing)

    fork = commands.add_parser('fork', help='start a new run from an earlier snapshot of a run')
    fork.add_argument('run_id', metavar='RUN_ID', help='the run to fork')
    point = fork.add_mutually_exclusive_group(required=True)
    point.add_argument('--at-step', type=int, metavar='K', help='from the latest valid snapshot at or before step K')
    point.add_argument('--snapshot', metavar='ID', help='from exactly this snapshot (see `agentledger snapshots`)')
    fork.add_argument('--prompt', metavar='TEXT', help='a new user prompt (default: none)')
    _seeded_options(fork)

    resume = commands.add_parser('resume', help='resume a parked run from its latest valid snapshot')
    resume.add_argument('run_id', metavar='RUN_ID', help='the parked run')
    resume.add_argument('prompt', metavar='PROMPT', nargs='?', help='a new user prompt to add first (default: none)')
    _ledger_option(resume)
    _temporal_options(resume, with_task_queue=False)

    abandon = commands.add_parser('abandon', help='give up on a parked run: it fails with the error it parked on')
    abandon.add_argument('run_id', metavar='RUN_ID', help='the parked run')
    abandon.add_argument('--reason', help='why, recorded with the failure')
    _ledger_option(abandon)
    _temporal_options(abandon, with_task_queue=False)

    reset = commands.add_parser(
        'reset', help="reset a run's workflow to a workflow task: it runs again, repeating no model or tool call"
    )
    reset.add_argument(
        'run_id', metavar='RUN_ID', help='the run to reset (its latest Temporal run): any id the Temporal UI shows'
    )
    reset.add_argument(
        '--to',
        choices=('first-workflow-task', 'last-workflow-task'),
        default='first-workflow-task',
        help='the completed workflow task to reset to (default: first-workflow-task)',
    )
    reset.add_argument('--reason', help='why, recorded by Temporal (and with voided tool results)')
    reset.add_argument(
        '--reexecute-tools',
        action='store_true',
        help='void the tool results the run journaled first, so the tools run again (once() effects stay done)',
    )
    _ledger_option(reset)
    _temporal_options(reset, with_task_queue=False)

    approve = commands.add_parser('approve', help='approve a tool call a run waits on: the run goes on with it')
    approve.add_argument('run_id', metavar='RUN_ID', help='the run awaiting approval')
    approve.add_argument('tool_call_id', metavar='TOOL_CALL_ID', help='the waiting call (see `agentledger show`)')
    approve.add_argument(
        '--args', metavar='JSON', help="run the tool with these arguments (a JSON object) instead of the model's"
    )
    approve.add_argument(
        '--by', metavar='NAME', help="who decided, as the ledger records it (default: the client's identity)"
    )
    _ledger_option(approve)
    _temporal_options(approve, with_task_queue=False)

    deny = commands.add_parser('deny', help='deny a tool call a run waits on: the model reads the reason instead')
    deny.add_argument('run_id', metavar='RUN_ID', help='the run awaiting approval')
    deny.add_argument('tool_call_id', metavar='TOOL_CALL_ID', help='the waiting call (see `agentledger show`)')
    deny.add_argument('--reason', required=True, metavar='TEXT', help="what the model reads as the call's result")
    deny.add_argument(
        '--by', metavar='NAME', help="who decided, as the ledger records it (default: the client's identity)"
    )
    _ledger_option(deny)
    _temporal_options(deny, with_task_queue=False)

    attributes = commands.add_parser(
        'search-attributes', help='check (and register) the search attributes that find runs in the Temporal UI'
    )
    attributes.add_argument(
        '--register', action='store_true', help='add the missing ones to the namespace (dev server, self-hosted)'
    )
    _temporal_options(attributes, with_task_queue=False)

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
    codec.add_argument(
        '--allowed-host',
        action='append',
        type=_host,
        default=[],
        metavar='HOST[:PORT]',
        help='a Host header value accepted besides the loopback names, repeatable, * for any',
    )
    codec.add_argument(
        '--namespace',
        action='append',
        metavar='NS',
        help='serve only requests whose X-Namespace is NS, repeatable (default: any namespace)',
    )

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


def _run_status(text: str) -> str:
    """A `RunStatus` as typed: `awaiting-approval` is `awaiting_approval`."""
    return text.replace('-', '_')


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f'not valid JSON: {error}') from error


def _host(text: str) -> str:
    if text != '*':
        try:
            parse_host(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error
    return text


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
