"""The text runs show in the Temporal UI, and the commands that register the search attributes."""

from __future__ import annotations

from pydantic_ai.messages import BinaryContent

from agentledger.model import SEARCH_ATTRIBUTES, registration_commands
from agentledger.model._run_text import run_details, run_summary


def test_a_summary_is_the_agent_and_one_line_of_the_prompt_cut_to_120_characters() -> None:
    assert run_summary('support', 'Where is\n  my order?') == 'support: Where is my order?'
    long = run_summary('support', 'x' * 300)
    assert long == 'support: ' + 'x' * 119 + '…'
    assert run_summary('support', None) == 'support'
    image = BinaryContent(data=b'\x89PNG', media_type='image/png')
    assert run_summary('vision', ['What is this?', image, image]) == 'vision: What is this? [2 non-text parts]'


def test_details_name_the_agent_its_links_and_the_show_command() -> None:
    text = run_details('writer', 'wf-1', conversation_id='c-1', parent_run_id='run-p', seeded_from=('restart', 'run-a'))
    assert text.splitlines() == [
        '**agentledger** run of agent `writer`',
        '',
        '- conversation: `c-1`',
        '- delegated by ledger run `run-p`',
        '- restarts the failed ledger run `run-a`',
        '',
        'Its steps, tool calls and usage: `agentledger show wf-1`',
    ]
    assert run_details('writer', 'wf-2').splitlines() == [
        '**agentledger** run of agent `writer`',
        '',
        'Its steps, tool calls and usage: `agentledger show wf-2`',
    ]


def test_the_registration_commands_name_each_attribute_as_keyword() -> None:
    names = [key.name for key in SEARCH_ATTRIBUTES]
    temporal, tcld = registration_commands('prod.acct1', names).splitlines()
    assert temporal.startswith('temporal operator search-attribute create --namespace prod.acct1 ')
    assert tcld.startswith('tcld namespace search-attributes add --namespace prod.acct1 ')
    for name in names:
        assert f'--name {name} --type Keyword' in temporal
        assert f'--sa {name}=Keyword' in tcld
    assert names == [
        'AgentLedgerAgent',
        'AgentLedgerRunId',
        'AgentLedgerStatus',
        'AgentLedgerConversationId',
        'AgentLedgerParentRunId',
        'AgentLedgerRestartOf',
    ]
