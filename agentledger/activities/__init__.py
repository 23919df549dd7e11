"""Everything that does I/O on the worker: the ledger's own activities, and reading delegates' results."""

from ._delegates import delegate_result
from ._ledger import LedgerActivities

__all__ = ['LedgerActivities', 'delegate_result']
