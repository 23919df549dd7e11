"""The `agentledger` command line's commands: each parsed command carried out against Temporal and the ledger.

The commands and their options are listed in `agentledger.cli._parser`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic_ai.agent.abstract import AbstractAgent
from pydantic_ai.durable_exec.temporal import PydanticAIPlugin
from pydantic_ai.messages import ModelMessagesTypeAdapter
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import (
    Client,
    Plugin,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentledger._redaction import redact
from agentledger.cli._demo import DEMO_PROMPT, demo_agent
from agentledger.cli._demo_ui import DemoUI, demo_ui
from agentledger.cli._devserver import start_dev_server
from agentledger.cli._parser import (
    DEFAULT_NAMESPACE,
    DELEGATE_DEPTH,
    DEMO_TASK_QUEUE,
    build_parser,
)
from agentledger.cli._render import (
    RunView,
    effects_json,
    json_safe,
    json_text,
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
    terminal_safe,
)
from agentledger.client import (
    AgentRunHandle,
    AgentRunResult,
    abandon_parked,
    continue_run,
    decide_approval,
    fork_run,
    pending_approvals,
    reset_run,
    resume_parked,
    start,
)
from agentledger.errors import AgentLedgerError, CliError
from agentledger.ledger import Ledger, open_ledger, resolve_run_id
from agentledger.ledger._lineage import resolve_seed
from agentledger.ledger._scopes import Scopes
from agentledger.model import SEARCH_ATTRIBUTES
from agentledger.model._approvals import DecisionKind
from agentledger.model._effects import ResolveOutcome
from agentledger.model._records import ForkRef, RunRecord, RunStatus
from agentledger.payloads._codec_server import DEFAULT_UI_ORIGINS, CodecServer
from agentledger.payloads._gc import collect_garbage
from agentledger.plugin import LedgerPlugin, check_search_attributes
from agentledger.reconcile import reconcile_ledger, reconcile_run

__all__ = ['main']

_Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def main(argv: list[str] | None = None) -> int:
    """Run the `agentledger` command line with `argv` (default: `sys.argv[1:]`) and return its exit code.

    Called without `argv`, that is as the `agentledger` program, a command that used Temporal ends
    the process itself (`os._exit`, after flushing): the Temporal SDK's Rust threads can abort
    interpreter shutdown with "PyGILState_Release: thread state must be current"
    (temporalio/sdk-python#300), which would turn a finished command into exit code 134.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        # argparse exits on --help, --version (0) and usage errors (2); callers of main() get the code instead.
        return stop.code if isinstance(stop.code, int) else 0
    command = _HANDLERS[args.command]
    if args.command not in ('worker', 'codec-server'):
        _quiet_retries()
    try:
        code = asyncio.run(command(args))
    except AgentLedgerError as error:
        print(f'agentledger: {terminal_safe(str(error), lines=False)}', file=sys.stderr)
        code = 1
    except RPCError as error:
        # Any Temporal call a command makes may meet a server that is away or refuses: one line, not a traceback.
        message = f'Temporal refused or could not be reached: {error.status.name}: {error.message}'
        print(f'agentledger: {terminal_safe(redact(message), lines=False)}', file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    if argv is None and args.command in TEMPORAL_COMMANDS:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


# --- commands ----------------------------------------------------------------------------------------


async def _demo(args: argparse.Namespace) -> int:
    ledger = open_ledger(args.ledger)
    await _check_ledger(args.ledger)
    agent = demo_agent()
    plugin = LedgerPlugin(ledger, agents=[agent])
    # The demo fails one attempt on purpose and its timeline shows that; Temporal's warning with a
    # traceback for the same failure would only look like a crash.
    logging.getLogger('temporalio.activity').setLevel(logging.ERROR)
    async with AsyncExitStack() as stack:
        ui = await stack.enter_async_context(demo_ui(open_ledger(args.ledger, read_only=True))) if args.ui else None
        if ui is not None:
            # A refused browser origin is the one problem a person at the UI cannot see from the page.
            _log_to_stderr('agentledger.codec')
        _status('starting a Temporal dev server (building the Temporal CLI first if needed)...')
        env = await _dev_server(plugin, ui)
        stack.push_async_callback(env.shutdown)
        if ui is not None:
            _status(f'Temporal UI: {ui.url}')
            _status(f'codec server (payloads from the ledger): {ui.codec.url}, allows {", ".join(ui.origins)}')
        async with Worker(env.client, task_queue=DEMO_TASK_QUEUE):
            model = agent.model if isinstance(agent.model, str) else getattr(agent.model, 'model_name', '?')
            _status(f'running the demo agent (model {model}): {DEMO_PROMPT}')
            handle = await start(env.client, agent, DEMO_PROMPT, task_queue=DEMO_TASK_QUEUE)
            result = await _result(handle)
            # Read while the worker (which opened the ledger) is still up.
            view = await _read_view(ledger, result.run_id)
        _print(result.output)
        _print()
        _print(render_timeline(view, ledger_url=ledger.url))
        _print()
        _print(f'agentledger show {result.run_id} --ledger {args.ledger}')
        if ui is not None:
            _print(f'Temporal UI: {ui.workflow_url(DEFAULT_NAMESPACE, view.run.workflow_id)}')
            _print(f'codec server: {ui.codec.url} (allows {", ".join(ui.origins)})')
            sys.stdout.flush()
            await _until_stopped('the dev server and the codec server stay up for the UI; press Ctrl-C to stop them')
    return 0


async def _worker(args: argparse.Namespace) -> int:
    agents = [_import_agent(spec) for spec in args.agent]
    ledger = open_ledger(args.ledger)
    try:
        plugin = LedgerPlugin(
            ledger,
            agents=agents,
            model_journal=args.model_journal,
            tool_journal=args.tool_journal,
            outage=args.outage,
        )
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
            reexecute_tools=args.reexecute_tools,
        )
    _status(f'started run {handle.run_id} (workflow {handle.workflow_id}); waiting for a worker on {args.task_queue!r}')
    if args.park_on_failure:
        _status(f'if it parks: agentledger resume {handle.run_id} [PROMPT], or agentledger abandon {handle.run_id}')
    _print_result(await _result(handle), as_json=args.json)
    return 0


async def _workflow_in(
    args: argparse.Namespace, status: RunStatus, refusal: str
) -> tuple[RunRecord, Client, WorkflowHandle[Any, Any]]:
    """The run `args.run_id` names, a client, and its workflow's handle, once the ledger says the run is in `status`.

    `refusal` says why another status is refused (`{status}` stands for the run's). The ledger is read
    only: the worker running the workflow records what the update changes.
    """
    async with _reading(args.ledger, read_only=True) as ledger:
        record = await ledger.run(await resolve_run_id(ledger, args.run_id))
    if record.status != status:
        raise CliError(f'run {record.run_id} ' + refusal.format(status=f'status {record.status}'))
    client = await _connect(args.address, args.namespace, PydanticAIPlugin())
    return record, client, client.get_workflow_handle(record.workflow_id)


async def _resume_or_abandon(args: argparse.Namespace) -> int:
    """`resume` / `abandon`: send the update to the parked run's workflow, after checking the ledger says parked."""
    record, _, handle = await _workflow_in(
        args,
        'parked',
        'is not parked ({status}); only a parked run can be resumed or abandoned (a run parks on failure when '
        'started with --park-on-failure)',
    )
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


async def _reset(args: argparse.Namespace) -> int:
    """`reset`: reset the run's latest Temporal run; with --reexecute-tools void its journaled tool results first."""
    # Writable only to void tool results: the worker records the reset run itself.
    async with _reading(args.ledger, read_only=not args.reexecute_tools) as ledger:
        client = await _connect(args.address, args.namespace, PydanticAIPlugin())
        try:
            done = await reset_run(
                client,
                args.run_id,
                to=args.to,
                reason=args.reason,
                reexecute_tools=args.reexecute_tools,
                ledger=ledger,
            )
        except ValueError as error:
            raise CliError(str(error)) from error
    if args.reexecute_tools:
        voided = done.voided_tool_results
        _status(f'voided {voided} journaled tool result{"" if voided == 1 else "s"}: those tool calls run again')
    _status(f'run {done.run_id} (workflow {done.workflow_id}) reset to its {args.to.replace("-", " ")}')
    _print(f'Temporal run {done.temporal_run_id}')
    return 0


async def _approve_or_deny(args: argparse.Namespace) -> int:
    """`approve` / `deny`: decide on a call the run's workflow waits on, after checking the ledger says it waits."""
    kind: DecisionKind = args.command
    override_args = _override_args(args.args) if kind == 'approve' else None
    record, client, handle = await _workflow_in(
        args,
        'awaiting_approval',
        'is not awaiting approval ({status}); only a run waiting for decisions on tool calls can be approved or '
        'denied (`agentledger runs --status awaiting-approval` lists them)',
    )
    try:
        waiting = await pending_approvals(handle)
    except WorkflowQueryFailedError as error:
        raise CliError(f'workflow {record.workflow_id} cannot list the calls it waits on: {error}') from error
    except RPCError as error:
        raise CliError(f'cannot reach workflow {record.workflow_id} of run {record.run_id}: {error}') from error
    call = next((pending for pending in waiting if pending.tool_call_id == args.tool_call_id), None)
    if call is None:
        names = ', '.join(pending.tool_call_id for pending in waiting) or 'none'
        raise CliError(
            f'run {record.run_id} does not wait for a decision on tool call {args.tool_call_id!r} (waiting: {names})'
        )
    deciding = 'approving' if kind == 'approve' else 'denying'
    _status(
        f'{deciding} {call.tool_name}({json.dumps(call.args, sort_keys=True)}) '
        f'(tool call {call.tool_call_id}, digest {call.digest}) in run {record.run_id} '
        f'(workflow {record.workflow_id}) as {args.by or client.identity}'
    )
    if override_args is not None:
        _status(f"with arguments {json.dumps(override_args, sort_keys=True)} instead of the model's")
    try:
        done = await decide_approval(
            handle,
            call,
            kind,
            override_args=override_args,
            reason=args.reason if kind == 'deny' else None,
            by=args.by,
        )
    except WorkflowUpdateFailedError as error:
        raise CliError(f'workflow {record.workflow_id} refused {kind}: {error.cause}') from error
    except RPCError as error:
        raise CliError(f'cannot reach workflow {record.workflow_id} of run {record.run_id}: {error}') from error
    _print(done)
    return 0


def _override_args(text: str | None) -> dict[str, Any] | None:
    """`--args`: the JSON object of arguments to run the tool with instead of the model's."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(f'--args is not valid JSON: {error}') from error
    if not isinstance(value, dict):
        raise CliError(
            f"--args takes a JSON object of the tool's arguments, like '{{\"amount\": 5}}', not {_json_kind(value)}"
        )
    return value


def _json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'a boolean'
    if isinstance(value, int | float):
        return 'a number'
    return 'a string' if isinstance(value, str) else 'an array'


async def _continue(args: argparse.Namespace) -> int:
    return await _start_seeded(args, prompt=args.prompt, at_step=None, snapshot=None)


async def _fork(args: argparse.Namespace) -> int:
    return await _start_seeded(args, prompt=args.prompt, at_step=args.at_step, snapshot=args.snapshot)


async def _start_seeded(
    args: argparse.Namespace, *, prompt: str | None, at_step: int | None, snapshot: str | None
) -> int:
    """Start a run seeded from `args.run_id` (continue without `at_step` / `snapshot`, else fork) and report it."""
    # Writable: the client stores the new run's large inputs in the ledger.
    async with _reading(args.ledger, read_only=False) as ledger:
        # Resolved before connecting, so a bad run id, snapshot id or step says so even when Temporal is down.
        run_id = await resolve_run_id(ledger, args.run_id)
        seed = await resolve_seed(ledger, continue_from=run_id, at_step=at_step, snapshot_id=snapshot)
        task_queue: str = args.task_queue or (await ledger.run(run_id)).task_queue
        # No agents: this client only starts workflows. continue_run / fork_run take the ledger from the plugin
        # and check the seed again; this context's open keeps it open across their own open and close.
        client = await _connect(args.address, args.namespace, LedgerPlugin(ledger))
        with _starting(args):
            handle: AgentRunHandle[Any]
            if at_step is None and snapshot is None:
                handle = await continue_run(
                    client, run_id, prompt, deps=args.deps, task_queue=task_queue, workflow_id=args.workflow_id
                )
            else:
                handle = await fork_run(
                    client,
                    run_id,
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
        _print(json_text(start_json(handle.run_id, handle.workflow_id, seed)))
    else:
        facts = [
            ('run', handle.run_id),
            ('workflow', handle.workflow_id),
            ('task queue', task_queue),
            ('seeded from', seeded),
        ]
        width = max(len(label) for label, _ in facts)
        _print('\n'.join(f'{label:<{width}}  {value}' for label, value in facts))
        _status(f'agentledger show {handle.run_id}')
    return 0


async def _runs(args: argparse.Namespace) -> int:
    # A corrupt record is reported below in the command's own words; the ledger's warning would say it twice.
    with _quiet('agentledger.ledger'):
        async with _reading(args.ledger, read_only=True) as ledger:
            runs = await ledger.runs(
                agent=args.agent,
                status=args.status,
                conversation_id=args.conversation,
                parent_run_id=args.parent,
                workflow_id=args.workflow_id,
                limit=args.limit,
                before=args.before,
            )
    _print(json_text(runs_json(runs)) if args.json else render_runs(runs))
    # The good runs are the result; a record that does not decode is reported, not allowed to hide them.
    for error in runs.corrupt:
        _status(f'agentledger: skipped 1 corrupt run record: {error.run_id}: {error}')
    return 0


async def _show(args: argparse.Namespace) -> int:
    async with _reading(args.ledger, read_only=True) as ledger:
        view = await _read_view(ledger, await resolve_run_id(ledger, args.run_id))
    if args.json:
        _print(json_text(run_json(view)))
    else:
        _print(render_timeline(view, ledger_url=ledger.url))
    return 0


async def _effects(args: argparse.Namespace) -> int:
    async with _reading(args.ledger, read_only=True) as ledger:
        found = await ledger.effects(workflow_id=args.workflow_id, status='unknown' if args.unknown else None)
    _print(json_text(effects_json(found)) if args.json else render_effects(found))
    return 0


async def _resolve(args: argparse.Namespace) -> int:
    outcome: ResolveOutcome = args.outcome
    if outcome == 'not-done' and args.result is not None:
        raise CliError('--result goes with --outcome done: an effect that did not happen has no result')
    async with _reading(args.ledger, read_only=False) as ledger:
        effect = await ledger.resolve_effect(args.key, outcome, args.result)
    _print(f'{effect.key}: {effect.status} (resolved by an operator)')
    return 0


async def _reconcile(args: argparse.Namespace) -> int:
    if (args.run_id is None) == (not args.all):
        raise CliError('give a RUN_ID or --all (not both)')
    if args.dry_run and args.repair_open:
        raise CliError('--dry-run repairs nothing; it cannot be combined with --repair-open')
    repair = False if args.dry_run else True if args.repair_open else None
    async with _reading(args.ledger, read_only=args.dry_run) as ledger:
        # No agents: this client only reads histories, decoded with the converter the workers use.
        client = await _connect(args.address, args.namespace, LedgerPlugin(ledger))
        try:
            if args.all:
                reports = await reconcile_ledger(client, ledger, repair=repair)
            else:
                run_id = await resolve_run_id(ledger, args.run_id)
                reports = [await reconcile_run(client, ledger, run_id, repair=repair)]
        except RPCError as error:
            raise CliError(f'cannot read histories from Temporal at {args.address}: {error.message}') from error
    _print(json_text(reconcile_json(reports)) if args.json else render_reconcile(reports))
    return 0 if all(report.clean or report.repaired for report in reports) else 3


async def _snapshots(args: argparse.Namespace) -> int:
    async with _reading(args.ledger, read_only=True) as ledger:
        run_id = await resolve_run_id(ledger, args.run_id)
        if args.messages is not None:
            await ledger.run(run_id)
            snapshot = await ledger.snapshot(args.messages)
            if snapshot.record.run_id != run_id:
                raise CliError(f'snapshot {args.messages!r} does not belong to run {run_id!r}')
            # pydantic-ai's own message format, so the output loads back with ModelMessagesTypeAdapter.
            _print(json_safe(ModelMessagesTypeAdapter.dump_json(snapshot.messages, indent=2).decode()))
            return 0
        snapshots = await ledger.snapshots(run_id)
        latest = await ledger.latest_snapshot(run_id) if snapshots else None
    if args.json:
        _print(json_text(snapshots_json(run_id, snapshots, latest)))
        return 0
    _print(render_snapshots(snapshots))
    if latest is not None:
        _status(
            f'continue starts from the latest, {latest.snapshot_id}; fork --at-step K from the latest at or before K'
        )
        _status(f"agentledger snapshots {run_id} --messages SNAPSHOT_ID prints a snapshot's messages")
    return 0


async def _search_attributes(args: argparse.Namespace) -> int:
    client = await _connect(args.address, args.namespace, PydanticAIPlugin())
    check = await check_search_attributes(client, register=args.register)
    for key in SEARCH_ATTRIBUTES:
        name = key.name
        state = 'added' if name in check.added else 'present' if name in check.present else 'missing'
        kind = check.wrong_type.get(name)
        _print(f'{name:<26} {state}{f" (type {kind}, not Keyword)" if kind else ""}')
    problem = check.problem()
    if problem is None:
        return 0
    print(terminal_safe(problem), file=sys.stderr)
    return 1


async def _codec_server(args: argparse.Namespace) -> int:
    token: str | None = None
    if args.auth_token_env is not None:
        # From the environment, never the command line: a process list would show it.
        token = os.environ.get(args.auth_token_env, '').strip()
        if not token:
            raise CliError(f'--auth-token-env {args.auth_token_env}: that environment variable is unset or empty')
    async with _reading(args.ledger, read_only=True) as ledger:
        server = CodecServer(
            ledger,
            host=args.host,
            port=args.port,
            ui_origins=args.ui_origin or DEFAULT_UI_ORIGINS,
            auth_token=token,
            allowed_hosts=args.allowed_host,
            namespaces=args.namespace,
        )
        try:
            await server.start()
        except OSError as error:
            raise CliError(f'cannot listen on {args.host}:{args.port}: {error}') from error
        try:
            # The URL on stdout (one line) is what the Temporal UI and CLI are given.
            _print(server.url, flush=True)
            await _until_stopped(
                f'codec server: decoding payloads from {ledger.url} at {server.url}; '
                f'temporal server start-dev --ui-codec-endpoint {server.url} (or temporal workflow show '
                f'--codec-endpoint {server.url}); Ctrl-C to stop'
            )
        finally:
            await server.close()
    return 0


async def _gc(args: argparse.Namespace) -> int:
    async with _reading(args.ledger, read_only=args.dry_run) as ledger:
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
    _print(json_text(report.to_json()) if args.json else render_gc(report))
    return 0


# --- helpers -----------------------------------------------------------------------------------------


@asynccontextmanager
async def _reading(url: str, *, read_only: bool) -> AsyncIterator[Ledger]:
    """Open the existing ledger at `url`; a SQLite file that does not exist is an error, not an empty ledger.

    A command that only reads opens it `read_only`: it then needs no write access and changes nothing
    (no schema migration, no S3 marker), even run against a ledger that workers are writing.
    """
    ledger = open_ledger(url, read_only=read_only)
    # Opening a SQLite ledger creates its file; for a command on an existing ledger that only hides a wrong path.
    sqlite_path = ledger.url.removeprefix('sqlite:///') if ledger.url.startswith('sqlite:///') else None
    if sqlite_path is not None and not Path(sqlite_path).exists():
        raise CliError(f'no ledger at {url}: {sqlite_path} does not exist (pass --ledger or set $AGENTLEDGER_LEDGER)')
    async with ledger:
        yield ledger


async def _check_ledger(url: str) -> None:
    """Open the ledger at `url` and probe a write, so a ledger a worker could not use fails here with its own message.

    The worker's `LedgerPlugin` does the same as the worker starts, but `async with Worker(...)`
    reports that only once the worker is running, after the command has said it is serving.
    """
    async with open_ledger(url) as ledger:
        await ledger.check_writable()


async def _read_view(ledger: Ledger, run_id: str) -> RunView:
    """Everything `show` prints about a run: its records, snapshots, tool effects and lineage both ways."""
    record = await ledger.run(run_id)
    return RunView(
        run=record,
        events=await ledger.events(run_id),
        steps=await ledger.steps(run_id),
        snapshots=await ledger.snapshots(run_id),
        tool_effects=await ledger.tool_effects(run_id),
        continuations=await _continuations(ledger, run_id),
        delegates=await ledger.run_tree(run_id, max_depth=DELEGATE_DEPTH),
        effects=await ledger.effects(workflow_id=await Scopes(ledger).effect_scope(run_id), run_id=run_id),
        workflow_runs=await _workflow_runs(ledger, record) if record.in_own_workflow else [],
    )


async def _continuations(ledger: Ledger, run_id: str) -> list[RunRecord]:
    """Every run seeded from `run_id`, oldest first."""
    return await _oldest_first(ledger, forked_from_run_id=run_id)


async def _workflow_runs(ledger: Ledger, run: RunRecord) -> list[RunRecord]:
    """Every ledger run of the run's workflow id (the agent runs of a user's own workflow), oldest first."""
    return await _oldest_first(ledger, workflow_id=run.workflow_id)


async def _oldest_first(
    ledger: Ledger, *, workflow_id: str | None = None, forked_from_run_id: str | None = None
) -> list[RunRecord]:
    """Every run of the workflow id, or seeded from the run, oldest first (the ledger lists newest first, by pages)."""
    found: list[RunRecord] = []
    while True:
        page = await ledger.runs(
            workflow_id=workflow_id,
            forked_from_run_id=forked_from_run_id,
            limit=100,
            before=found[-1].run_id if found else None,
        )
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
        _print(json_text(result_json(result, forked_from=forked_from)))
    else:
        output = result.output
        _print(output if isinstance(output, str) else json_text(output))
        _status(f'agentledger show {result.run_id}')


async def _result(handle: AgentRunHandle[Any]) -> AgentRunResult[Any]:
    try:
        return await handle.result()
    except WorkflowFailureError as error:
        raise CliError(f'run {handle.run_id} (workflow {handle.workflow_id}) failed: {_failure(error)}') from error
    except RPCError as error:
        # The client already retried for a while: Temporal is away for longer than a blip. The run is not.
        raise CliError(
            f'lost Temporal while waiting for run {handle.run_id} (workflow {handle.workflow_id}): '
            f'{error.status.name}: {error.message}; the run goes on without this command: '
            f'agentledger show {handle.run_id}'
        ) from error


def _failure(error: BaseException) -> str:
    # Temporal wraps what went wrong (workflow failure -> activity error -> application error); the innermost says it.
    while error.__cause__ is not None:
        error = error.__cause__
    if isinstance(error, ApplicationError) and error.type:
        return f'{error.type}: {error.message}'
    return str(error)


async def _dev_server(plugin: Plugin, ui: DemoUI | None) -> WorkflowEnvironment:
    try:
        with _stdout_to_stderr():
            if ui is None:
                return await start_dev_server(plugins=[plugin])
            return await start_dev_server(plugins=[plugin], ui=True, ui_port=ui.port, ui_codec_endpoint=ui.codec.url)
    except (RuntimeError, OSError) as error:
        raise CliError(f'cannot start a Temporal dev server: {error}') from error


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Only errors from logger `name` for a while: for warnings the command reports in its own words."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


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


def _quiet_retries() -> None:
    """Keep the ledger's per-attempt retry warnings off a command's output: its failure is one `agentledger:` line.

    A worker and a codec server run until stopped and show them; a command that ends, ends with the
    error that counts.
    """
    quiet = logging.getLogger('agentledger')
    if not any(isinstance(handler, logging.NullHandler) for handler in quiet.handlers):
        quiet.addHandler(logging.NullHandler())


def _log_to_stderr(name: str) -> None:
    """Show logger `name`'s warnings on stderr, past the quiet `agentledger` logger (`_quiet_retries`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(levelname)s %(name)s: %(message)s'))
    logging.getLogger(name).addHandler(handler)


