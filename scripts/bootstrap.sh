#!/usr/bin/env bash
# Create the virtualenvs with agentledger and its test tools, and make sure a Temporal CLI exists
# (built once from the Go module proxy when missing). Sourced by test.sh and demo.sh.
#   .venv         the newest supported pydantic-ai (scripts/constraints/newest.txt)
#   .venv-oldest  with --oldest: the oldest supported pydantic-ai (scripts/constraints/oldest.txt), for the tests
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

install() {
    local venv=$1 constraints=$2
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e '.[dev]' -c "$constraints"
}

install .venv scripts/constraints/newest.txt
if [ "${1:-}" = --oldest ]; then
    install .venv-oldest scripts/constraints/oldest.txt
fi
.venv/bin/python -c 'from agentledger.cli import find_temporal_cli; print("temporal CLI:", find_temporal_cli())'
