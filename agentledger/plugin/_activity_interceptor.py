"""The worker-side activity interceptor: one StepEvent per transition of every attempt.

It runs on the worker, outside the workflow sandbox, so it may write the ledger. For each attempt
of a pydantic-ai model-request or tool-call activity started by an `AgentRunWorkflow`:

1. it first writes what the workflow sent in the `agentledger` header (acceptances of earlier
   activities, workflow-side tool events), so they reach the ledger before anything newer;
2. writes `*_started` (attempt, server-stamped schedule time: the fence) before the body runs,
   so a worker killed mid-body leaves the attempt visibly started;
3. writes `*_completed` (usage, tool outcome) or `*_failed` (error type, message, retryable)
   before the result is reported to Temporal.

Model-call journal (on unless `LedgerPlugin(..., model_journal=False)`): for a plain model request
(`__model_request`; the streaming one is not journaled, see `_compat.is_journaled_model_request`)
it looks the request up in the journal first, keyed by workflow id, execution chain, activity type,
request hash and the request's ordinal at its step (`agentledger.model._journal`), after the history
reference is resolved. A hit
is returned without calling the provider and recorded `replayed`; a miss calls the provider and
journals its response before the attempt returns, so a later attempt of the same request (after a
worker crash, a `raise`, a reset or a restart) replays the response that was already paid for.

Tool-call journal (on unless `LedgerPlugin(..., tool_journal=False)`): for a tool call it looks the
call up first, keyed by workflow id, execution chain, tool name and tool_call_id
(`agentledger.model._tool_journal`). A hit recorded for the same arguments is returned without
running the tool and recorded `replayed`; a call that completed with the tool's answer journals its
result (the payload Temporal is about to get) and its arguments' digest before the attempt returns.
An entry recorded for other arguments is not replayed (the attempt's end says so), nor a voided one
(`agentledger reset --reexecute-tools`), nor, for a run started with `reexecute_tools=True`, one an
earlier ledger run recorded: the tool runs and its result takes the entry's place. Failed calls are
not journaled.

For a tool call it also sets the `ToolContext` that `agentledger.once` reads.

A ledger write that fails even after the ledger's own retries fails the attempt with a retryable
`LedgerUnavailableError`, so Temporal retries it: the run pauses instead of running unrecorded
(outage policy `fail`). Under the `warn` policy the attempt goes on and the write is kept for
later instead (see `_outage.py`), and a journal the ledger cannot serve is skipped: the run goes on
at the price of paying a provider twice if the attempt is retried.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic_ai.messages import ModelMessage
from temporalio import activity
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue
from temporalio.converter import ActivitySerializationContext, StorageDriverWorkflowInfo
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from agentledger._compat import (
    ActivityShape,
    carries_history,
    classify_activity,
    is_journaled_model_request,
    model_request_inputs,
    model_request_messages,
    read_activity_args,
    tool_call_arguments,
    tool_outcome,
    tool_result_detail,
    with_model_request_messages,
)
from agentledger.activities._failures import ledger_failure
from agentledger.activities._history import HistoryResolver
from agentledger.activities._resets import ResetRecorder
from agentledger.errors import UNENCODABLE_RESULT, LedgerCorruptionError, LedgerError, LedgerUnavailableError
from agentledger.ledger._facade import Ledger
from agentledger.ledger._outage import OutageBuffer
from agentledger.ledger._scopes import Scopes
from agentledger.model._conversions import error_info, request_usage
from agentledger.model._journal import (
    JournalEntry,
    format_1_journal_key,
    journal_key,
    request_hash,
    request_hash_of_key,
)
from agentledger.model._records import Acceptance, ErrorInfo, StepEvent, StepKind
from agentledger.model._tool_journal import (
    JOURNALED_OUTCOMES,
    ToolJournalEntry,
    arguments_digest,
    decode_payload,
    encode_payload,
    tool_journal_key,
)
from agentledger.payloads._driver import ResultStorage
from agentledger.tools._context import ToolContext, tool_context
from agentledger.workflows._state import HEADER, ledger_step

__all__ = ['ActivityRecording', 'LedgerActivityInterceptor']

logger = logging.getLogger('agentledger.worker')


def _read_header(headers: Mapping[str, Payload]) -> dict[str, Any] | None:
    payload = headers.get(HEADER)
    if payload is None:
        return None
    value = activity.payload_converter().from_payload(payload, dict)
    return value if isinstance(value, dict) else None


def _error(error: BaseException) -> ErrorInfo:
    """What ended an attempt; Temporal retries an attempt on any error but a non-retryable `ApplicationError`."""
    if isinstance(error, asyncio.CancelledError):
        return ErrorInfo(
            type='CancelledError', message='the attempt was cancelled (timeout or cancellation)', retryable=True
        )
    return error_info(error, retryable=True)


@dataclass(frozen=True)
class ActivityRecording:
    """What the activity interceptor records with: one per worker, shared by every attempt it runs."""

    ledger: Ledger
    histories: HistoryResolver
    """Resolves the history references of model requests (shared with the seal activity)."""
    scopes: Scopes
    outage: OutageBuffer | None = None
    """Under the `warn` outage policy: keeps what the ledger refused, and the attempt goes on."""
    owed: OutageBuffer | None = None
    """Under the `fail` policy: keeps the ends of attempts the ledger refused, written when it is back."""
    model_journal: bool = True
    """Journal provider responses, and replay them to later attempts of the same request."""
    tool_journal: bool = True
    """Journal the results of completed tool calls, and replay them to later attempts of the same call."""
    storage: ResultStorage | None = None
    """Stores results that Temporal's external storage will store, ahead of it (`None`: payloads stay inline)."""
    resets: ResetRecorder | None = None
    """Records the reset that started a Temporal run, at the first attempt of that run's activities."""


