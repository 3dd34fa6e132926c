#!/usr/bin/env bash
# Usage: bench/bench.sh [--out DIR] [--keep]
#
# Build-time benchmark of the offline profile, same machine, same run:
#   kgci build (ci/spec -> LLB -> buildkitd, both images in parallel)
#   vs plain `docker build` of bench/Dockerfile.{backend,frontend} (the same
#   steps as a Dockerfile, both builds in parallel, Docker 20.10's BuildKit)
# for a cold build, a rebuild with no change and a rebuild after a one-line
# backend change; plus kgci cold parallel vs --sequential, and a fresh
# builder importing the build cache from a registry (--cache-from).
#
# Each builder gets its own private daemon with an empty state directory
# under a temp dir (buildkitd; containerd + dockerd on its own bridge, no
# iptables rules), so "cold" really is cold and nothing shared with other
# jobs on the machine is pruned or reconfigured. Base images are the offline layouts
# (scripts/make-base-images.sh), loaded into the private dockerd before any
# timing. The source is `git archive HEAD` in the temp dir: the checkout is
# never modified. Times are wall-clock seconds from bash's `time` around the
# whole command (kgci's includes writing and measuring the tarballs).
#
# Needs root, the packages of scripts/deps/build.apt and engines.apt, Go, and
# network access to the Debian mirror and the npm registry.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KGCI_CACHE="${KGCI_CACHE:-/var/cache/kidney-genetics-ci}"
BASE_DIR="$KGCI_CACHE/base"
BK_BIN="$KGCI_CACHE/bin/buildkit-v0.34.2/buildkitd"
DOCKER_CLI="${BENCH_DOCKER:-/usr/bin/docker}" # Debian's 20.10 CLI: BuildKit without buildx
HOST_CA="${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"
OUT="$REPO_ROOT/results/bench"
KEEP=0

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$(realpath -m "$2")"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "run as root: the private buildkitd and dockerd need namespaces and overlay mounts"
for c in go git runc containerd dockerd "$DOCKER_CLI" findmnt ip python3 curl; do
  command -v "$c" >/dev/null || die "'$c' not found; install the packages in scripts/deps/build.apt and scripts/deps/engines.apt"
done
[ -x "$BK_BIN" ] || die "$BK_BIN missing; run scripts/engines/buildkitd.sh build"
for b in python node nginx; do
  [ -f "$BASE_DIR/$b/index.json" ] || die "offline base '$b' missing at $BASE_DIR/$b; run scripts/make-base-images.sh"
done
[ -f "$HOST_CA" ] || die "CA bundle $HOST_CA missing; set HOST_CA"

WORK="$(mktemp -d /var/tmp/kgci-bench.XXXXXX)"
RUN="$WORK/run"
PIDS=()     # daemons we started, stopped in reverse order
BRIDGE_CREATED=0
cleanup() {
  local rc=$? i pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid="${PIDS[i]}"
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ "$BRIDGE_CREATED" = 1 ]; then ip link del "$BENCH_BRIDGE" 2>/dev/null || true; fi
  if [ "$KEEP" = 1 ]; then
    log "kept $WORK"
  elif findmnt -rn -o TARGET | grep -q "^$WORK/"; then
    log "not removing $WORK: something is still mounted below it (findmnt | grep $WORK)"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$RUN" "$OUT/logs"
LOGS="$OUT/logs"
log "work dir $WORK, results in $OUT"

# ------------------------------------------------------------------ setup ---
log "building kgci and preparing the source (not timed)"
(cd "$REPO_ROOT" && go build -o "$WORK/kgci" ./ci/cmd/kgci && go build -o "$WORK/baseimage" ./ci/cmd/baseimage)
mkdir -p "$WORK/src"
git -C "$REPO_ROOT" archive HEAD | tar -x -C "$WORK/src"
SRC="$WORK/src"
[ -f "$SRC/backend/app/main.py" ] || die "backend/app/main.py is not committed; nothing to change for the rebuild scenario"

BK_SOCK="unix://$RUN/buildkitd.sock"
start_buildkitd() { # start_buildkitd ROOTDIR
  "$BK_BIN" --root "$1" --addr "$BK_SOCK" --oci-worker=true --containerd-worker=false \
    --oci-worker-net=host </dev/null >>"$LOGS/buildkitd.log" 2>&1 &
  BK_PID=$!
  PIDS+=("$BK_PID")
  for _ in $(seq 1 150); do
    [ -S "$RUN/buildkitd.sock" ] && break
    kill -0 "$BK_PID" 2>/dev/null || die "buildkitd exited; see $LOGS/buildkitd.log"
    sleep 0.2
  done
  [ -S "$RUN/buildkitd.sock" ] || die "buildkitd did not listen within 30 s; see $LOGS/buildkitd.log"
}
stop_buildkitd() {
  kill -TERM "$BK_PID"
  for _ in $(seq 1 150); do kill -0 "$BK_PID" 2>/dev/null || return 0; sleep 0.2; done
  die "buildkitd (pid $BK_PID) did not stop"
}

