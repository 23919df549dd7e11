"""What tool bodies use: `once` (a side effect run once per effect key) and `idempotency_key`."""

from agentledger.tools._keys import idempotency_key
from agentledger.tools._once import once

__all__ = ['idempotency_key', 'once']
