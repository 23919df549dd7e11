"""The command line's two tables agree: every parsed command has a handler, and no handler lacks a command."""

from __future__ import annotations

import argparse

from agentledger.cli._commands import _HANDLERS, TEMPORAL_COMMANDS
from agentledger.cli._parser import build_parser


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    [subparsers] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return set(subparsers.choices)


def test_every_command_has_a_handler_and_every_handler_a_command() -> None:
    assert _commands(build_parser()) == set(_HANDLERS)


def test_the_commands_that_start_temporal_are_commands() -> None:
    assert set(TEMPORAL_COMMANDS) <= set(_HANDLERS)
