#!/usr/bin/env bash
# Install everything and run the test suite against a real Temporal dev server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
.venv/bin/pytest "$@"
