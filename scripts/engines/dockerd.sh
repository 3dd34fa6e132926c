#!/usr/bin/env bash
# Usage: scripts/engines/dockerd.sh start|stop|status
#
# Runs Debian's Docker engine (docker.io 20.10, API 1.41) for the offline CI
# profile: a private containerd and dockerd with their own data roots under
# $KGCI_CACHE and sockets under /run/kgci, so nothing clashes with a system
# Docker. `start` leaves both daemons running on purpose; the trap only cleans
# up what a failed start left behind.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SOCK="$KGCI_RUN/docker.sock"
export DOCKER_HOST="unix://$SOCK"
CTR_SOCK="$KGCI_RUN/containerd.sock"
CTR_PIDFILE="$KGCI_RUN/containerd.pid"
CTR_LOG="$KGCI_RUN/containerd.log"
CTR_CONFIG="$KGCI_RUN/containerd.toml"
PIDFILE="$KGCI_RUN/dockerd.pid"
LOGFILE="$KGCI_RUN/dockerd.log"
DAEMON_JSON="$KGCI_RUN/daemon.json"
START_TIMEOUT="${KGCI_DOCKERD_TIMEOUT:-60}"
# Our own bridge instead of docker0: any other dockerd started with
# --bridge=none deletes docker0 at its start-up, which left this one unable to
# start containers. A bridge named otherwise is never touched by it.
BRIDGE=kgci0
BRIDGE_CIDR="${KGCI_DOCKER_BRIDGE_CIDR:-172.17.0.1/16}"

# /usr/local/bin/docker (a newer CLI) may come first on PATH; it negotiates the
# API version down to dockerd 20.10's 1.41. If it cannot, Debian's own client
# at /usr/bin/docker always matches.
docker_cli() {
  local c
  for c in "$(command -v docker 2>/dev/null || true)" /usr/bin/docker; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    if "$c" version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; then
      echo "$c"; return 0
    fi
  done
  return 1
}

ctr_answers() { [ -S "$CTR_SOCK" ] && ctr --address "$CTR_SOCK" version >/dev/null 2>&1; }
docker_answers() { [ -S "$SOCK" ] && docker_cli >/dev/null; }

publish_env() {
  local cli; cli="$(docker_cli)"
  env_set DOCKER_HOST "$DOCKER_HOST"
  env_set KGCI_DOCKER "$cli"
  echo "DOCKER_HOST=$DOCKER_HOST"
}

start_containerd() {
  local pid
  if pid="$(pid_alive "$CTR_PIDFILE")"; then
    wait_until 10 ctr_answers || die "containerd (pid $pid) is running but not answering on $CTR_SOCK; run '$0 stop' and retry"
    log "containerd already running (pid $pid)"
    return 0
  fi
  mkdir -p "$KGCI_CACHE/containerd" "$KGCI_RUN/containerd"
  # Our own config so /etc/containerd/config.toml (CRI, /var/lib paths) never applies.
  cat >"$CTR_CONFIG" <<TOML
version = 2
root = "$KGCI_CACHE/containerd/root"
state = "$KGCI_RUN/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTR_SOCK"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$KGCI_CACHE/containerd/opt"
TOML
  rm -f "$CTR_SOCK" "$CTR_SOCK.ttrpc"
  setsid containerd --config "$CTR_CONFIG" </dev/null >"$CTR_LOG" 2>&1 &
  pid=$!
  echo "$pid" >"$CTR_PIDFILE"
  STARTED_CTR=$pid
  if ! wait_ready "$START_TIMEOUT" "$pid" ctr_answers; then
    show_log_tail containerd "$CTR_LOG"
    running "$pid" || die "containerd exited during startup (log above, $CTR_LOG)"
    die "containerd did not answer on $CTR_SOCK within ${START_TIMEOUT}s (log: $CTR_LOG)"
  fi
  log "containerd ready (pid $pid)"
}

