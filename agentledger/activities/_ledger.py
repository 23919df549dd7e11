"""The ledger's own activities: record a run's start and seal it. They run on the worker and do I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from .._errors import LedgerConfigError, LedgerCorruptionError, LedgerError
from ..ledger._base import Ledger
from ..ledger._records import RunStart
from ..plugin._activity_interceptor import ledger_failure
from ..workflows._types import RUN_STARTED_ACTIVITY, SEAL_RUN_ACTIVITY, SealInput

__all__ = ['LedgerActivities']


class LedgerActivities:
    """The `run_started` and `seal_run` activities, bound to one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    @property
    def activities(self) -> list[Callable[..., Any]]:
        """The activity callables to register on a worker."""
        return [self.run_started, self.seal_run]

    @activity.defn(name=RUN_STARTED_ACTIVITY)
    async def run_started(self, start: RunStart) -> None:
        """Record the start of a Temporal run of a ledger run (idempotent)."""
        try:
            await self._ledger.start_run(start)
        except (LedgerCorruptionError, LedgerConfigError):
            raise
        except LedgerError as error:
            raise ledger_failure(error) from error

    @activity.defn(name=SEAL_RUN_ACTIVITY)
    async def seal_run(self, input: SealInput) -> None:
        """Record every acceptance and workflow-side event of the run, then its outcome (idempotent)."""
        try:
            await self._ledger.record_events(input.workflow_events)
            await self._ledger.accept(input.acceptances)
            await self._ledger.seal_run(input.seal)
        except (LedgerCorruptionError, LedgerConfigError):
            raise
        except LedgerError as error:
            raise ledger_failure(error) from error