class LedgerActivityInterceptor(ActivityInboundInterceptor):
    """Records the attempts of pydantic-ai activities that an `AgentRunWorkflow` started."""

    def __init__(self, next: ActivityInboundInterceptor, recording: ActivityRecording) -> None:
        super().__init__(next)
        self._recording = recording

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        """Write the header's records, then the attempt's started and terminal events around the body."""
        header = _read_header(input.headers)
        if header is None:
            return await super().execute_activity(input)
        accepted = [Acceptance.from_json(a) for a in header.get('accepted', [])]
        observed = [StepEvent.from_json(e) for e in header.get('events', [])]
        try:
            if self._recording.outage is not None:
                run_id = header['run_id']
                if accepted:
                    what = f'acceptance of activities {", ".join(a.activity_id for a in accepted)}'
                    await self._recording.outage.write(run_id, what, self._recording.outage.acceptances(accepted))
                if observed:
                    what = ', '.join(map(_describe, observed))
                    await self._recording.outage.write(run_id, what, self._recording.outage.events(observed))
            else:
                if self._recording.owed is not None:
                    await self._recording.owed.write_owed(header['run_id'])
                await self._recording.ledger.accept(accepted)
                await self._recording.ledger.record_events(observed)
        except LedgerError as error:
            raise ledger_failure(error) from error

        info = activity.info()
        if self._recording.resets is not None:
            await self._recording.resets.observe(header['run_id'], info.workflow_id or '', info.workflow_run_id or '')
        kind = classify_activity(info.activity_type)
        if kind is None:
            # Token counting and compaction are not steps, but their history may be a reference too.
            if carries_history(info.activity_type) and isinstance(header.get('history'), dict):
                await self._resolve_history(header['run_id'], header['history'], input)
            return await super().execute_activity(input)
        shape = read_activity_args(kind, input.args)
        shape = dataclasses.replace(shape, step=ledger_step(shape.step, header))

        def event(kind_suffix: str, **fields: Any) -> StepEvent:
            base = StepEvent(
                run_id=header['run_id'],
                workflow_id=info.workflow_id or '',
                temporal_run_id=info.workflow_run_id or '',
                activity_id=info.activity_id,
                attempt=info.attempt,
                kind=f'{kind}_{kind_suffix}',  # type: ignore[arg-type]
                timestamp=datetime.now(UTC),
                step=shape.step,
                activity_type=info.activity_type,
                scheduled_at=info.current_attempt_scheduled_time,
                tool_call_id=shape.tool_call_id,
                tool_name=shape.tool_name,
                model_name=shape.model_name,
            )
            return dataclasses.replace(base, **fields)

        base: tuple[str, list[str]] | None = None
        if kind == 'model_request' and isinstance(header.get('history'), dict):
            base = await self._resolve_history(header['run_id'], header['history'], input)
        # Looked up before the start is written, which then says whether the attempt replays the call.
        tool_key = await self._tool_journal_key(header, shape) if kind == 'tool_call' else None
        reexecute = header.get('reexecute_tools') is True
        args_digest = arguments_digest(tool_call_arguments(input.args)) if tool_key is not None else ''
        found = await self._tool_journaled(tool_key) if tool_key is not None else None
        tool_recorded = (
            found if found is not None and _replays(found, args_digest, header['run_id'], reexecute) else None
        )
        # A result recorded under this tool_call_id for another call: the attempt's end says why the tool ran.
        other_arguments = found is not None and found.voided is None and not found.recorded_for(args_digest)
        await self._write(event('started', replayed=tool_recorded is not None))
        started = time.monotonic()
        journaled = (
            kind == 'model_request' and self._recording.model_journal and is_journaled_model_request(info.activity_type)
        )
        recorded: JournalEntry | None = None
        finished = False
        context = (
            tool_context.set(self._tool_context(header['run_id'], shape.tool_name)) if kind == 'tool_call' else None
        )
        try:
            if kind == 'model_request' and shape.step is not None:
                await self._snapshot(
                    header['run_id'], info.workflow_run_id or '', shape.step, model_request_messages(input.args), base
                )
            keys = await self._journal_keys(header, input) if journaled else None
            recorded = await self._journaled(keys) if keys is not None else None
            if recorded is not None:
                result: Any = recorded.model_response()
            elif tool_recorded is not None:
                result = _raw(tool_recorded)
            else:
                result = await super().execute_activity(input)
                finished = True
                if keys is not None:
                    result = await self._journal(keys[0], header['run_id'], result)
            payload = await self._encoded(result, _what(kind, shape))
            # Read before the journal may hand back a racing attempt's result: this attempt's own answer.
            outcome, detail = (
                (tool_outcome(result), tool_result_detail(result)) if kind == 'tool_call' else (None, None)
            )
            if tool_key is not None and tool_recorded is None and outcome in JOURNALED_OUTCOMES:
                result = await self._journal_tool(
                    tool_key, header['run_id'], shape, args_digest, result, payload, reexecute
                )
        except BaseException as error:
            failed = event(
                'failed',
                error=_error(error),
                duration_s=time.monotonic() - started,
                # The body ran, and then a journal write failed: the attempt fails, retryably, after the work.
                detail=_unrecorded(kind) if finished and _ledger_down(error) else None,
            )
            # Shielded: a cancelled attempt still owes the ledger its end.
            await asyncio.shield(self._write(failed, owe=lambda _: failed))
            raise
        finally:
            if context is not None:
                tool_context.reset(context)
        duration = time.monotonic() - started
        if kind == 'model_request':
            completed = event(
                'completed',
                duration_s=duration,
                usage=request_usage(getattr(result, 'usage', None), replayed=recorded is not None),
                model_name=getattr(result, 'model_name', None) or shape.model_name,
                replayed=recorded is not None,
                detail=(
                    f'replayed from the model-call journal (paid by attempt {recorded.attempt})'
                    if recorded is not None
                    else None
                ),
            )
        elif tool_recorded is not None:
            completed = event(
                'completed',
                duration_s=duration,
                outcome=tool_recorded.outcome,
                replayed=True,
                detail=(
                    f'replayed from the tool-call journal (completed by attempt {tool_recorded.attempt} '
                    f'of Temporal run {tool_recorded.temporal_run_id})'
                ),
            )
        else:
            completed = event(
                'completed',
                duration_s=duration,
                outcome=outcome,
                detail=_other_arguments(detail) if other_arguments else detail,
            )

        def failed_instead(error: ErrorInfo) -> StepEvent:
            # Temporal sees this attempt fail (its end could not be written): the end it owes says so.
            return event(
                'failed',
                error=error,
                duration_s=duration,
                usage=completed.usage,
                detail=_unrecorded(kind),
            )

        await self._write(completed, owe=failed_instead)
        return result

    async def _encoded(self, result: Any, what: str) -> Payload:
        """Encode the result as Temporal is about to (and store it where payload storage applies) before it counts.

        Temporal encodes an activity's result after the activity returns; a result it cannot encode
        (a string with lone surrogates, a structure nested too deep) fails there and is retried
        forever, while an end written before would say `completed`. So the interceptor encodes it
        first, with the attempt's own payload converter: a result that cannot be encoded fails the
        attempt for good, naming what and why, and a storage failure fails it retryably (under the
        `warn` outage policy the result stays inline in Temporal's history instead).
        """
        try:
            [payload] = activity.payload_converter().to_payloads([result])
        except Exception as error:
            raise ApplicationError(
                f'agentledger: the result of {what} cannot be encoded for Temporal: {type(error).__name__}: {error}',
                type=UNENCODABLE_RESULT,
                non_retryable=True,
            ) from error
        if self._recording.storage is None:
            return payload
        info = activity.info()
        namespace = info.workflow_namespace or info.namespace
        target = StorageDriverWorkflowInfo(
            namespace=namespace, id=info.workflow_id, type=info.workflow_type, run_id=info.workflow_run_id
        )
        context = ActivitySerializationContext(
            namespace=namespace,
            workflow_id=info.workflow_id,
            workflow_type=info.workflow_type,
            activity_type=info.activity_type,
            activity_id=info.activity_id,
            activity_task_queue=info.task_queue,
            is_local=info.is_local,
        )
        try:
            await self._recording.storage.store_ahead(target, payload, context)
        except LedgerUnavailableError as error:
            if self._recording.outage is None:
                raise ledger_failure(error) from error
            # Under `warn` the driver now keeps payloads inline for a while: Temporal will not store this one.
            logger.warning('agentledger: %s keeps its result inline, the ledger cannot store it (warn policy)', what)
        except LedgerError as error:
            raise ledger_failure(error) from error
        return payload

    async def _tool_journal_key(self, header: Mapping[str, Any], shape: ActivityShape) -> str | None:
        """The key the tool call is journaled under, or `None` when the tool-call journal does not cover it."""
        if not self._recording.tool_journal or shape.tool_call_id is None or shape.tool_name is None:
            return None
        try:
            lineage = await self._recording.scopes.journal_run(header['run_id'])
        except LedgerError as error:
            self._journal_unavailable(error, 'look up the run of', 'tool-call')
            return None
        return tool_journal_key(activity.info().workflow_id or '', lineage, shape.tool_name, shape.tool_call_id)

    async def _tool_journaled(self, key: str) -> ToolJournalEntry | None:
        """The tool-call journal's entry under `key` (`None`: none, or the journal cannot be read under `warn`)."""
        try:
            return await self._recording.ledger.tool_journal_entry(key)
        except LedgerError as error:
            self._journal_unavailable(error, 'read', 'tool-call')
            return None

    async def _journal_tool(
        self,
        key: str,
        run_id: str,
        shape: ActivityShape,
        args_digest: str,
        result: Any,
        payload: Payload,
        reexecute: bool,
    ) -> Any:
        """Journal the tool's result before it is returned; return the result the journal holds.

        That is this one unless a racing attempt of the same call (a zombie) journaled first: every
        attempt then returns the first recorded result.
        """
        info = activity.info()
        entry = ToolJournalEntry(
            key=key,
            workflow_id=info.workflow_id or '',
            run_id=run_id,
            tool_name=shape.tool_name or '',
            tool_call_id=shape.tool_call_id or '',
            step=shape.step,
            payload=encode_payload(dict(payload.metadata), payload.data),
            outcome=tool_outcome(result),
            detail=tool_result_detail(result),
            recorded_at=datetime.now(UTC),
            temporal_run_id=info.workflow_run_id or '',
            activity_id=info.activity_id,
            attempt=info.attempt,
            args_digest=args_digest,
        )
        try:
            stored = await self._recording.ledger.record_tool_result(entry, supersede_earlier_runs=reexecute)
        except LedgerError as error:
            self._journal_unavailable(error, 'write', 'tool-call')
            return result
        return result if stored is entry else _raw(stored)

    def _tool_context(self, run_id: str, tool_name: str | None) -> ToolContext:
        info = activity.info()
        return ToolContext(
            ledger=self._recording.ledger,
            scopes=self._recording.scopes,
            run_id=run_id,
            workflow_id=info.workflow_id or '',
            temporal_run_id=info.workflow_run_id or '',
            activity_id=info.activity_id,
            attempt=info.attempt,
            tool_name=tool_name,
        )

    async def _journal_keys(self, header: Mapping[str, Any], input: ExecuteActivityInput) -> list[str] | None:
        """The keys to look the request up under: its own, then format 1's if agentledger 0.1.0 scheduled it."""
        info = activity.info()
        model_id, settings, parameters = model_request_inputs(input.args)
        messages = model_request_messages(input.args)
        digest = request_hash(messages, model_id=model_id, settings=settings, parameters=parameters)
        try:
            lineage = await self._recording.scopes.journal_run(header['run_id'])
        except LedgerError as error:
            self._journal_unavailable(error, 'look up the run of')
            return None
        workflow_id = info.workflow_id or ''
        ordinal = header.get('request')
        keys = [
            journal_key(workflow_id, lineage, info.activity_type, digest, ordinal if isinstance(ordinal, int) else 1)
        ]
        if ordinal is None:
            keys.append(
                format_1_journal_key(
                    workflow_id,
                    lineage,
                    info.activity_type,
                    messages,
                    model_id=model_id,
                    settings=settings,
                    parameters=parameters,
                )
            )
        return keys

    async def _journaled(self, keys: list[str]) -> JournalEntry | None:
        try:
            for key in keys:
                found = await self._recording.ledger.journal_entry(key)
                if found is not None:
                    return found
        except LedgerError as error:
            self._journal_unavailable(error, 'read')
        return None

    def _journal_unavailable(self, error: LedgerError, action: str, journal: str = 'model-call') -> None:
        """Under `warn`, a journal the ledger cannot serve is skipped (a provider may be paid, a tool run, twice)."""
        if self._recording.outage is None or not isinstance(error, LedgerUnavailableError):
            raise ledger_failure(error) from error
        logger.warning(
            'agentledger: cannot %s the %s journal, going on without it (warn policy): %s', action, journal, error
        )

    async def _journal(self, key: str, run_id: str, result: Any) -> Any:
        """Journal the provider's response before it is returned; return the response the journal holds.

        That is this one unless a racing attempt of the same request (a zombie) journaled first: the
        first recorded answer wins, so every attempt returns the same response.
        """
        info = activity.info()
        entry = JournalEntry.of(
            result,
            key=key,
            workflow_id=info.workflow_id or '',
            run_id=run_id,
            activity_type=info.activity_type,
            request_hash=request_hash_of_key(key),
            recorded_at=datetime.now(UTC),
            temporal_run_id=info.workflow_run_id or '',
            activity_id=info.activity_id,
            attempt=info.attempt,
        )
        try:
            stored = await self._recording.ledger.record_journal(entry)
        except LedgerError as error:
            self._journal_unavailable(error, 'write')
            return result
        return result if stored is entry else stored.model_response()

    async def _resolve_history(
        self, run_id: str, reference: dict[str, Any], input: ExecuteActivityInput
    ) -> tuple[str, list[str]]:
        """Put back the messages the workflow sent as a reference; return the base snapshot's id and hashes."""
        base_id, base_messages, hashes = await self._recording.histories.resolve(run_id, reference)
        input.args = with_model_request_messages(input.args, [*base_messages, *model_request_messages(input.args)])
        return base_id, hashes

    async def _snapshot(
        self,
        run_id: str,
        temporal_run_id: str,
        step: int,
        messages: list[ModelMessage],
        base: tuple[str, list[str]] | None,
    ) -> None:
        # The history a model is about to see is the boundary snapshot: provider-valid by construction
        # (the ledger checks, and skips an invalid one rather than offering it as a continuation point).
        if self._recording.outage is not None and self._recording.outage.pending(run_id):
            # Its parent may be among the writes still kept: it waits behind them.
            self._keep_snapshot(self._recording.outage, run_id, temporal_run_id, step, messages, None)
            return
        try:
            record = await self._recording.ledger.write_snapshot(
                run_id=run_id,
                temporal_run_id=temporal_run_id,
                step=step,
                kind='model_request',
                messages=messages,
                base=base,
            )
        except LedgerError as error:
            if self._recording.outage is None or not isinstance(error, LedgerUnavailableError):
                raise ledger_failure(error) from error
            self._keep_snapshot(self._recording.outage, run_id, temporal_run_id, step, messages, error)
            return
        if record is None:
            return
        # The next model request of this run names this snapshot as its base: keep it at hand.
        self._recording.histories.remember(record, messages, base)

    def _keep_snapshot(
        self,
        outage: OutageBuffer,
        run_id: str,
        temporal_run_id: str,
        step: int,
        messages: list[ModelMessage],
        error: LedgerError | None,
    ) -> None:
        """Outage policy `warn`: store the snapshot later, and keep its history at hand for the next request."""
        self._recording.histories.remember_unstored(run_id, temporal_run_id, step, messages)

        async def store(ledger: Ledger) -> None:
            await ledger.write_snapshot(
                run_id=run_id, temporal_run_id=temporal_run_id, step=step, kind='model_request', messages=messages
            )

        outage.keep(run_id, f'snapshot of step {step}', store, error)

    async def _write(self, event: StepEvent, *, owe: Callable[[ErrorInfo], StepEvent] | None = None) -> None:
        """Write one event; `owe` builds the attempt's end to keep if the ledger refuses this one (policy `fail`).

        The attempt's start is in the ledger already and Temporal sees the attempt fail: without the
        kept end the ledger would show an attempt that never ended. It is written once the ledger is
        back, before any later write of the run on this worker.
        """
        try:
            if self._recording.outage is not None:
                await self._recording.outage.write(
                    event.run_id, _describe(event), self._recording.outage.events([event])
                )
                return
            if self._recording.owed is not None:
                await self._recording.owed.write_owed(event.run_id)
            await self._recording.ledger.record_events([event])
        except LedgerUnavailableError as error:
            failure = ledger_failure(error)
            if owe is not None and self._recording.owed is not None:
                end = owe(_error(failure))
                self._recording.owed.keep(end.run_id, _describe(end), self._recording.owed.events([end]), error)
            raise failure from error
        except LedgerError as error:
            raise ledger_failure(error) from error


