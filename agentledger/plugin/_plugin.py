"""`LedgerPlugin`: one Temporal plugin, for client and worker, that turns agent runs into ledger runs."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic_ai.agent.abstract import AbstractAgent
from pydantic_ai.durable_exec.temporal import AgentPlugin, PydanticAIPlugin, TemporalDurability
from temporalio.client import ClientConfig
from temporalio.converter import DataConverter
from temporalio.plugin import SimplePlugin
from temporalio.worker import (
    ActivityInboundInterceptor,
    Interceptor,
    ReplayerConfig,
    Worker,
    WorkerConfig,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from agentledger._compat import mark_worker_never_started
from agentledger.activities import LedgerActivities, delegate_result
from agentledger.activities._history import HistoryResolver
from agentledger.activities._resets import ResetRecorder
from agentledger.errors import LedgerUnavailableError
from agentledger.ledger._facade import Ledger
from agentledger.ledger._outage import OutageBuffer, OutagePolicy
from agentledger.ledger._scopes import Scopes
from agentledger.payloads._driver import (
    PAYLOAD_THRESHOLD,
    LedgerPayloads,
    LedgerStorageDriver,
    ResultStorage,
    with_ledger_storage,
)
from agentledger.payloads._failures import with_redacted_failures
from agentledger.plugin._activity_interceptor import ActivityRecording, LedgerActivityInterceptor
from agentledger.plugin._registrations import activity_name, registered_once, workflows_registered_once
from agentledger.plugin._search_attributes import NamespaceSearchAttributes, check_search_attributes
from agentledger.plugin._workflow_interceptor import workflow_interceptor_class
from agentledger.workflows import AgentRunWorkflow
from agentledger.workflows._delegate import delegated_agents
from agentledger.workflows._registry import register_agent, set_approvals

__all__ = ['SANDBOX_PASSTHROUGH', 'LedgerInterceptor', 'LedgerPlugin']

logger = logging.getLogger('agentledger.worker')


class LedgerInterceptor(Interceptor):
    """The worker interceptor pair: activity events on the worker, acceptances from workflow code."""

    def __init__(
        self,
        ledger: Ledger,
        histories: HistoryResolver | None = None,
        outage: OutageBuffer | None = None,
        *,
        owed: OutageBuffer | None = None,
        model_journal: bool = True,
        tool_journal: bool = True,
        storage: ResultStorage | None = None,
    ) -> None:
        self._recording = ActivityRecording(
            ledger,
            histories or HistoryResolver(ledger),
            Scopes(ledger),
            outage,
            owed=owed,
            model_journal=model_journal,
            tool_journal=tool_journal,
            storage=storage,
            resets=ResetRecorder(ledger),
        )

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Record every attempt of pydantic-ai activities started by `AgentRunWorkflow`."""
        return LedgerActivityInterceptor(next, self._recording)

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        """Carry acceptances and deterministic activity ids out of workflow code."""
        return workflow_interceptor_class(input)


SANDBOX_PASSTHROUGH = (
    'agentledger._compat',
    'agentledger._redaction',
    'agentledger.errors',
    'agentledger.model',
    'agentledger.workflows',
)
"""The agentledger modules the workflow sandbox passes through: exactly what workflow code imports.

The agent registry and the run state must be the worker's own modules (not sandbox re-imports) for
workflow code and the interceptors to share them; these modules are pure and deterministic, which a
subprocess test of `import agentledger.workflows` checks. Anything else of agentledger that workflow
code imported would be re-imported inside the sandbox and checked by its restrictions.
"""


def _passthrough_agentledger(runner: WorkflowRunner | None) -> WorkflowRunner:
    if runner is None:
        raise ValueError('no workflow runner to configure')
    if not isinstance(runner, SandboxedWorkflowRunner):
        return runner
    return dataclasses.replace(runner, restrictions=runner.restrictions.with_passthrough_modules(*SANDBOX_PASSTHROUGH))


