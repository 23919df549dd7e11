#!/usr/bin/env bash
# Create the virtualenvs with agentledger and its test tools, and make sure a Temporal CLI exists
# (built once from the Go module proxy when missing). Sourced by test.sh and demo.sh.
#   .venv         the newest supported pydantic-ai (scripts/constraints/newest.txt)
#   .venv-oldest  with --oldest: the oldest supported pydantic-ai (scripts/constraints/oldest.txt), for the tests
#   --browser     Debian's `chromium` for the browser test (tests/browser), installed when missing; Playwright
#                 drives that browser and never downloads one of its own
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

install_chromium() {
    if [ -n "${AGENTLEDGER_CHROMIUM:-}" ] || [ -x /usr/lib/chromium/chromium ] || command -v chromium >/dev/null; then
        return
    fi
    local as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            as_root=(sudo -n)
        else
            echo "the browser test needs Chromium: install Debian's package as root" \
                "(apt-get install --no-install-recommends chromium) or set AGENTLEDGER_CHROMIUM" >&2
            exit 1
        fi
    fi
    if ! command -v apt-get >/dev/null; then
        echo "the browser test needs Chromium: install it, and set AGENTLEDGER_CHROMIUM to its binary" >&2
        exit 1
    fi
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
}

oldest=false browser=false
for arg in "$@"; do
    case $arg in
        --oldest) oldest=true ;;
        --browser) browser=true ;;
        *) echo "usage: bootstrap.sh [--oldest] [--browser]" >&2; exit 2 ;;
    esac
done

install .venv scripts/constraints/newest.txt
if $oldest; then
    install .venv-oldest scripts/constraints/oldest.txt
fi
if $browser; then
    install_chromium
fi
.venv/bin/python -c 'from agentledger.cli import find_temporal_cli; print("temporal CLI:", find_temporal_cli())'