def _ledger_down(error: BaseException) -> bool:
    """Whether an attempt failed because the ledger could not be written for now (see `ledger_failure`)."""
    return isinstance(error, ApplicationError) and error.type == LedgerUnavailableError.__name__


def _unrecorded(kind: StepKind) -> str:
    """The note on an attempt that did its work but failed because the ledger could not record it."""
    return f'the {kind.replace("_", " ")} finished, but the ledger could not record it'


def _replays(entry: ToolJournalEntry, args_digest: str, run_id: str, reexecute: bool) -> bool:
    """Whether a journaled result stands for this attempt of ledger run `run_id`.

    Not when it is voided or was recorded for other arguments; and with `reexecute` (the run restarts a
    failed one with its tools run again) only when this ledger run recorded it, so a later reset of the
    restarted run replays what the restart ran.
    """
    if entry.voided is not None or not entry.recorded_for(args_digest):
        return False
    return not reexecute or entry.run_id == run_id


def _other_arguments(detail: str | None) -> str:
    """A tool call's note when the journal held a result for other arguments under its tool_call_id."""
    note = 'ran: the tool-call journal held a result of this tool_call_id for other arguments'
    return f'{detail} ({note})' if detail else note


def _raw(entry: ToolJournalEntry) -> RawValue:
    """A journaled tool result as Temporal gets it: the recorded payload itself, byte for byte."""
    try:
        metadata, data = decode_payload(entry.payload)
    except ValueError as error:
        raise ledger_failure(
            LedgerCorruptionError(f'tool-call journal entry {entry.key!r} does not decode: {error}')
        ) from error
    return RawValue(Payload(metadata=metadata, data=data))


def _what(kind: StepKind, shape: ActivityShape) -> str:
    """The attempt's subject, as an error message names it."""
    if kind == 'tool_call':
        return f'tool call {shape.tool_name} ({shape.tool_call_id})'
    return f'the model request of step {shape.step}'


def _describe(event: StepEvent) -> str:
    """One line naming an event, for the degraded mark of a run whose ledger was down."""
    what = f' of {event.tool_name}' if event.tool_name else ''
    step = f'step {event.step} ' if event.step is not None else ''
    return f'{step}{event.kind}{what} (activity {event.activity_id}, attempt {event.attempt})'
