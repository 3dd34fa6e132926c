#!/usr/bin/env bash
# Usage: scripts/engines/buildkitd.sh start|stop|status|build
#
# Runs a native buildkitd (OCI worker on runc, host network) for the offline CI
# profile. buildkitd/buildctl are compiled from the Go module proxy as `tool`s
# of the ci/supplychain module (a plain `go install ...@v0.34.2` is refused
# because buildkit's go.mod has exclude directives) and cached per version.
# They share that module's build list with syft and grype, and CI's Go
# settings (scripts/lib/goflags.sh), so that a fresh machine compiles grpc,
# containerd, otel, the AWS SDK and the standard library once for both.
# `start` leaves the daemon running on purpose; it is only killed by the trap
# if start itself fails.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../lib/goflags.sh"

BUILDKIT_VERSION=v0.34.2
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN_DIR="$KGCI_CACHE/bin/buildkit-$BUILDKIT_VERSION"
SOCK="$KGCI_RUN/buildkitd.sock"
ADDR="unix://$SOCK"
PIDFILE="$KGCI_RUN/buildkitd.pid"
LOGFILE="$KGCI_RUN/buildkitd.log"
STATE_ROOT="$KGCI_CACHE/buildkit"
START_TIMEOUT="${KGCI_BUILDKITD_TIMEOUT:-60}"

ensure_binaries() {
  if [ -x "$BIN_DIR/buildkitd" ] && [ -x "$BIN_DIR/buildctl" ]; then
    log "using cached buildkit $BUILDKIT_VERSION binaries in $BIN_DIR"
    return 0
  fi
  require_cmd go "golang (or the Go toolchain from go.dev)"
  grep -q "github.com/moby/buildkit $BUILDKIT_VERSION" "$REPO_ROOT/ci/supplychain/go.mod" ||
    die "ci/supplychain/go.mod does not pin github.com/moby/buildkit $BUILDKIT_VERSION; keep BUILDKIT_VERSION in $0 and that go.mod in step"
  local t0=$SECONDS
  mkdir -p "$KGCI_CACHE/bin"
  BUILD_TMP="$(mktemp -d "$KGCI_CACHE/bin/.buildkit-build.XXXXXX")"
  trap 'rm -rf "$BUILD_TMP"' EXIT
  log "building buildkitd + buildctl $BUILDKIT_VERSION from the Go module proxy (1.5-5 min on 2 cores)..."
  (cd "$REPO_ROOT/ci/supplychain" &&
    go build -ldflags "-X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION" -o "$BUILD_TMP/" github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl) ||
    die "go build of buildkit $BUILDKIT_VERSION failed (is the Go module proxy reachable? see the output above)"
  chmod 755 "$BUILD_TMP"
  rm -rf "$BIN_DIR"
  mv "$BUILD_TMP" "$BIN_DIR"
  trap - EXIT
  log "built buildkit $BUILDKIT_VERSION in $((SECONDS - t0))s -> $BIN_DIR"
}

answers() { "$BIN_DIR/buildctl" --addr "$ADDR" debug workers >/dev/null 2>&1; }

publish_env() {
  env_set BUILDKIT_HOST "$ADDR"
  env_set KGCI_BUILDCTL "$BIN_DIR/buildctl"
  echo "BUILDKIT_HOST=$ADDR"
}

start() {
  require_root
  require_cmd runc runc
  local t0=$SECONDS pid
  ensure_binaries
  mkdir -p "$KGCI_RUN" "$STATE_ROOT"
  if pid="$(pid_alive "$PIDFILE")"; then
    if wait_until 10 answers; then
      log "buildkitd already running (pid $pid)"
      publish_env
      return 0
    fi
    die "buildkitd (pid $pid from $PIDFILE) is running but does not answer on $ADDR; run '$0 stop' and retry"
  fi
  # A stale socket from a killed daemon would make buildkitd refuse to listen.
  rm -f "$SOCK"
  local t1=$SECONDS
  setsid "$BIN_DIR/buildkitd" \
    --root "$STATE_ROOT" \
    --addr "$ADDR" \
    --oci-worker=true --containerd-worker=false \
    --oci-worker-net=host \
    </dev/null >"$LOGFILE" 2>&1 &
  pid=$!
  echo "$pid" >"$PIDFILE"
  trap 'log "start failed; stopping buildkitd"; stop_pid buildkitd "$PIDFILE" 10' EXIT
  if ! wait_ready "$START_TIMEOUT" "$pid" answers; then
    show_log_tail buildkitd "$LOGFILE"
    running "$pid" || die "buildkitd exited during startup (log above, $LOGFILE)"
    die "buildkitd did not answer on $ADDR within ${START_TIMEOUT}s (log: $LOGFILE)"
  fi
  trap - EXIT
  log "buildkitd ready (pid $pid) in $((SECONDS - t1))s; total start incl. binaries $((SECONDS - t0))s; log $LOGFILE"
  publish_env
}

stop() {
  require_root
  stop_pid buildkitd "$PIDFILE" 30
  rm -f "$SOCK"
  env_unset BUILDKIT_HOST
  env_unset KGCI_BUILDCTL
}

status() {
  local pid
  if pid="$(pid_alive "$PIDFILE")" && answers; then
    echo "buildkitd running (pid $pid), BUILDKIT_HOST=$ADDR"
    "$BIN_DIR/buildctl" --addr "$ADDR" debug workers
  else
    echo "buildkitd not running"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  build) ensure_binaries ;;
  *) echo "usage: $0 start|stop|status|build   (KGCI_CACHE=${KGCI_CACHE})" >&2; exit 2 ;;
esac