def _with_delegates(agents: Sequence[AbstractAgent[Any, Any]]) -> list[AbstractAgent[Any, Any]]:
    """The agents as given, then every agent they delegate to (transitively) that is not among them."""
    found = list(agents)
    index = 0
    while index < len(found):
        for delegate in delegated_agents(found[index]):
            if all(delegate is not seen for seen in found):
                found.append(delegate)
        index += 1
    return found


def _check_agents(agents: Sequence[AbstractAgent[Any, Any]]) -> list[AbstractAgent[Any, Any]]:
    names: set[str] = set()
    for agent in agents:
        if agent.name is None:
            raise ValueError('every agent given to LedgerPlugin needs a name: Agent(..., name="...")')
        if TemporalDurability.from_agent(agent) is None:
            raise ValueError(
                f'agent {agent.name!r} has no TemporalDurability capability; '
                'create it with Agent(..., capabilities=[TemporalDurability()])'
            )
        if agent.name in names:
            raise ValueError(f'two agents are named {agent.name!r}; agent names must be unique on a worker')
        names.add(agent.name)
    return list(agents)


def _with_storage(converter: DataConverter | None, storage: ResultStorage | None) -> DataConverter:
    """The client's converter with the ledger's external storage (when payloads go to the ledger)."""
    base = converter or DataConverter.default
    if storage is None:
        return base
    # Results stored ahead of Temporal are encoded as Temporal encodes them: its codec, then storage.
    storage.codec = base.payload_codec
    return with_ledger_storage(base, storage.driver, storage.threshold, storage.payloads)


def _activities(plugin: SimplePlugin) -> list[Any]:
    """The activities a plugin was given as a list (a `SimplePlugin` may be given a function instead)."""
    return list(plugin.activities) if isinstance(plugin.activities, Sequence) else []


def _workflows(plugin: SimplePlugin) -> list[type]:
    return list(plugin.workflows) if isinstance(plugin.workflows, Sequence) else []


