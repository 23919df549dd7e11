"""The errors agentledger raises, each specific enough to act on, and the failure types it reports to Temporal.

The exception classes are raised in Python. The string constants are the error types
(`ApplicationError.type`) of the failures agentledger's workflows and activities report to Temporal:
they appear in workflow histories and the Temporal UI, and callers match on them, so their values
never change. Pure: workflow code imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from agentledger._redaction import redact

__all__ = [
    'AGENT_NOT_DURABLE',
    'APPROVAL_REJECTED',
    'APPROVAL_TIMED_OUT',
    'DELEGATE_RESULT_UNAVAILABLE',
    'INVALID_DEPS',
    'INVALID_SEED',
    'RUN_NOT_PARKED',
    'UNENCODABLE_RESULT',
    'UNKNOWN_AGENT',
    'UNRESOLVABLE_HISTORY_REFERENCE',
    'AgentLedgerError',
    'CliError',
    'DelegateFailedError',
    'EffectBusyError',
    'EffectNotFoundError',
    'EffectStateError',
    'EffectUnknownError',
    'LedgerConfigError',
    'LedgerCorruptionError',
    'LedgerError',
    'LedgerPermissionError',
    'LedgerReadOnlyError',
    'LedgerUnavailableError',
    'MalformedPayloads',
    'RunNotFoundError',
    'SnapshotNotFoundError',
    'UnknownRunIdError',
    'UnresolvablePayloadReference',
]

UNKNOWN_AGENT = 'UnknownAgent'
"""A run names an agent no worker on its task queue serves: the run fails with this type (not retryable)."""

AGENT_NOT_DURABLE = 'AgentNotDurable'
"""A run's agent has no `TemporalDurability` capability: the run fails with this type (not retryable)."""

INVALID_DEPS = 'InvalidDeps'
"""A run's deps do not match its agent's `deps_type` (or it takes none): the run fails with this type."""

INVALID_SEED = 'InvalidSeed'
"""The run, snapshot or step a run was to continue or fork from is not in the ledger: the run fails with this type."""

RUN_NOT_PARKED = 'RunNotParked'
"""A `resume` or `abandon` update reached a run that is not parked, or already has a decision: the update fails."""

APPROVAL_REJECTED = 'ApprovalRejected'
"""`ApplicationError.type` of an `approve` or `deny` update that names no waiting call, another digest, or a
call already decided."""

APPROVAL_TIMED_OUT = 'ApprovalTimedOut'
"""`ApplicationError.type` of a run whose approval deadline passed with `on_approval_timeout` `park` or `fail`."""

DELEGATE_RESULT_UNAVAILABLE = 'DelegateResultUnavailable'
"""A delegate's child workflow ran before but Temporal no longer has it (past retention): the call fails for good."""

UNENCODABLE_RESULT = 'UnencodableResult'
"""A tool call or model request returned a result Temporal cannot encode: the attempt fails for good."""

UNRESOLVABLE_HISTORY_REFERENCE = 'UnresolvableHistoryReference'
"""A model request's history reference names messages the ledger does not hold: the attempt fails for good."""


