#!/usr/bin/env bash
# Install agentledger and run the demo: a dev server it starts itself, a worker, one agent run,
# and the run's timeline from the SQLite ledger.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
.venv/bin/agentledger demo "$@"
