#!/usr/bin/env bash
# A project virtual environment for the tests that need Python: the Delta Lake reader check
# (deltalake + pyarrow, another engine reading our tables). Idempotent; prints its path.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PY_VENV:-$ROOT/.infra/pyenv}"
REQ="$ROOT/dev/python-requirements.txt"
stamp="$VENV/.installed-$(sha256sum "$REQ" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Creating the Python environment $VENV (first run only)..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" >&2
  touch "$stamp"
fi
echo "$VENV"