class AgentLedgerError(Exception):
    """Base class of every agentledger error.

    Its message never carries a URL's secrets: user information and secret-looking query values of
    every URL in it are redacted (`agentledger._redaction`), so an error is safe to print, log,
    store in the ledger and hand to Temporal.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


class CliError(AgentLedgerError):
    """A command of the `agentledger` command line cannot be carried out as given.

    The command line prints `agentledger: <message>` to stderr and exits with 1, as for any
    `AgentLedgerError`.
    """


class LedgerError(AgentLedgerError):
    """Something went wrong reading or writing the ledger."""


class LedgerUnavailableError(LedgerError):
    """The ledger could not be reached or written, even after retries; nothing was recorded."""


class LedgerCorruptionError(LedgerError):
    """A stored row does not decode (or no longer matches its hash); it is reported, never returned.

    `run_id` names the run when the row is a run record, so a listing that skips it can say which run it was.
    """

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class UnresolvablePayloadReference(LedgerCorruptionError):
    """A payload reference in Temporal's history names content this ledger does not hold (or holds altered).

    Raised where Temporal decodes the payload: an activity attempt fails with it and is retried, a
    workflow task fails with it and is retried, so the run waits (visibly) for the content to be
    restored or for a worker that shares the ledger, instead of failing or running without it.
    """


class MalformedPayloads(AgentLedgerError, ValueError):
    """Payloads sent to be decoded are not well-formed: the request is wrong, not the ledger.

    A body that is not protobuf JSON of payloads, invalid base64, or a reference or `agentledger`
    header whose fields have the wrong type. The codec server answers 400 with the message; a
    well-formed reference the ledger cannot resolve decodes to an error result instead.
    """


class LedgerConfigError(LedgerError):
    """A ledger URL or option is invalid."""


class LedgerPermissionError(LedgerConfigError):
    """The ledger's storage refused this process: a file or directory it may not open or write, S3 access denied.

    Raised at once, never retried: waiting does not grant a permission. The message says what was
    refused and where (never a credential); the fix is the file's or directory's mode and owner, the
    credentials' policy, or opening the ledger read-only for reading.
    """


class LedgerReadOnlyError(LedgerError):
    """A write reached a ledger opened read-only (`read_only=True`, or `?mode=ro` in its URL); nothing was written.

    Readers (the command line's `runs`, `show`, `effects`, the codec server) open the ledger
    read-only, so they neither need write access nor change the file or bucket they read.
    """


class RunNotFoundError(LedgerError, LookupError):
    """No ledger run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f'no ledger run with id {run_id!r}')
        self.run_id = run_id


class UnknownRunIdError(RunNotFoundError):
    """No ledger run goes by this id, tried as each kind of id it may be (a workflow id, a Temporal run id)."""

    def __init__(self, run_id: str, tried: Sequence[str]) -> None:
        super().__init__(run_id)
        self.tried = tuple(tried)
        kinds = ', '.join(self.tried[:-1]) + (' or ' if len(self.tried) > 1 else '') + self.tried[-1]
        self.args = (f'no ledger run goes by {run_id!r} (tried it as a {kinds})',)


class SnapshotNotFoundError(LedgerError, LookupError):
    """No snapshot matches: an unknown or malformed snapshot id, or no valid snapshot at or before a step."""


class DelegateFailedError(AgentLedgerError):
    """A delegate failed for good and its tool was made with `on_failure='raise'`: the orchestrator fails too.

    In Temporal the orchestrator's run then fails with this error type; the child run, whose id this
    carries, has the details.
    """

    def __init__(self, delegate: str, child_run_id: str | None, error_type: str, error_message: str) -> None:
        where = f' (run {child_run_id})' if child_run_id else ''
        super().__init__(f'delegate {delegate!r}{where} failed: {error_type}: {error_message}')
        self.delegate = delegate
        self.child_run_id = child_run_id
        self.error_type = error_type
        self.error_message = error_message


class EffectNotFoundError(AgentLedgerError, LookupError):
    """No once-only effect has this key."""

    def __init__(self, key: str) -> None:
        super().__init__(f'no once-only effect with key {key!r} (list them with `agentledger effects`)')
        self.key = key


class EffectStateError(AgentLedgerError):
    """The effect is not in a state that allows this (resolving an effect that is already done)."""


class EffectBusyError(AgentLedgerError):
    """Another attempt holds a once-only effect and is still acting: its lease is live.

    An attempt that finds the effect held waits for the holder (it renews its lease while it acts)
    until its own start-to-close deadline; then it fails with this error (retryable) and Temporal
    retries it later, when the holder has finished or its lease has run out.
    """

    def __init__(self, key: str, owner: str, lease_until: datetime) -> None:
        super().__init__(
            f'once-only effect {key!r} is held by attempt {owner} that is still acting '
            f'(its lease runs until {lease_until.isoformat()}); retry after it'
        )
        self.key = key


class EffectUnknownError(AgentLedgerError):
    """An attempt died in the middle of a once-only effect and nothing can tell whether it happened.

    The tool attempt fails with this error (type `EffectUnknownError`, retryable) until an operator
    resolves the effect with `agentledger resolve KEY --outcome done|not-done`; the attempt after that
    returns the recorded result or acts. It never guesses.
    """

    def __init__(self, key: str) -> None:
        super().__init__(
            f'once-only effect {key!r} was started by an attempt that did not finish and its outcome is unknown; '
            f'resolve it with `agentledger resolve {key} --outcome done --result JSON` or `--outcome not-done`'
        )
        self.key = key
