"""`python -m agentledger`: the `agentledger` command line (see `agentledger.cli._commands`)."""

from agentledger.cli import main

raise SystemExit(main())
