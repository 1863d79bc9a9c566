#!/usr/bin/env bash
# Command 1: build the extension and run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
python examples/demo.py "$@"

# Then an unmodified stdlib program (ThreadingHTTPServer + 200 urllib client threads)
# on OS threads and under `python -m stacklessuv`, side by side.
echo
echo "-- examples/http_fanout.py: plain stdlib, on OS threads vs python -m stacklessuv --"
python examples/compare.py
