# Sourced by the top-level scripts: start an engine only if it is not
# running, and remember it so that stop_started_engines stops exactly the
# engines this script started (an engine a user started stays up).
started_engines=()
ensure_engine() {
  if bash "scripts/engines/$1.sh" status >/dev/null 2>&1; then
    echo "$1 already running: leaving it as it is"
    return 0
  fi
  # Explicit return: phase runs this in an || context, where set -e is off.
  bash "scripts/engines/$1.sh" start || return $?
  started_engines+=("$1")
}
stop_started_engines() {
  local e
  for e in "${started_engines[@]}"; do bash "scripts/engines/$e.sh" stop || true; done
  started_engines=()
}