class LedgerPlugin(SimplePlugin):
    """Add to a Temporal client (and so to its workers) to run pydantic-ai agents with a ledger.

    On the client it installs pydantic-ai's payload converter. On a worker it also registers
    `AgentRunWorkflow`, the agents' activities (via pydantic-ai's `AgentPlugin`), the ledger's own
    activities and the interceptors that write StepEvents; it opens the ledger when the worker starts
    and checks that it can write it (so a bad or read-only ledger fails at start, with its own
    message), and closes it when the worker stops.

    Adding it changes nothing else of a worker that also runs the application's own workflows and
    activities:

    - **Payload storage.** An external storage the client's `DataConverter` already has (its
      drivers, selector and threshold) is kept: the ledger stores only the payloads of agent runs
      (see `payload_threshold`), every other payload goes where that storage sends it, and each
      reference is read back by the driver that wrote it. The payload codec is kept too.
    - **Registrations.** An activity or workflow the worker also registers itself (the agents'
      activities, its own `AgentPlugin` or `PydanticAIPlugin`, `AgentRunWorkflow`) is registered
      once when both are the same; two different ones under one name raise a `ValueError` naming
      both and which is the plugin's.
    - **A ledger that is down** (`LedgerUnavailableError`: unreachable, locked) when the worker
      starts does not stop it: a warning names the ledger and the error, the worker starts, and the
      ledger is opened by the first operation that needs it. Until then agent runs follow the
      `outage` policy, and the application's other workflows and activities run as without the
      plugin. A ledger that is misconfigured, read-only, refused or corrupt still fails the start.

    Args:
        ledger: Where runs are recorded.
        agents: The agents this worker serves, each named and carrying `TemporalDurability`. The
            agents they delegate to (`agentledger.delegate`) are served too, without being listed.
        payload_threshold: Payloads of agent runs at least this large (bytes) are stored in the ledger,
            deduplicated, and Temporal's history keeps a reference (see `agentledger/payloads/_driver.py`).
            Payloads of agent runs are those of `AgentRunWorkflow`, and those of the agents' pydantic-ai
            activities and the ledger's own activities in any workflow. `None` keeps them inline (or
            where the converter's own external storage puts them). Clients, workers and replayers of one
            namespace must agree.
        model_journal: Journal every provider response before the model-request activity returns, so
            a later attempt of the same request replays it instead of calling (and paying) the
            provider again (see the README, "Model-call journal"). On by default.
        tool_journal: Journal the result of every tool call that completed, so a later attempt of
            the same call (same execution chain, same tool_call_id: after a reset or a restart, the
            model-call journal gives the calls back their ids) replays it instead of running the tool
            again (see the README, "Tool-call journal"). On by default.
        outage: What a worker does when the ledger cannot be written (after the ledger's own
            retries). `fail` (default): the activity attempt fails with a retryable
            `LedgerUnavailableError` and Temporal retries it, so the run pauses until the ledger is
            back and nothing goes unrecorded. `warn`: the run goes on; what could not be written is
            kept in the worker's memory and written when the ledger is back, and the run is marked
            degraded (`RunRecord.degraded`) until `reconcile` has checked it against history.
        wait_for_approval: Inside your own workflows, a served agent's run whose tools need approval
            waits in the run for the `approve` / `deny` updates or signals (registered on the workflow
            while it waits, unless it defines handlers of those names) and goes on; `False` lets such a
            run end with `DeferredToolRequests`, as pydantic-ai does. `AgentRunWorkflow` runs choose
            per run (`RunOptions.wait_for_approval`). See the README, "Approvals".
        register_search_attributes: When a worker starts, register the agentledger search attributes
            (`AgentLedgerAgent`, `AgentLedgerStatus`, ...) its namespace lacks, as the dev server and
            self-hosted Temporal allow. Either way the worker checks which the namespace has, runs set
            only those, and one error names each missing one with the commands that register it
            (Temporal Cloud: `tcld`). See the README, "Finding runs in the Temporal UI".

    """

    def __init__(
        self,
        ledger: Ledger,
        agents: Sequence[AbstractAgent[Any, Any]] = (),
        *,
        payload_threshold: int | None = PAYLOAD_THRESHOLD,
        model_journal: bool = True,
        tool_journal: bool = True,
        outage: OutagePolicy = 'fail',
        wait_for_approval: bool = True,
        register_search_attributes: bool = True,
    ) -> None:
        if outage not in ('fail', 'warn'):
            raise ValueError(f"outage must be 'fail' or 'warn', not {outage!r}")
        self.ledger = ledger
        self.model_journal = model_journal
        self.tool_journal = tool_journal
        self.outage: OutagePolicy = outage
        self.wait_for_approval = wait_for_approval
        self.register_search_attributes = register_search_attributes
        self._search_attributes = NamespaceSearchAttributes()
        # Under `warn` it keeps every write the ledger refused; under `fail` only the ends of failed attempts.
        self._buffer = OutageBuffer(ledger, mark_degraded=outage == 'warn')
        warn = self._buffer if outage == 'warn' else None
        owed = None if outage == 'warn' else self._buffer
        self.agents = _check_agents(_with_delegates(agents))
        self._pydantic_ai = PydanticAIPlugin()
        self._agent_plugins = [AgentPlugin(agent) for agent in self.agents]
        agent_activities = [activity for plugin in self._agent_plugins for activity in _activities(plugin)]

        # One resolver for the interceptor and the seal, so the seal finds the last request's history at hand.
        histories = HistoryResolver(ledger)
        # One driver for Temporal's external storage and the interceptor, which stores results ahead of it.
        driver = LedgerStorageDriver(ledger, inline_while_down=outage == 'warn')
        payloads = LedgerPayloads(frozenset(filter(None, map(activity_name, agent_activities))))
        storage = ResultStorage(driver, payload_threshold, payloads=payloads) if payload_threshold is not None else None
        super().__init__(
            'agentledger.LedgerPlugin',
            interceptors=[
                LedgerInterceptor(
                    ledger,
                    histories,
                    warn,
                    owed=owed,
                    model_journal=model_journal,
                    tool_journal=tool_journal,
                    storage=storage,
                )
            ],
            activities=[
                *LedgerActivities(
                    ledger, histories, warn, owed=owed, search_attributes=self._search_attributes.present
                ).activities,
                delegate_result,
            ],
            workflows=[AgentRunWorkflow],
            workflow_runner=_passthrough_agentledger,
            data_converter=lambda converter: with_redacted_failures(_with_storage(converter, storage)),
        )
        # What this plugin registers, to tell it apart from what the worker registers itself.
        self._own_activities = [*_activities(self), *agent_activities]
        self._own_workflows = [AgentRunWorkflow, *(w for plugin in self._agent_plugins for w in _workflows(plugin))]

    async def run_worker(self, worker: Worker, next: Callable[[Worker], Awaitable[None]]) -> None:
        """Open the ledger while the worker runs; a ledger that cannot be used fails the start, a ledger down does not.

        A worker records every attempt, so one that cannot write (a read-only file or directory, S3
        credentials that may only read, a ledger opened read-only), or whose ledger is misconfigured
        or corrupt, refuses to start with that error (`Ledger.check_writable`) rather than poll its
        task queue and fail every attempt it takes. A ledger that is down for now
        (`LedgerUnavailableError`: an unreachable endpoint, a locked file) does not keep the worker,
        and so the application's own workflows and activities on it, from starting: a warning names
        the ledger and the error, and the ledger opens on first use (`Ledger.open_lazily`); until then
        agent runs follow the outage policy.

        It also checks which agentledger search attributes the namespace has (registering the missing
        ones with `register_search_attributes`): its runs set only those, and what is missing is logged
        as one error, with the commands that register it.
        """
        try:
            check = await check_search_attributes(worker.client, register=self.register_search_attributes)
            self._search_attributes.confirm(check)
            down = await self.ledger.open_lazily()
        except BaseException:
            # temporalio waits for a worker that never started to finish shutting down; say it has.
            mark_worker_never_started(worker)
            raise
        if down is not None:
            logger.warning(
                'agentledger: the ledger at %s is unavailable (%s); the worker starts anyway and opens the ledger when '
                'an agent run first needs it (until then agent runs follow the %r outage policy)',
                self.ledger.url,
                down,
                self.outage,
            )
        else:
            try:
                await self.ledger.check_writable()
            except LedgerUnavailableError as error:
                # Opened, then unavailable for the probe: down, not refused; the next write finds out again.
                logger.warning(
                    'agentledger: the ledger at %s could not be checked for writing (%s); the worker starts anyway',
                    self.ledger.url,
                    error,
                )
            except BaseException:
                mark_worker_never_started(worker)
                await self.ledger.close()
                raise
        try:
            await next(worker)
        finally:
            try:
                await self._buffer.close()
            finally:
                await self.ledger.close()

    def configure_client(self, config: ClientConfig) -> ClientConfig:
        """pydantic-ai's converter first, then the ledger's client configuration."""
        return super().configure_client(self._pydantic_ai.configure_client(config))

    def configure_worker(self, config: WorkerConfig) -> WorkerConfig:
        """Register the agents (by task queue) and their activities, then the ledger's parts, each name once."""
        for agent in self.agents:
            register_agent(config['task_queue'], agent)
        set_approvals(config['task_queue'], self.wait_for_approval)
        config = self._pydantic_ai.configure_worker(config)
        for plugin in self._agent_plugins:
            config = plugin.configure_worker(config)
        return registered_once(super().configure_worker(config), self._own_activities, self._own_workflows)

    def configure_replayer(self, config: ReplayerConfig) -> ReplayerConfig:
        """Replay with the same converter, runner, workflows, interceptors and agents as the worker."""
        for agent in self.agents:
            register_agent(None, agent)
        set_approvals(None, self.wait_for_approval)
        config = self._pydantic_ai.configure_replayer(config)
        # The agents' child workflows (tools run as child workflows) are in the histories replayed.
        for plugin in self._agent_plugins:
            config = plugin.configure_replayer(config)
        config = super().configure_replayer(config)
        return workflows_registered_once(config, self._own_workflows)
