#!/usr/bin/env bash
# Install everything and run the test suite against a real Temporal dev server: the whole suite on
# the newest supported pydantic-ai (.venv), then the compatibility, hashing, golden-history and
# end-to-end subset on the oldest (.venv-oldest). The whole suite includes the browser test (tests/browser),
# in Debian's Chromium. Arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh --oldest --browser
export AGENTLEDGER_OLDEST_PYTHON="$PWD/.venv-oldest/bin/python"
# The S3 tests run against SeaweedFS, built once per machine when missing.
export AGENTLEDGER_S3_SERVER="${AGENTLEDGER_S3_SERVER:-$(bash scripts/build_s3_server.sh)}"
.venv/bin/pytest "$@"
oldest_suite=(
    tests/test_compat.py
    tests/test_hash_stability.py
    tests/test_journal_hash.py
    tests/test_golden_histories.py
    tests/test_own_workflow_histories.py
    tests/e2e/test_e2e_foundation.py
    tests/e2e/test_e2e_history.py
    tests/e2e/test_e2e_own_setup.py
    tests/e2e/test_e2e_journal.py
    tests/e2e/test_e2e_journal_retries.py
    tests/e2e/test_e2e_tool_journal.py
    tests/e2e/test_e2e_usage.py
    tests/e2e/test_e2e_own_workflows.py
    tests/e2e/test_e2e_own_replay.py
    tests/e2e/test_e2e_approvals.py
    tests/e2e/test_e2e_own_approvals.py
    tests/e2e/test_replay.py
)
.venv-oldest/bin/pytest "$@" "${oldest_suite[@]}"
