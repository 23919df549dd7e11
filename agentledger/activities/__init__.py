"""Everything that does I/O on the worker: the ledger's own activities, and reading delegates' results."""

from agentledger.activities._delegates import delegate_result
from agentledger.activities._ledger import LedgerActivities

__all__ = ['LedgerActivities', 'delegate_result']
