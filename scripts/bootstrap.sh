#!/usr/bin/env bash
# Shared setup for the two README commands: a local venv with the build and
# test tools, libclang for bindgen, and the extension built into the venv.
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=${PYTHON:-python3}

log() { printf '[bootstrap] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  if ! "$PY" -m venv "$VENV" 2>/dev/null; then
    log "python3 -m venv failed; installing python3-venv"
    apt-get update -qq && apt-get install -y -qq python3-venv
    "$PY" -m venv "$VENV"
  fi
fi
export PATH=$VENV/bin:$PATH
export VIRTUAL_ENV=$VENV

# Python packages the build, tests and benchmarks need (pinned in one place).
REQ=$ROOT/scripts/requirements-dev.txt
STAMP=$VENV/.requirements.sha
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  log "installing $REQ"
  python -m pip install -q --upgrade pip
  python -m pip install -q -r "$REQ"
  echo "$want" > "$STAMP"
fi

# tests/test_clients.py runs a real redis-server (Debian's package).
if ! command -v redis-server >/dev/null; then
  log "installing redis-server"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  apt_install() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
  out=$(apt_install 2>&1 || { $SUDO apt-get update -qq && apt_install; } 2>&1) \
    || { printf '%s\n' "$out" >&2; log "could not install redis-server"; exit 1; }
fi

# bindgen (used by libuv-sys2) loads libclang at build time.
if [ -z "${LIBCLANG_PATH:-}" ]; then
  found=$(ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* 2>/dev/null | grep -v cpp | head -n1 || true)
  if [ -n "$found" ]; then
    export LIBCLANG_PATH=$(dirname "$found")
  else
    # The libclang wheel ships libclang.so: no root or apt needed.
    python -c "import clang" 2>/dev/null || python -m pip install -q libclang
    export LIBCLANG_PATH=$(python -c "import clang, os; print(os.path.join(os.path.dirname(clang.__file__), 'native'))")
    # The wheel has no clang builtin headers (stddef.h); gcc's serve as well.
    export BINDGEN_EXTRA_CLANG_ARGS="${BINDGEN_EXTRA_CLANG_ARGS:-} -I$(gcc -print-file-name=include)"
  fi
fi
log "LIBCLANG_PATH=$LIBCLANG_PATH"

if ! command -v cargo >/dev/null; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH=$HOME/.cargo/bin:$PATH
fi

log "building the extension (maturin develop --release)"
maturin develop --release -q >&2 || { log "build failed"; exit 1; }
python -c "import stacklessuv._uv" || { log "the built module does not import"; exit 1; }
