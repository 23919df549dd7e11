"""The `Ledger` protocol every backend implements, with the reads derived once for all of them."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar

from .._errors import LedgerUnavailableError, RunNotFoundError
from ._records import Acceptance, RunRecord, RunSeal, RunStart, RunStatus, StepEvent, StepRecord
from ._rules import derive_event_states, derive_steps, run_event_for_seal, run_event_for_start

__all__ = ['Ledger', 'RetryPolicy', 'RunFilter']

logger = logging.getLogger('agentledger.ledger')

T = TypeVar('T')


@dataclass(frozen=True)
class RunFilter:
    """Which runs `Ledger.runs` lists. `None` means any."""

    agent: str | None = None
    status: RunStatus | None = None
    conversation_id: str | None = None
    parent_run_id: str | None = None
    workflow_id: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed ledger write is retried before it is reported as `LedgerUnavailableError`."""

    attempts: int = 5
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0


class Ledger(ABC):
    """A store of runs, step events and acceptances.

    Writes are idempotent (at-least-once delivery collapses onto each record's key) and are retried
    with backoff; a write that still fails raises `LedgerUnavailableError` naming what was not
    written, never a silent drop. Reads derive each event's state and each step's accepted attempt
    with the shared rules in `agentledger.ledger._rules`, so all backends answer alike.

    Use it as an async context manager, or call `open()` / `close()`.
    """

    url: str
    """Where this ledger lives, as a URL `open_ledger` accepts (never with credentials)."""

    retry: RetryPolicy = RetryPolicy()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    _users: int = 0

    async def open(self) -> None:
        """Connect and make sure the schema exists; raises a specific error when that is not possible.

        Opens are counted: a ledger shared by a worker (which `LedgerPlugin` opens while the worker
        runs) and by the application reading it stays open until the last user closes it.
        """
        if self._users == 0:
            await self._open()
        self._users += 1

    async def close(self) -> None:
        """Release this user's hold; the last one closes the connections. Extra calls do nothing."""
        if self._users == 0:
            return
        self._users -= 1
        if self._users == 0:
            await self._close()

    @abstractmethod
    async def _open(self) -> None:
        """Connect, create or migrate the schema."""

    @abstractmethod
    async def _close(self) -> None:
        """Flush pending writes and release connections."""

    # --- backend primitives ------------------------------------------------------------------------

    @abstractmethod
    async def _write_run_start(self, start: RunStart, event: StepEvent) -> None:
        """Fold `start` into the run record (see `apply_run_start`) and store its event, atomically."""

    @abstractmethod
    async def _write_events(self, events: Sequence[StepEvent]) -> None:
        """Store events that are not stored yet (by key), assigning `seq` in arrival order."""

    @abstractmethod
    async def _write_acceptances(self, acceptances: Sequence[Acceptance]) -> None:
        """Store acceptances that are not stored yet (by key)."""

    @abstractmethod
    async def _write_seal(self, seal: RunSeal, event: StepEvent) -> None:
        """Fold `seal` into the run record (see `apply_seal`) and store its event, atomically."""

    @abstractmethod
    async def _read_run(self, run_id: str) -> RunRecord | None:
        """Return the run record, or `None`."""

    @abstractmethod
    async def _read_runs(self, filter: RunFilter, *, limit: int, before: RunRecord | None) -> list[RunRecord]:
        """Return the runs matching `filter`, newest first, strictly older than `before` when given."""

    @abstractmethod
    async def _read_events(self, run_id: str) -> list[StepEvent]:
        """Return the run's stored events in `seq` order, with `state` left as stored (`provisional`)."""

    @abstractmethod
    async def _read_acceptances(self, run_id: str) -> list[Acceptance]:
        """Return the run's stored acceptances."""

    # --- writes --------------------------------------------------------------------------------------

    async def _retrying(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        delay = self.retry.initial_backoff_s
        last: BaseException | None = None
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return await operation()
            except LedgerUnavailableError as error:
                last = error
                logger.warning('ledger write failed (%s), attempt %d/%d: %s', what, attempt, self.retry.attempts, error)
                if attempt < self.retry.attempts:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry.max_backoff_s)
        raise LedgerUnavailableError(
            f'could not write {what} to the ledger at {self.url} after {self.retry.attempts} attempts: {last}'
        ) from last

    async def start_run(self, start: RunStart) -> None:
        """Record that a Temporal run of ledger run `start.run_id` began (and its `run_started` event)."""
        await self._retrying(
            f'run start of {start.run_id}', lambda: self._write_run_start(start, run_event_for_start(start))
        )

    async def record_events(self, events: Sequence[StepEvent]) -> None:
        """Record step events; an event whose key is already stored is ignored."""
        if events:
            await self._retrying(
                f'{len(events)} event(s) of run {events[0].run_id}', lambda: self._write_events(events)
            )

    async def accept(self, acceptances: Sequence[Acceptance]) -> None:
        """Record that the workflow used these activities' results."""
        if acceptances:
            await self._retrying(
                f'{len(acceptances)} acceptance(s) of run {acceptances[0].run_id}',
                lambda: self._write_acceptances(acceptances),
            )

    async def seal_run(self, seal: RunSeal) -> None:
        """Record how a run ended (and its terminal run event); activities never accepted become abandoned."""
        await self._retrying(f'seal of run {seal.run_id}', lambda: self._write_seal(seal, run_event_for_seal(seal)))

    # --- reads ---------------------------------------------------------------------------------------

    async def run(self, run_id: str) -> RunRecord:
        """Return the run record; raise `RunNotFoundError` for an unknown id."""
        record = await self._read_run(run_id)
        if record is None:
            raise RunNotFoundError(run_id)
        return record

    async def runs(
        self,
        *,
        agent: str | None = None,
        status: RunStatus | None = None,
        conversation_id: str | None = None,
        parent_run_id: str | None = None,
        workflow_id: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[RunRecord]:
        """List runs, newest first. Page with `before=<the last run id of the previous page>`."""
        if limit < 1:
            raise ValueError(f'limit must be at least 1, got {limit}')
        cursor = await self.run(before) if before is not None else None
        return await self._read_runs(
            RunFilter(agent, status, conversation_id, parent_run_id, workflow_id), limit=limit, before=cursor
        )

    async def events(self, run_id: str) -> list[StepEvent]:
        """Return the run's events in causal order, each with its derived `state`."""
        record = await self.run(run_id)
        events = await self._read_events(run_id)
        acceptances = await self._read_acceptances(run_id)
        return derive_event_states(events, acceptances, sealed_temporal_run_ids=_sealed(record))

    async def steps(self, run_id: str) -> list[StepRecord]:
        """One record per activity: its attempts and which attempt's result the run used."""
        record = await self.run(run_id)
        events = await self._read_events(run_id)
        acceptances = await self._read_acceptances(run_id)
        states = derive_event_states(events, acceptances, sealed_temporal_run_ids=_sealed(record))
        return derive_steps(states, acceptances)


def _sealed(record: RunRecord) -> tuple[str, ...]:
    """Temporal runs that can accept nothing more: all of them once the run ended, else all but the latest."""
    if record.status == 'running':
        return record.temporal_run_ids[:-1]
    return record.temporal_run_ids