def _status(message: str) -> None:
    """Progress for the person at the terminal, on stderr so stdout stays the command's result."""
    print(terminal_safe(message), file=sys.stderr, flush=True)


def _print(text: str = '', *, flush: bool = False) -> None:
    """A command's output on stdout, with control characters escaped (see `terminal_safe`)."""
    print(terminal_safe(text), flush=flush)


_HANDLERS: dict[str, _Command] = {
    'demo': _demo,
    'worker': _worker,
    'run': _run,
    'reset': _reset,
    'runs': _runs,
    'show': _show,
    'effects': _effects,
    'resolve': _resolve,
    'snapshots': _snapshots,
    'reconcile': _reconcile,
    'continue': _continue,
    'fork': _fork,
    'resume': _resume_or_abandon,
    'abandon': _resume_or_abandon,
    'approve': _approve_or_deny,
    'deny': _approve_or_deny,
    'search-attributes': _search_attributes,
    'codec-server': _codec_server,
    'gc': _gc,
}
"""The coroutine that carries out each command of `build_parser`."""

TEMPORAL_COMMANDS = frozenset(
    {
        'demo',
        'worker',
        'run',
        'reset',
        'continue',
        'fork',
        'resume',
        'abandon',
        'approve',
        'deny',
        'gc',
        'reconcile',
        'search-attributes',
    }
)
"""The commands of `_HANDLERS` that start the Temporal SDK's runtime (see `main` for why that matters)."""
