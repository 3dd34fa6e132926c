# shellcheck shell=bash
# Sourced by the top-level scripts: run a named phase, print how long it took
# and how busy the machine's cores were meanwhile, and keep a table of all
# phases for the end of the run. A phase that leaves the cores idle is where
# background work can overlap; a busy one is cut only by doing less.
PHASES_REPORT=${PHASES_REPORT:-}
# cpu_jiffies: "busy total" over all cores since boot (/proc/stat), or nothing.
cpu_jiffies() {
  [ -r /proc/stat ] && awk '/^cpu /{b=$2+$3+$4+$7+$8+$9; print b, b+$5+$6; exit}' /proc/stat
}
# cores_busy BEFORE AFTER: "NN% busy" between two cpu_jiffies readings.
cores_busy() {
  local b0 t0 b1 t1
  read -r b0 t0 <<<"$1"
  read -r b1 t1 <<<"$2"
  if [ -n "$t0" ] && [ -n "$t1" ] && [ "$t1" -gt "$t0" ]; then
    echo "$(( (b1 - b0) * 100 / (t1 - t0) ))% busy"
  else
    echo "busy: n/a"
  fi
}
phase() {
  local name=$1; shift
  local start end rc=0 j0 busy
  start=$(date +%s)
  j0=$(cpu_jiffies || true)
  echo
  echo "=== phase: $name ($(date -u +%H:%M:%S))"
  "$@" || rc=$?
  end=$(date +%s)
  busy=$(cores_busy "$j0" "$(cpu_jiffies || true)")
  PHASES_REPORT+="$(printf '%-28s %5ss  %-9s %s' "$name" "$((end - start))" "$busy" "$([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc)")")"$'\n'
  echo "=== phase: $name took $((end - start))s, cores $busy (exit $rc)"
  return $rc
}
phase_summary() {
  echo
  echo "=== phase timings (cores: the machine's, all processes)"
  printf '%s' "$PHASES_REPORT"
}