ensure_bridge() {
  require_cmd ip iproute2
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    local net other
    net="$(python3 -c 'import ipaddress,sys; print(ipaddress.ip_interface(sys.argv[1]).network)' "$BRIDGE_CIDR")"
    other="$(ip -4 route show "$net" 2>/dev/null | head -n1)"
    [ -z "$other" ] || die "cannot create bridge $BRIDGE with $BRIDGE_CIDR: the route '$other' already uses $net; set KGCI_DOCKER_BRIDGE_CIDR to a free subnet (e.g. 172.29.0.1/16)"
    ip link add "$BRIDGE" type bridge
    ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
    log "created bridge $BRIDGE ($BRIDGE_CIDR)"
  fi
  ip link set "$BRIDGE" up
}

cleanup_failed_start() {
  if [ -n "${STARTED_DOCKERD:-}" ]; then
    log "start failed; stopping dockerd"
    echo "$STARTED_DOCKERD" >"$PIDFILE"
    stop_pid dockerd "$PIDFILE" 20 || true
  fi
  if [ -n "${STARTED_CTR:-}" ]; then
    log "start failed; stopping containerd"
    stop_pid containerd "$CTR_PIDFILE" 20 || true
  fi
}

start() {
  require_root
  require_cmd dockerd docker.io
  require_cmd containerd containerd
  require_cmd runc runc
  require_cmd iptables iptables
  local t0=$SECONDS pid
  mkdir -p "$KGCI_RUN" "$KGCI_CACHE/docker"
  if pid="$(pid_alive "$PIDFILE")"; then
    wait_until 10 docker_answers || die "dockerd (pid $pid) is running but not answering on $SOCK; run '$0 stop' and retry"
    if ip link show "$BRIDGE" >/dev/null 2>&1 && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--bridge $BRIDGE "; then
      log "dockerd already running (pid $pid)"
      publish_env
      return 0
    fi
    # Containers on the default network cannot start without the bridge.
    log "dockerd (pid $pid) lacks its bridge $BRIDGE (deleted, or started by an older dockerd.sh); restarting it"
    stop_pid dockerd "$PIDFILE" 40
  fi
  ensure_bridge
  trap cleanup_failed_start EXIT
  start_containerd
  echo '{}' >"$DAEMON_JSON"
  rm -f "$SOCK"
  setsid dockerd \
    --config-file "$DAEMON_JSON" \
    --data-root "$KGCI_CACHE/docker" \
    --exec-root "$KGCI_RUN/docker-exec" \
    --host "$DOCKER_HOST" \
    --pidfile "$PIDFILE" \
    --containerd "$CTR_SOCK" \
    --bridge "$BRIDGE" \
    </dev/null >"$LOGFILE" 2>&1 &
  pid=$!
  # dockerd writes $PIDFILE itself (and refuses to start if it exists).
  STARTED_DOCKERD=$pid
  if ! wait_ready "$START_TIMEOUT" "$pid" docker_answers; then
    show_log_tail dockerd "$LOGFILE"
    running "$pid" || die "dockerd exited during startup (log above, $LOGFILE)"
    die "dockerd did not answer on $SOCK within ${START_TIMEOUT}s (log: $LOGFILE)"
  fi
  trap - EXIT
  log "dockerd ready (pid $pid) in $((SECONDS - t0))s; client $(docker_cli), server API $("$(docker_cli)" version --format '{{.Server.APIVersion}}')"
  publish_env
}

stop() {
  require_root
  # dockerd stops its containers first (up to its 15 s shutdown timeout).
  stop_pid dockerd "$PIDFILE" 40
  stop_pid containerd "$CTR_PIDFILE" 20
  rm -f "$SOCK" "$CTR_SOCK" "$CTR_SOCK.ttrpc"
  # The bridge is ours (start made it); leave no interface behind.
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link delete "$BRIDGE" && log "deleted bridge $BRIDGE"
  fi
  env_unset DOCKER_HOST
  env_unset KGCI_DOCKER
}

status() {
  local pid cli
  if pid="$(pid_alive "$PIDFILE")" && cli="$(docker_cli)"; then
    echo "dockerd running (pid $pid), DOCKER_HOST=$DOCKER_HOST, client $cli"
    "$cli" version --format 'server {{.Server.Version}} API {{.Server.APIVersion}}, client {{.Client.Version}}'
  else
    echo "dockerd not running"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status   (KGCI_CACHE=${KGCI_CACHE})" >&2; exit 2 ;;
esac
