"""How a ledger that cannot be written surfaces to Temporal: as a specific, retryable activity failure."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from agentledger.errors import LedgerError

__all__ = ['ledger_failure']


def ledger_failure(error: LedgerError) -> ApplicationError:
    """The activity failure raised when the ledger cannot be written: retryable, typed, specific.

    Temporal retries the attempt with its retry policy, so the run pauses while the ledger is down
    instead of running unrecorded; the failure message (visible in the Temporal UI) says what could
    not be written where.
    """
    return ApplicationError(f'agentledger: {error}', type=type(error).__name__, non_retryable=False)