CTR_SOCK="$RUN/containerd.sock"
cat >"$WORK/containerd.toml" <<TOML
version = 2
root = "$WORK/containerd"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CTR_SOCK"
TOML
containerd --config "$WORK/containerd.toml" </dev/null >"$LOGS/containerd.log" 2>&1 &
PIDS+=("$!")
export DOCKER_HOST="unix://$RUN/docker.sock"
export DOCKER_BUILDKIT=1
for _ in $(seq 1 150); do [ -S "$CTR_SOCK" ] && break; sleep 0.2; done
[ -S "$CTR_SOCK" ] || die "private containerd did not start; see $LOGS/containerd.log"
# A bridge of our own and no iptables rules. Never --bridge=none: a dockerd
# started with it deletes docker0, breaking any other Docker engine on the
# machine. Builds use the host network (--network host), like buildkitd.
BENCH_BRIDGE=kgcibench0
BENCH_BRIDGE_CIDR="${BENCH_BRIDGE_CIDR:-172.30.254.1/24}"
! ip link show "$BENCH_BRIDGE" >/dev/null 2>&1 ||
  die "bridge $BENCH_BRIDGE already exists (another bench running, or left over: ip link del $BENCH_BRIDGE)"
python3 -c '
import ipaddress, subprocess, sys
net = ipaddress.ip_interface(sys.argv[1]).network
routes = subprocess.run(["ip", "-4", "-o", "route", "show"], capture_output=True, text=True, check=True).stdout
for line in routes.splitlines():
    dst = line.split()[0]
    if dst != "default" and ipaddress.ip_network(dst, strict=False).overlaps(net):
        sys.exit(f"{net} overlaps the route {line!r}")
' "$BENCH_BRIDGE_CIDR" || die "pick a free subnet with BENCH_BRIDGE_CIDR=ADDR/LEN"
ip link add "$BENCH_BRIDGE" type bridge
BRIDGE_CREATED=1
ip addr add "$BENCH_BRIDGE_CIDR" dev "$BENCH_BRIDGE"
ip link set "$BENCH_BRIDGE" up
echo '{}' >"$WORK/daemon.json"
dockerd --config-file "$WORK/daemon.json" --data-root "$WORK/docker" --exec-root "$RUN/docker-exec" \
  --host "$DOCKER_HOST" --pidfile "$RUN/dockerd.pid" --containerd "$CTR_SOCK" \
  --bridge "$BENCH_BRIDGE" --iptables=false --ip-masq=false </dev/null >"$LOGS/dockerd.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 300); do "$DOCKER_CLI" version >/dev/null 2>&1 && break; sleep 0.2; done
"$DOCKER_CLI" version >/dev/null 2>&1 || die "private dockerd did not start; see $LOGS/dockerd.log"

# A snapshot of the layouts: make-base-images.sh may replace one while the
# benchmark runs, and a new base digest would rebuild everything.
log "snapshotting the offline bases and converting them to docker-archives (not timed)"
mkdir -p "$WORK/base"
for b in python node nginx; do
  cp -a "$BASE_DIR/$b" "$WORK/base/$b"
  "$WORK/baseimage" docker-archive --layout "$WORK/base/$b" --name "$b" --tag "kidney-base/$b:offline" --out "$WORK/$b.tar"
done
BASE_DIR="$WORK/base"

start_buildkitd "$WORK/buildkit-0"

# ----------------------------------------------------------------- timing ---
# timed NAME CMD...: runs CMD with output to logs/NAME.log, records seconds.
declare -A T
timed() {
  local name="$1" t; shift
  log "run: $name"
  local TIMEFORMAT=%R
  if ! t="$( { time "$@" >"$LOGS/$name.log" 2>&1; } 2>&1 )"; then
    tail -n 30 "$LOGS/$name.log" >&2
    die "$name failed (log: $LOGS/$name.log)"
  fi
  T[$name]="$t"
  log "  $name: ${t}s"
}

