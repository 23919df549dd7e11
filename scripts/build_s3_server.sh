#!/usr/bin/env bash
# Print the path of the S3 server the tests and benchmarks run (SeaweedFS's `weed`), building it once per
# machine from the Go module proxy when missing (about 15 minutes on two cores).
#   $AGENTLEDGER_S3_SERVER   a `weed` binary to use instead (printed as it is)
#   otherwise                $(go env GOPATH)/bin/weed-<version>, built from scripts/seaweedfs/
set -euo pipefail
if [ -n "${AGENTLEDGER_S3_SERVER:-}" ]; then
    if [ ! -x "$AGENTLEDGER_S3_SERVER" ]; then
        echo "AGENTLEDGER_S3_SERVER=$AGENTLEDGER_S3_SERVER is not an executable file" >&2
        exit 1
    fi
    echo "$AGENTLEDGER_S3_SERVER"
    exit 0
fi
cd "$(dirname "${BASH_SOURCE[0]}")/seaweedfs"
version=$(sed -n 's|^require github.com/seaweedfs/seaweedfs ||p' go.mod)
target="$(go env GOPATH)/bin/weed-$version"
if [ ! -x "$target" ]; then
    echo "building SeaweedFS $version into $target (once per machine; about 15 minutes)" >&2
    mkdir -p "$(dirname "$target")"
    go build -o "$target.partial" github.com/seaweedfs/seaweedfs/weed
    mv "$target.partial" "$target"
fi
echo "$target"
