"""An application's own set-up, with nothing of agentledger: what shares a client and worker with the plugin.

A workflow and its activity, and an in-memory external-storage driver. The module imports only
temporalio, so that the workflow sandbox imports it cheaply.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
)


@activity.defn
async def make_report(size: int) -> str:
    """A report of `size` characters: a result as large as the test wants."""
    return 'r' * size


@workflow.defn
class ReportWorkflow:
    """Runs `make_report` and returns the length of what it got back."""

    @workflow.run
    async def run(self, size: int) -> int:
        report = await workflow.execute_activity(make_report, size, start_to_close_timeout=timedelta(seconds=20))
        return len(report)


class MemoryDriver(StorageDriver):
    """The application's own storage driver: payloads kept in a dict, claims name their key."""

    def __init__(self, name: str = 'own-memory') -> None:
        self._name = name
        self.stored: dict[str, Payload] = {}
        self.retrieved = 0

    def name(self) -> str:
        return self._name

    async def store(self, context: StorageDriverStoreContext, payloads: Sequence[Payload]) -> list[StorageDriverClaim]:
        claims = []
        for payload in payloads:
            key = uuid.uuid4().hex
            self.stored[key] = payload
            claims.append(StorageDriverClaim(claim_data={'key': key}))
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        self.retrieved += len(claims)
        return [self.stored[claim.claim_data['key']] for claim in claims]
