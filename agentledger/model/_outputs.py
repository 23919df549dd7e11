"""Typing an agent's output again after it crossed Temporal as JSON-compatible data."""

from __future__ import annotations

from typing import Any, Union

from pydantic import TypeAdapter
from pydantic_ai.agent.abstract import AbstractAgent

__all__ = ['output_adapter', 'output_type']


def output_adapter(agent: AbstractAgent[Any, Any] | str) -> TypeAdapter[Any] | None:
    """A validator for the agent's `output_type`, or `None` when only the agent's name is known.

    A workflow result is JSON-compatible data (a dataclass arrives as a dict); validating it against the
    output type gives the caller the value the agent produced. Output specs (`ToolOutput`,
    `NativeOutput`, ...) wrap the type; a plain type or union validates directly; a type pydantic cannot
    validate leaves the data as it arrived. A list of output specs gives their union.
    """
    if isinstance(agent, str):
        return None
    try:
        return TypeAdapter(output_type(agent))
    except Exception:
        return None


def output_type(agent: AbstractAgent[Any, Any]) -> Any:
    """The type of the agent's output: its `output_type` without output specs, a list of them as their union."""
    return _spec_type(getattr(agent, 'output_type', str))


def _spec_type(spec: Any) -> Any:
    """The type an output spec produces: a list of specs (`[str, DeferredToolRequests]`) is their union."""
    if isinstance(spec, list | tuple):
        return Union[tuple(_spec_type(member) for member in spec)]  # noqa: UP007
    return getattr(spec, 'output_type', spec)
