# Sourced by the top-level scripts: run a named phase, print how long it took,
# and keep a table of all phases for the end of the run.
PHASES_REPORT=${PHASES_REPORT:-}
phase() {
  local name=$1; shift
  local start end rc=0
  start=$(date +%s)
  echo
  echo "=== phase: $name ($(date -u +%H:%M:%S))"
  "$@" || rc=$?
  end=$(date +%s)
  PHASES_REPORT+="$(printf '%-28s %5ss  %s' "$name" "$((end - start))" "$([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc)")")"$'\n'
  echo "=== phase: $name took $((end - start))s (exit $rc)"
  return $rc
}
phase_summary() {
  echo
  echo "=== phase timings"
  printf '%s' "$PHASES_REPORT"
}
