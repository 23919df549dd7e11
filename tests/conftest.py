"""Shared fixtures: one real Temporal dev server for the whole suite, and a worker per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic_ai.agent.abstract import AbstractAgent
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from agentledger import Ledger, LedgerPlugin
from agentledger._devserver import start_dev_server

pytest_plugins = ['tests.s3_server']


@pytest.fixture(scope='session')
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal CLI dev server (built from the Go module proxy when missing)."""
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


@dataclass
class Served:
    """A running worker: its client (with the plugin), task queue and ledger."""

    client: Client
    task_queue: str
    ledger: Ledger


@asynccontextmanager
async def serve(
    env: WorkflowEnvironment, ledger: Ledger, agents: Sequence[AbstractAgent[Any, Any]], **worker_options: Any
) -> AsyncIterator[Served]:
    """Connect a client with `LedgerPlugin` and run a worker for `agents` on a fresh task queue."""
    plugin = LedgerPlugin(ledger, agents=agents)
    client = await Client.connect(env.client.service_client.config.target_host, plugins=[plugin])
    task_queue = f'tq-{uuid.uuid4().hex[:8]}'
    async with Worker(client, task_queue=task_queue, **worker_options):
        yield Served(client, task_queue, ledger)
