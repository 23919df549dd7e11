"""The Temporal plugin and its interceptors."""

from ._outage import OutagePolicy
from ._plugin import LedgerInterceptor, LedgerPlugin

__all__ = ['LedgerInterceptor', 'LedgerPlugin', 'OutagePolicy']
