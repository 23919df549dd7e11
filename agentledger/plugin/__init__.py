"""The Temporal plugin (`LedgerPlugin`) and its activity and workflow interceptors."""

from agentledger.plugin._plugin import LedgerInterceptor, LedgerPlugin

__all__ = ['LedgerInterceptor', 'LedgerPlugin']
