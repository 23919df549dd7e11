"""Temporal resets as the ledger keeps them: the `run_reset` event, and which steps a reset superseded.

A reset (`temporal workflow reset`, or the Temporal UI's Reset) starts a new Temporal run of the same
ledger run: it keeps the base run's history up to the reset point and runs on from there. What the
base run did after that point no longer counts, so a step the new run ran and accepted again is
accepted once, in the new run; the base run's attempts of it are `superseded`. Pure: the ledger's
reads and `agentledger show` apply the same rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentledger.model._records import Acceptance, StepEvent

__all__ = ['ResetPoint', 'reset_points', 'run_event_for_reset', 'superseded_activities']


@dataclass(frozen=True)
class ResetPoint:
    """Where and why a Temporal run was reset, as its new run's history says.

    Read from the `WorkflowTaskFailed` event with cause `RESET_WORKFLOW` that Temporal writes into the
    new run's history at the reset point.
    """

    temporal_run_id: str
    """The new Temporal run the reset started."""
    base_run_id: str
    """The Temporal run that was reset."""
    event_id: int
    """The history event the new run was reset at: the workflow task it failed (and ran again from)."""
    reason: str
    """The reason given to the reset (`--reason`)."""
    identity: str
    """Who reset it: the identity of the client that asked."""
    at: datetime
    """When Temporal reset it (the time of the reset point's event in the new run)."""

    def to_json(self) -> dict[str, Any]:
        """The `detail` of a `run_reset` event, as a JSON object (the event itself holds the new run and the time)."""
        return {
            'base_run_id': self.base_run_id,
            'event_id': self.event_id,
            'reason': self.reason,
            'identity': self.identity,
        }

    @classmethod
    def from_event(cls, event: StepEvent) -> ResetPoint | None:
        """The reset a `run_reset` event records; `None` for another event or a detail that does not decode."""
        if event.kind != 'run_reset' or event.detail is None:
            return None
        try:
            data = json.loads(event.detail)
            return cls(
                temporal_run_id=event.temporal_run_id,
                base_run_id=str(data['base_run_id']),
                event_id=int(data['event_id']),
                reason=str(data['reason']),
                identity=str(data['identity']),
                at=event.timestamp,
            )
        except (ValueError, KeyError, TypeError):
            return None


def run_event_for_reset(run_id: str, workflow_id: str, reset: ResetPoint) -> StepEvent:
    """The `run_reset` event of one reset, recorded for the ledger run `run_id`.

    Its key names the new Temporal run and the ledger run (several agent runs of a user's own workflow
    share one Temporal run), so recording the same reset again is a no-op.
    """
    return StepEvent(
        run_id=run_id,
        workflow_id=workflow_id,
        temporal_run_id=reset.temporal_run_id,
        activity_id=f'reset:{run_id}',
        attempt=0,
        kind='run_reset',
        timestamp=reset.at,
        detail=json.dumps(reset.to_json(), sort_keys=True),
        state='accepted',
    )


def reset_points(events: Iterable[StepEvent]) -> dict[str, ResetPoint]:
    """The resets the `run_reset` events among `events` record, by the new Temporal run id."""
    found: dict[str, ResetPoint] = {}
    for event in events:
        reset = ResetPoint.from_event(event)
        if reset is not None:
            found.setdefault(reset.temporal_run_id, reset)
    return found


def superseded_activities(
    events: Sequence[StepEvent], acceptances: Iterable[Acceptance], resets: Mapping[str, ResetPoint]
) -> set[tuple[str, str]]:
    """The `(temporal_run_id, activity_id)` acceptances a reset superseded.

    An activity accepted in a Temporal run that was reset (directly or through a chain of resets) is
    superseded when a run reset from it ran the same step again (has attempts of it) and accepted it:
    the new run's acceptance is the one that counts. The same step is the same activity id (the
    workflow's ids are deterministic), or the same model request step or tool_call_id: a workflow that
    schedules one more activity after a reset (a delegate finding the child it started before) shifts
    the ids after it. Continue-as-new is not a reset and supersedes nothing.
    """
    accepted = {(a.temporal_run_id, a.activity_id) for a in acceptances}
    attempted = {(e.temporal_run_id, e.activity_id) for e in events if e.step_kind is not None}
    steps = {(e.temporal_run_id, e.activity_id): step for e in events if (step := _same_step(e)) is not None}
    accepted_steps: dict[tuple[str, tuple[str, str]], set[str]] = {}
    for (run, activity), step in steps.items():
        if (run, activity) in accepted:
            accepted_steps.setdefault((run, step), set()).add(activity)
    superseded: set[tuple[str, str]] = set()
    for new_run, activity_id in attempted & accepted:
        step = steps.get((new_run, activity_id))
        seen = {new_run}
        reset = resets.get(new_run)
        while reset is not None and reset.base_run_id not in seen:
            base = reset.base_run_id
            if (base, activity_id) in accepted:
                superseded.add((base, activity_id))
            if step is not None:
                superseded.update((base, same) for same in accepted_steps.get((base, step), ()))
            seen.add(base)
            reset = resets.get(base)
    return superseded


def _same_step(event: StepEvent) -> tuple[str, str] | None:
    """What names an activity's step across a reset besides its id: a tool call's id, a model request's step."""
    if event.step_kind == 'tool_call' and event.tool_call_id:
        return ('tool_call', event.tool_call_id)
    if event.step_kind == 'model_request' and event.step is not None:
        return ('model_request', str(event.step))
    return None
