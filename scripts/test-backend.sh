#!/usr/bin/env bash
# Backend tests against a throwaway PostgreSQL 15 cluster and real uvicorn processes.
# Usage (from anywhere): bash scripts/test-backend.sh [extra pytest args, e.g. -k health -x]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON=/usr/bin/python3  # Debian's interpreter: the first python3 on PATH may lack the packages

missing=""
if [ ! -x "$PYTHON" ]; then
  missing="python3"
elif ! "$PYTHON" -c 'import fastapi, uvicorn, websockets, asyncpg, pytest, httpx' 2>/dev/null; then
  missing="python modules"
fi
if [ -n "$missing" ]; then
  echo "test-backend: $missing missing for $PYTHON; install the backend packages:" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends \$(cat $REPO/scripts/deps/backend.apt)" >&2
  exit 1
fi

# shellcheck source=lib/pg.sh
source "$REPO/scripts/lib/pg.sh"

cleanup() {
  pg_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pg_setup

started=$(date +%s)
rc=0
# PG_SH and PG_DIR (exported by pg_setup) let the outage tests stop and start this cluster.
# The suite writes no bytecode or cache into the checkout.
PYTHONDONTWRITEBYTECODE=1 "$PYTHON" -m pytest backend/tests -q "$@" || rc=$?
echo "test-backend: pytest exit status $rc after $(( $(date +%s) - started ))s"
exit "$rc"
