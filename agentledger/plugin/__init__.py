"""The Temporal plugin (`LedgerPlugin`), its activity and workflow interceptors, and its search attribute check."""

from agentledger.plugin._plugin import LedgerInterceptor, LedgerPlugin
from agentledger.plugin._search_attributes import SearchAttributeCheck, check_search_attributes

__all__ = ['LedgerInterceptor', 'LedgerPlugin', 'SearchAttributeCheck', 'check_search_attributes']
