# Shared helpers for scripts/engines/*.sh. Sourced, not executed.
# Paths are fixed (not mktemp) so that every script and pipeline step on the
# machine finds the same engines; the cache survives between runs, /run does not.

KGCI_CACHE="${KGCI_CACHE:-/var/cache/kidney-genetics-ci}"
# KGCI_RUN is overridable only for testing the scripts beside the real engines.
KGCI_RUN="${KGCI_RUN:-/run/kgci}"
ENGINES_ENV="$KGCI_RUN/engines.env"

# Ctrl-C / kill run the scripts' EXIT traps (cleanup of a half-done start).
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${0##*/}" "$*" >&2; exit 1; }

require_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (engines need overlay mounts, namespaces and iptables); re-run with sudo"
}

require_cmd() { # require_cmd CMD DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 ||
    die "'$1' not found; install it with: apt-get install -y --no-install-recommends $2 (listed in scripts/deps/engines.apt)"
}

# running PID: the process exists and is not a zombie (a daemon this shell
# started and that died stays a zombie until the shell reaps it).
running() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"
  [ "${stat%% *}" != Z ]
}

# pid_alive PIDFILE -> prints the pid and succeeds if that process still runs.
pid_alive() {
  local pid
  [ -s "$1" ] || return 1
  pid="$(cat "$1")"
  [ -n "$pid" ] && running "$pid" && printf '%s\n' "$pid"
}

# wait_until SECONDS CMD... : polls CMD every 0.2 s; fails after SECONDS.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# wait_ready SECONDS PID CMD... : like wait_until, but gives up as soon as PID exits.
wait_ready() {
  local deadline=$((SECONDS + $1)) pid="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    running "$pid" || return 1
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

not_running() { ! running "$1"; }

# stop_pid NAME PIDFILE [SECONDS]: SIGTERM, wait, then SIGKILL; fine if not running.
stop_pid() {
  local name="$1" pidfile="$2" grace="${3:-30}" pid
  if ! pid="$(pid_alive "$pidfile")"; then
    log "$name is not running"
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_until "$grace" not_running "$pid"; then
    log "$name (pid $pid) ignored SIGTERM for ${grace}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 10 not_running "$pid" || die "$name (pid $pid) survived SIGKILL"
  fi
  wait "$pid" 2>/dev/null || true # reap it if this shell started it
  rm -f "$pidfile"
  log "$name stopped (pid $pid)"
}

# env_set KEY VALUE / env_unset KEY: each engine owns its own line of engines.env,
# so buildkitd.sh and dockerd.sh can be started and stopped independently.
env_set() {
  mkdir -p "$KGCI_RUN"
  local tmp="$ENGINES_ENV.$$"
  { [ -f "$ENGINES_ENV" ] && grep -v "^export $1=" "$ENGINES_ENV" || true; echo "export $1=$2"; } >"$tmp"
  mv "$tmp" "$ENGINES_ENV"
}
env_unset() {
  [ -f "$ENGINES_ENV" ] || return 0
  local tmp="$ENGINES_ENV.$$"
  grep -v "^export $1=" "$ENGINES_ENV" >"$tmp" || true
  mv "$tmp" "$ENGINES_ENV"
}

show_log_tail() { # show_log_tail NAME LOGFILE
  log "last lines of $2:"
  tail -n 40 "$2" >&2 2>/dev/null || true
}
