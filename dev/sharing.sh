#!/usr/bin/env bash
# The Delta Sharing test: the real `delta-sharing` Python client (PyPI) reading analytics
# shares from `serve`, in the virtual environment .infra/sharing-venv.
#
# Usage: dev/sharing.sh install        create/refresh the venv (idempotent)
#        dev/sharing.sh test [ARGS]    pytest tests/sharing (ARGS go to pytest)
#        dev/sharing.sh shell          a shell with the venv active
#
# Needs the release binaries (cargo build --release -p tributary-serve -p tributary-ctl) and
# the local infrastructure (Kafka, the registry: `make infra-up`; addresses from .infra/env).
# The install is stamped by the hash of tests/sharing/requirements.txt: a warm run does nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SHARING_VENV:-$ROOT/.infra/sharing-venv}"
REQ="$ROOT/tests/sharing/requirements.txt"
export PYTHONDONTWRITEBYTECODE=1
export TRIBUTARY_BIN="${TRIBUTARY_BIN:-$ROOT/target/release/tributary}"
export SERVE_BIN="${SERVE_BIN:-$ROOT/target/release/serve}"

log() { echo "sharing: $*" >&2; }

install_venv() {
  local stamp="$VENV/.installed-$(sha256sum "$REQ" | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  local start=$SECONDS
  log "installing delta-sharing, deltalake, pandas into ${VENV#"$ROOT"/} (first run, or requirements changed)..."
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  rm -f "$VENV"/.installed-*
  "$VENV/bin/pip" install --disable-pip-version-check --progress-bar off -q -r "$REQ" >&2
  touch "$stamp"
  log "installed in $((SECONDS - start)) s"
}

cmd="${1:-install}"
shift || true
case "$cmd" in
  install)
    install_venv
    ;;
  test)
    install_venv
    if [ -f "$ROOT/.infra/env" ]; then
      set -a; . "$ROOT/.infra/env"; set +a
    fi
    cd "$ROOT/tests/sharing"
    exec "$VENV/bin/python" -m pytest . -p no:cacheprovider -rs "$@"
    ;;
  shell)
    install_venv
    # shellcheck disable=SC1091
    exec bash --rcfile <(echo '[ -f ~/.bashrc ] && . ~/.bashrc'; echo ". '$VENV/bin/activate'") -i
    ;;
  *)
    echo "usage: $0 {install|test|shell} [ARGS]" >&2
    exit 2
    ;;
esac
