"""The `agentledger` command line, and the Temporal dev server it (and the tests) start.

`main` is the console entry point; `start_dev_server` and `find_temporal_cli` run or build the
Temporal CLI's dev server for the demo, examples, tests and benchmarks.
"""

from agentledger.cli._commands import main
from agentledger.cli._devserver import find_temporal_cli, start_dev_server

__all__ = ['find_temporal_cli', 'main', 'start_dev_server']
