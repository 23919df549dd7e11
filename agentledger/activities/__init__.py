"""The ledger's own activities (run start, park, resume, seal), reading delegates' results, and the history resolver."""

from agentledger.activities._delegates import delegate_result
from agentledger.activities._ledger import LedgerActivities

__all__ = ['LedgerActivities', 'delegate_result']
