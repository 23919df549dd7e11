"""The canonical form hashes are computed over, the same under every supported pydantic-ai release.

pydantic-ai's minor releases add optional fields to messages, parts, request parameters and tool
definitions (2.78 added `ModelResponse.request_timestamp` and `duration`,
`ToolReturnPart.ui_visibility`, `ModelRequestParameters.deferred_capabilities`,
`ToolDefinition.durable` and `ui_visibility`), and dump them as `null` or empty when unused. Its
validators read a missing field as its default, so on those objects `null`, `[]` and `{}` say
nothing a missing key does not. The canonical form leaves such keys out, one level deep: the
fields of a message, of each of its parts, of request parameters and of each tool definition. It
never looks inside a field's value (tool arguments, tool results, metadata, schemas), where `null`
is the user's data.

So the same conversation dumped by 2.68 and by 2.78 has one canonical form, one content address and
one request hash (pinned by `tests/test_hash_stability.py`, run under both ends of the range).
`HASH_FORMAT` names this form; a change to it is a new format number, a deliberate migration.

Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ['HASH_FORMAT', 'canonical_json', 'canonical_message', 'canonical_parameters', 'without_empty']

HASH_FORMAT = 2
"""The canonical form's version. Format 1 (agentledger 0.1.0) hashed pydantic-ai's dump as it was."""

_PARAMETER_TOOL_LISTS = ('function_tools', 'output_tools')


def without_empty(fields: Mapping[str, Any]) -> dict[str, Any]:
    """`fields` without the keys whose value is `None`, `[]` or `{}` (pydantic-ai reads those as absent)."""
    return {key: value for key, value in fields.items() if value is not None and value != [] and value != {}}


def canonical_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A dumped message in canonical form: its fields and its parts' fields without empty values."""
    canonical = without_empty(message)
    parts = message.get('parts')
    if isinstance(parts, list) and parts:
        canonical['parts'] = [without_empty(part) if isinstance(part, Mapping) else part for part in parts]
    return canonical


def canonical_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Dumped `ModelRequestParameters` in canonical form: its fields and its tool definitions' without empty values."""
    canonical = without_empty(parameters)
    for name in _PARAMETER_TOOL_LISTS:
        tools = canonical.get(name)
        if isinstance(tools, list):
            canonical[name] = [without_empty(tool) if isinstance(tool, Mapping) else tool for tool in tools]
    return canonical


def canonical_json(value: Any) -> bytes:
    """The JSON encoding that is hashed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=False).encode()
