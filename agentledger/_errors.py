"""The errors agentledger raises, each specific enough to act on."""

from __future__ import annotations

__all__ = [
    'AgentLedgerError',
    'LedgerConfigError',
    'LedgerCorruptionError',
    'LedgerError',
    'LedgerUnavailableError',
    'RunNotFoundError',
]


class AgentLedgerError(Exception):
    """Base class of every agentledger error."""


class LedgerError(AgentLedgerError):
    """Something went wrong reading or writing the ledger."""


class LedgerUnavailableError(LedgerError):
    """The ledger could not be reached or written, even after retries; nothing was recorded."""


class LedgerCorruptionError(LedgerError):
    """A stored row does not decode (or no longer matches its hash); it is reported, never returned."""


class LedgerConfigError(LedgerError):
    """A ledger URL or option is invalid."""


class RunNotFoundError(LedgerError, LookupError):
    """No ledger run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f'no ledger run with id {run_id!r}')
        self.run_id = run_id
