#!/usr/bin/env bash
# Every test of the project, in the order a failure is cheapest to find:
# Go unit tests (no engines), the application's own tests against real
# PostgreSQL / nginx / chromium, the workflow linter, then the real pipeline
# (buildkitd + dockerd, offline base images, build, test-e2e) and the fault
# tests that must turn named checks red. Prints the time of each phase.
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/phase.sh
. scripts/lib/engines.sh
. scripts/lib/goflags.sh

declare -A bg_pid=() bg_log=() # background work, by name (below)
cleanup() {
  local rc=$?
  stop_backgrounds
  stop_started_engines
  phase_summary
  if [ $rc = 0 ]; then echo "test.sh: all phases passed"; else echo "test.sh: FAILED (exit $rc)"; fi
  exit $rc
}
trap cleanup EXIT
# install-deps.sh installs Debian's chromium: the browser tests may not skip for want of it.
export KGCI_REQUIRE_CHROMIUM=1
trap 'exit 130' INT
trap 'exit 143' TERM

# Work that runs beside the phases, each with its own log, shown when it is
# waited for. On an early failure or Ctrl-C none of it may outlive us.
background() { # background NAME CMD...: starts CMD
  local name=$1; shift
  bg_log[$name]=$(mktemp /tmp/kgci-background.XXXXXX.log)
  "$@" >"${bg_log[$name]}" 2>&1 &
  bg_pid[$name]=$!
}
wait_background() { # wait_background NAME: its exit status, after its log
  local name=$1 rc=0
  wait "${bg_pid[$name]}" || rc=$?
  echo "$name (in the background): exit $rc; its log:"
  sed 's/^/  | /' "${bg_log[$name]}"
  rm -f "${bg_log[$name]}"
  unset "bg_pid[$name]" "bg_log[$name]"
  return $rc
}
# kill_tree PID: the process and all its descendants. Children are found while
# their parent still lives (an orphan is reparented to init and no longer
# found through it), and signalled before it, so make-base-images.sh runs its
# own clean-up (chroot mounts, temporary trees) when its debootstrap ends.
kill_tree() {
  local c
  for c in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$c"; done
  kill -TERM "$1" 2>/dev/null || true
}
stop_backgrounds() {
  local name
  for name in "${!bg_pid[@]}"; do
    if kill -0 "${bg_pid[$name]}" 2>/dev/null; then
      echo "stopping $name (in the background)"
      kill_tree "${bg_pid[$name]}"
      wait "${bg_pid[$name]}" 2>/dev/null || true
    fi
    rm -f "${bg_log[$name]}"
  done
}

# The module downloads need only Go and the network: they run from the start,
# beside the Debian packages' install (which left the cores 46% idle over its
# 47 s on a fresh machine), instead of at the start of the first Go phase
# (the root module's took 14.5 s there). A go command that needs a module
# the prefetch is still fetching waits for it (GOMODCACHE's lock), and a
# failed prefetch is not fatal: the go commands fetch what they need
# themselves and say why they could not.
prefetch_modules() {
  local t0=$SECONDS
  go mod download && echo "root module downloaded in $((SECONDS - t0))s" &&
    (cd ci/supplychain && go mod download) && echo "supply-chain module downloaded in $((SECONDS - t0))s"
}
background "module downloads" prefetch_modules

phase "install Debian packages" bash scripts/install-deps.sh

# The slowest set-up on a fresh machine, the debootstrap of the offline bases,
# waits on the network and the disk more than the CPU: it runs in the
# background while the Go and application tests run, and is waited for before
# the first phase that needs it. Cached, it takes a second. The Go tests'
# compiling keeps both cores busy (vmstat: 96% over those phases), so no other
# compile runs beside it: two Go builds at once on 2 cores finish no sooner,
# and compile what they share twice.
background "base images" bash scripts/make-base-images.sh

# -vet=all is `go vet ./...` (every package, tests or not) inside the test
# command: go test's own vet pass, after a separate go vet, vetted every
# package twice.
phase "go vet + unit tests" go test -vet=all -count=1 ./...
# The downloads are done by now (133 s in a run with an empty GOMODCACHE,
# against 232 s for the phase above); waiting reports their log.
wait_background "module downloads" ||
  echo "prefetching the modules failed (above); the go commands that need them will say why"
# syft and grype need a newer Go than the Dagger module may declare: their module is
# separate (ci/supplychain), and ./... above does not reach it.
phase "supply-chain module (vet, unit tests)" bash -c 'cd ci/supplychain && go test -vet=all -count=1 ./...'
# The application's tests leave half of the 2 cores idle (vmstat: 50% over
# those 70 s): buildkitd compiles beside them (75 s cold, CPU-bound), as a
# tool of the supply-chain module whose packages it mostly shares, all
# compiled by now.
background "buildkitd build" bash scripts/engines/buildkitd.sh build
phase "backend (pytest, PostgreSQL)" bash scripts/test-backend.sh
phase "frontend (vitest, build)" bash scripts/test-frontend.sh
phase "entrypoint (dash, busybox)" bash scripts/test-entrypoint.sh
phase "nginx + browser" bash scripts/test-nginx.sh
phase "workflow lint" bash scripts/lint-workflows.sh
phase "wait for the buildkitd build" wait_background "buildkitd build"
phase "wait for the base images" wait_background "base images"
phase "start buildkitd" ensure_engine buildkitd
phase "start dockerd" ensure_engine dockerd
# The pipeline sees the engines running and leaves them for the fault tests.
phase "main job (pipeline.sh)" bash scripts/pipeline.sh --profile offline --results results
. /run/kgci/engines.env
export BUILDKIT_HOST DOCKER_HOST
phase "compose up (prod + test overlay)" bash scripts/test-compose.sh --profile offline
# The tests that need buildkitd, the offline bases, dockerd and the loaded
# images: with KGCI_E2E=1 a missing piece fails them instead of skipping.
# -parallel 2: two fault runs at a time (each its own stack); more would only
# queue on 2 cores.
# -vet=off: the first phase vetted these packages.
phase "engine tests + faults (real)" env KGCI_E2E=1 KGCI_SUPPLYCHAIN="$PWD/bin/kgci-supplychain" go test -vet=off -count=1 -timeout 25m -parallel 2 ./ci/buildkit/ ./ci/cmd/kgci/ ./ci/publish/ ./ci/e2etest/