# snap NAME OUTDIR: keeps the build.json of a scenario (later scenarios
# write into the same directory).
snap() { mkdir -p "$WORK/reports" && cp "$WORK/$2/build.json" "$WORK/reports/$1.json"; }
kgci() { # kgci OUTDIR [extra flags]
  local out="$1"; shift
  "$WORK/kgci" build --profile offline --repo "$SRC" --out "$WORK/$out/images" --report "$WORK/$out/build.json" \
    --buildkit-host "$BK_SOCK" --base-cache "$BASE_DIR" --host-ca "$HOST_CA" --budgets none --progress plain "$@"
}
docker_both() { # parallel, like kgci
  "$DOCKER_CLI" build --network host --progress plain -f "$REPO_ROOT/bench/Dockerfile.backend" \
    --build-arg PYTHON_BASE=kidney-base/python:offline -t kidney_genetics_backend:bench "$SRC" >"$LOGS/$1-backend.log" 2>&1 &
  local b=$!
  "$DOCKER_CLI" build --network host --progress plain -f "$REPO_ROOT/bench/Dockerfile.frontend" \
    --build-arg NODE_BASE=kidney-base/node:offline --build-arg NGINX_BASE=kidney-base/nginx:offline \
    --secret id=host-ca,src="$HOST_CA" -t kidney_genetics_frontend:bench "$SRC" >"$LOGS/$1-frontend.log" 2>&1 &
  local f=$! rc=0
  wait "$b" || { rc=1; tail -n 20 "$LOGS/$1-backend.log" >&2; }
  wait "$f" || { rc=1; tail -n 20 "$LOGS/$1-frontend.log" >&2; }
  return "$rc"
}

# The first build after a while fills the caches between this machine and
# the apt mirror / npm registry (several times slower downloads). Whoever
# builds first would pay for it, so an unmeasured build goes first and every
# compared cold build starts from an empty builder state but warm network.
timed warmup kgci k0
stop_buildkitd
start_buildkitd "$WORK/buildkit-1"
timed kgci-cold kgci k1
snap cold k1
# kgci unpacks the bases from their layouts inside its cold build; docker
# needs them loaded first. Timed separately so both ways can be compared.
load_bases() { for b in python node nginx; do "$DOCKER_CLI" load -i "$WORK/$b.tar" || return 1; done; }
timed docker-load-bases load_bases
# The rebuilds write into the directory of the cold build, as a user's
# rebuild into results/ does: an image whose digest did not change keeps
# its tarball.
timed kgci-nochange kgci k1
snap nochange k1
timed docker-cold docker_both docker-cold
timed docker-nochange docker_both docker-nochange

printf '\n# bench edit %s\n' "$(date +%s)" >>"$SRC/backend/app/main.py"
timed kgci-backend-edit kgci k1
snap backend-edit k1
timed docker-backend-edit docker_both docker-backend-edit

# A no-change rebuild that re-ran a RUN step would make the comparison
# meaningless: in plain progress a cached vertex says CACHED, a run one ends
# in DONE only. (A step taken from an imported cache says CACHED, then
# downloads its layer and ends in DONE too.)
reran() {
  awk '/^#[0-9]+ \[[^]]*\] RUN/ { run[$1] = $0 } /^#[0-9]+ CACHED/ { cached[$1] = 1 }
       /^#[0-9]+ DONE/ && ($1 in run) && !($1 in cached) { print run[$1]; bad = 1 } END { exit !bad }' "$1"
}
for l in "$LOGS/kgci-nochange.log" "$LOGS/docker-nochange-backend.log" "$LOGS/docker-nochange-frontend.log"; do
  if reran "$l" >&2; then die "the no-change rebuild re-ran the RUN steps above; see $l"; fi
done

# A second machine of the team: a new buildkitd with an empty state that
# imports the cache the first one exported to a registry (kgci registry, in
# memory, run here). The export is not timed; the import build must take
# every step from the cache.
REG_ADDR="127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$WORK/kgci" registry --addr "$REG_ADDR" --quiet </dev/null >"$LOGS/registry.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 50); do curl -fsS "http://$REG_ADDR/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$REG_ADDR/v2/" >/dev/null || die "kgci registry did not start; see $LOGS/registry.log"
CACHE_REF="$REG_ADDR/kidney-genetics/cache"
timed cache-export kgci k1 --cache-to "type=registry,ref=$CACHE_REF,mode=max,registry.insecure=true"
stop_buildkitd
start_buildkitd "$WORK/buildkit-3"
timed kgci-fresh-remote-cache kgci k5 --cache-from "type=registry,ref=$CACHE_REF,registry.insecure=true"
snap fresh-remote-cache k5
# The fresh builder must make exactly the images of the builder that exported
# the cache: a RUN step that ran again would give a new layer, and so a new
# digest. (Plain progress is no proof here: a step whose layers the export
# downloads from the cache is sometimes printed without CACHED.)
python3 - "$WORK/k1/build.json" "$WORK/k5/build.json" <<'PY' || die "the fresh builder did not reproduce the images it imported; see $LOGS/kgci-fresh-remote-cache.log"
import json, sys
a, b = ({i["name"]: i["config_digest"] for i in json.load(open(p))["images"]} for p in sys.argv[1:])
for n in a:
    if a[n] != b.get(n):
        sys.exit(f"{n}: {a[n]} from the exporting builder, {b.get(n)} from the fresh one")
