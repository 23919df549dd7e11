"""Everything that does I/O on the worker: the ledger's own activities."""

from ._ledger import LedgerActivities

__all__ = ['LedgerActivities']
