#!/usr/bin/env bash
# Command 2: build, then run every check and test: formatting and lints, cargo's
# unit tests, pytest, and the CPython compat smoke set. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
PYLIB=$(python -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")
export PYO3_PYTHON=$VIRTUAL_ENV/bin/python
export LD_LIBRARY_PATH=$PYLIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --check
step "cargo clippy"
cargo clippy --all-targets -q -- -D warnings
step "ruff"
ruff check .
ruff format --check .
step "cargo test"
cargo test -q 2>&1 | grep -v '^$'
step "pytest"
python -m pytest -q tests "$@"
if [ -f compat_tests/run.py ]; then
  step "compat smoke set"
  python compat_tests/run.py --smoke
fi