PY

log "restarting buildkitd on an empty state for the sequential cold build"
stop_buildkitd
start_buildkitd "$WORK/buildkit-2"
timed kgci-cold-sequential kgci k4 --sequential
snap cold-sequential k4

# ----------------------------------------------------------------- report ---
size_of() { # docker image size in MB (uncompressed, as docker reports it)
  "$DOCKER_CLI" image inspect -f '{{.Size}}' "$1" | awk '{printf "%.1f", $1/1e6}'
}
kgci_size() { # kgci_size BUILD_JSON NAME -> uncompressed MB
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.1f" % (next(i for i in d["images"] if i["name"]==sys.argv[2])["uncompressed_bytes"]/1e6))' "$1" "$2"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }
# kgci's own solve + export time (build.json), without process start and
# the measuring of the tarballs.
solve() { python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))["wall_seconds"])' "$WORK/reports/$1.json"; }

{
  echo "# Build benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, revision $(git -C "$REPO_ROOT" rev-parse --short HEAD))"
  echo
  echo "Offline profile, both images. kgci: ci/spec -> LLB -> private buildkitd v0.34.2, images built in parallel."
  echo "docker build: bench/Dockerfile.{backend,frontend} on a private Docker $("$DOCKER_CLI" version -f '{{.Server.Version}}') (BuildKit), both builds in parallel."
  echo "Wall-clock seconds (bash time)."
  echo
  # Every timed scenario in one table: what kgci took, and the baseline measured in the same
  # run (docker build of the same steps, or kgci itself with --sequential).
  echo "| scenario | kgci build (s) | of which solve + export (s) | baseline | baseline (s) | baseline / kgci |"
  echo "|---|---:|---:|---|---:|---:|"
  for s in cold nochange backend-edit; do
    label=$s
    [ "$s" = nochange ] && label="no change"
    [ "$s" = backend-edit ] && label="one-line backend change"
    echo "| $label | ${T[kgci-$s]} | $(solve "$s") | docker build | ${T[docker-$s]} | $(ratio "${T[docker-$s]}" "${T[kgci-$s]}") |"
  done
  cold_load="$(add "${T[docker-cold]}" "${T[docker-load-bases]}")"
  echo "| cold | ${T[kgci-cold]} | $(solve cold) | \`docker load\` of the bases (${T[docker-load-bases]} s) + docker build | $cold_load | $(ratio "$cold_load" "${T[kgci-cold]}") |"
  echo "| cold | ${T[kgci-cold]} | $(solve cold) | kgci build --sequential | ${T[kgci-cold-sequential]} | $(ratio "${T[kgci-cold-sequential]}" "${T[kgci-cold]}") |"
  echo "| fresh builder, warm registry cache | ${T[kgci-fresh-remote-cache]} | $(solve fresh-remote-cache) | kgci no-change rebuild on a warm builder | ${T[kgci-nochange]} | $(ratio "${T[kgci-nochange]}" "${T[kgci-fresh-remote-cache]}") |"
  echo
  echo "Ratio > 1: the baseline is slower than kgci."
  echo "kgci build = the whole command: solve, export docker-archive tarballs, then read them back for sizes;"
  echo "a rebuild writes into the cold build's directory and keeps the tarball of an image whose config digest did not change."
  echo "Every cold build starts from an empty builder state after an unmeasured warm-up build (${T[warmup]} s)"
  echo "that fills the network caches towards the apt mirror and the npm registry."
  echo "docker build leaves the images in Docker's store and exports nothing."
  echo "Fresh builder: a new buildkitd with an empty state imports the cache that \`kgci build --cache-to type=registry,mode=max\`"
  echo "exported (${T[cache-export]} s, not in the table) to an in-memory \`kgci registry\` on this machine; it made the same image digests as the exporting builder."
  echo
  echo "| image | kgci uncompressed (MB) | docker build, docker's size (MB) |"
  echo "|---|---:|---:|"
  for n in backend frontend; do
    echo "| $n | $(kgci_size "$WORK/reports/backend-edit.json" "$n") | $(size_of "kidney_genetics_$n:bench") |"
  done
} >"$OUT/bench.md"

python3 - "$OUT/bench.json" <<EOF
import json, sys
t = {$(for k in "${!T[@]}"; do printf '"%s": %s, ' "$k" "${T[$k]}"; done)}
json.dump({"seconds": t}, open(sys.argv[1], "w"), indent=2, sort_keys=True)
EOF
cat "$OUT/bench.md"
log "wrote $OUT/bench.md and $OUT/bench.json (logs in $LOGS)"
