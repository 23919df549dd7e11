"""Reconcile the ledger with Temporal's history: find what is lost, divergent, orphan or duplicate, and repair it."""

from agentledger.reconcile._compare import Category, Comparison, Finding, RowKind, compare
from agentledger.reconcile._facts import ActivityFact, RunFacts, fetch_run_facts
from agentledger.reconcile._repair import RECONCILE_SCHEMA, ReconcileReport, reconcile_ledger, reconcile_run

__all__ = [
    'RECONCILE_SCHEMA',
    'ActivityFact',
    'Category',
    'Comparison',
    'Finding',
    'ReconcileReport',
    'RowKind',
    'RunFacts',
    'compare',
    'fetch_run_facts',
    'reconcile_ledger',
    'reconcile_run',
]
