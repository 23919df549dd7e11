"""`python -m agentledger`: the `agentledger` command line (see `agentledger.cli`)."""

from agentledger.cli import main

raise SystemExit(main())
