"""The text a run shows in the Temporal UI's workflow list and page: its static summary and static details.

Pure, so the client that starts a run and the workflow that starts a delegate write them alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentledger.model._records import ForkReason

__all__ = ['run_details', 'run_summary']

_SUMMARY_PROMPT = 120
_SEEDED = {'continue': 'continues', 'fork': 'forked from', 'restart': 'restarts the failed'}


def _prompt_text(prompt: object) -> str | None:
    """A prompt as one line: its text, or, for multi-modal content, its text parts and how many others."""
    if prompt is None:
        return None
    if isinstance(prompt, str):
        return ' '.join(prompt.split())
    if isinstance(prompt, Sequence):
        texts = [' '.join(part.split()) for part in prompt if isinstance(part, str)]
        others = len(prompt) - len(texts)
        if others:
            texts.append(f'[{others} non-text part{"s" if others > 1 else ""}]')
        return ' '.join(texts)
    return ' '.join(repr(prompt).split())


def run_summary(agent: str, prompt: object) -> str:
    """`agent: prompt` on one line, the prompt cut to 120 characters: what the workflow list shows."""
    text = _prompt_text(prompt)
    if not text:
        return agent
    if len(text) > _SUMMARY_PROMPT:
        text = text[: _SUMMARY_PROMPT - 1] + '…'
    return f'{agent}: {text}'


def run_details(
    agent: str,
    workflow_id: str,
    *,
    conversation_id: str | None = None,
    parent_run_id: str | None = None,
    seeded_from: tuple[ForkReason, str] | None = None,
) -> str:
    """Markdown for the workflow page: the agent, its conversation and parent, and how to read its ledger run.

    `seeded_from` is `(why, ledger run id)` for a run started from another run's snapshot.
    """
    lines = [f'**agentledger** run of agent `{agent}`', '']
    if conversation_id is not None:
        lines.append(f'- conversation: `{conversation_id}`')
    if parent_run_id is not None:
        lines.append(f'- delegated by ledger run `{parent_run_id}`')
    if seeded_from is not None:
        lines.append(f'- {_SEEDED[seeded_from[0]]} ledger run `{seeded_from[1]}`')
    if lines[-1]:
        lines.append('')
    lines.append(f'Its steps, tool calls and usage: `agentledger show {workflow_id}`')
    return '\n'.join(lines)
