#!/usr/bin/env bash
# Create .venv with agentledger and its test tools, and make sure a Temporal CLI exists
# (built once from the Go module proxy when missing). Sourced by test.sh and demo.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
.venv/bin/python -c 'from agentledger.cli import find_temporal_cli; print("temporal CLI:", find_temporal_cli())'
