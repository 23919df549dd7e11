"""The command line's two tables agree: every parsed command has a handler, and no handler lacks a command."""

from __future__ import annotations

import argparse

import pytest

from agentledger.cli._commands import _HANDLERS, TEMPORAL_COMMANDS
from agentledger.cli._parser import build_parser


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    [subparsers] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return set(subparsers.choices)


def test_every_command_has_a_handler_and_every_handler_a_command() -> None:
    assert _commands(build_parser()) == set(_HANDLERS)


def test_the_commands_that_start_temporal_are_commands() -> None:
    assert set(TEMPORAL_COMMANDS) <= set(_HANDLERS)


def test_codec_server_takes_allowed_hosts_and_namespaces() -> None:
    parse = build_parser().parse_args
    args = parse(
        ['codec-server', '--allowed-host', 'codec.example.com:8443', '--allowed-host', '[::1]', '--namespace', 'prod']
    )
    assert args.allowed_host == ['codec.example.com:8443', '[::1]'] and args.namespace == ['prod']
    defaults = parse(['codec-server'])
    assert defaults.allowed_host == [] and defaults.namespace is None
    for wrong in ('codec.example.com:99999', 'codec.example.com:', 'user@codec.example.com'):
        with pytest.raises(SystemExit):
            parse(['codec-server', '--allowed-host', wrong])


def test_reset_and_the_tool_journal_options() -> None:
    parse = build_parser().parse_args
    args = parse(['reset', 'run-1'])
    assert (args.run_id, args.to, args.reason, args.reexecute_tools) == ('run-1', 'first-workflow-task', None, False)
    args = parse(['reset', 'run-1', '--to', 'last-workflow-task', '--reason', 'why', '--reexecute-tools'])
    assert (args.to, args.reason, args.reexecute_tools) == ('last-workflow-task', 'why', True)
    with pytest.raises(SystemExit):
        parse(['reset', 'run-1', '--to', 'the-middle'])
    assert parse(['run', 'agent', 'hi']).reexecute_tools is False
    assert parse(['run', 'agent', 'hi', '--reexecute-tools']).reexecute_tools is True
    assert parse(['worker', '--agent', 'app:agent']).tool_journal is True
    assert parse(['worker', '--agent', 'app:agent', '--no-tool-journal']).tool_journal is False
