#!/usr/bin/env bash
# Command 1: build the extension and run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
exec python examples/demo.py "$@"
