"""Reconcile the ledger with Temporal's history: find what is lost, divergent, orphan or duplicate, and repair it.

`reconcile_run` and `reconcile_ledger` fetch the facts from Temporal (`_facts`), compare them with the
ledger's rows in pure code (`_compare`) and repair, audited, what the comparison finds (`_repair`).
"""

from agentledger.reconcile._compare import Category, Finding
from agentledger.reconcile._repair import RECONCILE_SCHEMA, ReconcileReport, reconcile_ledger, reconcile_run

__all__ = ['RECONCILE_SCHEMA', 'Category', 'Finding', 'ReconcileReport', 'reconcile_ledger', 'reconcile_run']
