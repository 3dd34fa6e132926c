#!/usr/bin/env bash
# Usage: scripts/engines/smoke.sh
#
# End-to-end check of the offline machinery: needs both engines started
# (buildkitd.sh start, dockerd.sh start) and the base layouts
# (make-base-images.sh). Proves that
#  - buildkitd builds FROM each offline layout (Dockerfile frontend, layout
#    passed as an OCI store), RUN steps work, apt-get works in the python base,
#    the go base has Go and git (the docker base is run for real by
#    ci/e2etest's Dagger checker test);
#  - dockerd loads the postgres and nginx bases as docker-archive tarballs and
#    runs them: postgres via its entrypoint with a scram login, nginx as UID 101
#    with the upstream wget health check.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BASE_DIR="$KGCI_CACHE/base"
[ -f "$ENGINES_ENV" ] || die "$ENGINES_ENV missing: start the engines first (scripts/engines/buildkitd.sh start; scripts/engines/dockerd.sh start)"
. "$ENGINES_ENV"
[ -n "${BUILDKIT_HOST:-}" ] || die "buildkitd not started: scripts/engines/buildkitd.sh start"
[ -n "${DOCKER_HOST:-}" ] || die "dockerd not started: scripts/engines/dockerd.sh start"
for n in python node nginx postgres go; do
  [ -f "$BASE_DIR/$n/index.json" ] || die "base layout $BASE_DIR/$n missing: run scripts/make-base-images.sh"
done
docker=("$KGCI_DOCKER")
buildctl=("$KGCI_BUILDCTL" --addr "$BUILDKIT_HOST")

passed=0
TMP="$(mktemp -d)"
RUN_ID="kgci-smoke-$$"
CONTAINERS=()
cleanup() {
  local rc=$? c
  for c in "${CONTAINERS[@]}"; do "${docker[@]}" rm -f "$c" >/dev/null 2>&1 || true; done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

(cd "$REPO_ROOT" && go build -o "$TMP/baseimage" ./ci/cmd/baseimage) || die "go build ./ci/cmd/baseimage failed"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- BuildKit: FROM <offline layout> -----------------------------------------
build_from() { # build_from NAME DOCKERFILE-BODY -> output dir $TMP/out-NAME
  local name="$1" body="$2" dgst t0=$SECONDS
  dgst="$("$TMP/baseimage" digest --layout "$BASE_DIR/$name")"
  mkdir -p "$TMP/ctx-$name"
  printf 'FROM %s\n%s\n' "$name" "$body" >"$TMP/ctx-$name/Dockerfile"
  "${buildctl[@]}" build --progress=plain \
    --frontend dockerfile.v0 \
    --local context="$TMP/ctx-$name" --local dockerfile="$TMP/ctx-$name" \
    --oci-layout "$name=$BASE_DIR/$name" \
    --opt "context:$name=oci-layout://$name@$dgst" \
    --output "type=local,dest=$TMP/out-$name" >"$TMP/build-$name.log" 2>&1 || {
    tail -n 30 "$TMP/build-$name.log" >&2; die "buildctl build FROM the $name layout failed"; }
  log "buildkit: built FROM $name ($dgst) in $((SECONDS - t0))s"
}

build_from python 'RUN python3 -c "import sys; print(sys.version.split()[0])" > /python-version
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends curl >/dev/null && curl --version | head -1 > /curl-version'
case "$(cat "$TMP/out-python/python-version")" in 3.11.*) ;; *) die "python base: unexpected version $(cat "$TMP/out-python/python-version")" ;; esac
grep -q '^curl ' "$TMP/out-python/curl-version" || die "python base: apt-get install curl did not give a curl"
log "python: $(cat "$TMP/out-python/python-version"), apt-get install curl ok ($(cut -d' ' -f1-2 "$TMP/out-python/curl-version"))"
passed=$((passed + 1))

build_from node 'RUN node --version > /node-version && npm --version > /npm-version && id -u node > /node-uid'
grep -q '^v20\.' "$TMP/out-node/node-version" || die "node base: unexpected node $(cat "$TMP/out-node/node-version")"
log "node: $(cat "$TMP/out-node/node-version"), npm $(cat "$TMP/out-node/npm-version"), user node uid $(cat "$TMP/out-node/node-uid")"
passed=$((passed + 1))

build_from nginx 'RUN nginx -t 2>/nginx-t && nginx -v 2>/nginx-v && id -u nginx > /nginx-uid'
grep -q 'test is successful' "$TMP/out-nginx/nginx-t" || die "nginx base: nginx -t failed: $(cat "$TMP/out-nginx/nginx-t")"
log "nginx: $(cat "$TMP/out-nginx/nginx-v"), nginx -t ok, uid $(cat "$TMP/out-nginx/nginx-uid")"
passed=$((passed + 1))

# The Dagger path's Go base (builds kgci, reads the commit time with git).
build_from go 'RUN go version > /go-version && git --version > /git-version && go env GOTOOLCHAIN GOPATH > /go-env'
grep -q '^go version go1\.' "$TMP/out-go/go-version" || die "go base: unexpected $(cat "$TMP/out-go/go-version")"
[ "$(tr '\n' ' ' <"$TMP/out-go/go-env")" = "local /go " ] || die "go base: GOTOOLCHAIN/GOPATH are $(cat "$TMP/out-go/go-env"), want local and /go"
log "go: $(cat "$TMP/out-go/go-version"), $(cat "$TMP/out-go/git-version")"
passed=$((passed + 1))

# --- Docker: load and run -----------------------------------------------------
load() { # load NAME TAG
  local t0=$SECONDS
  "$TMP/baseimage" docker-archive --layout "$BASE_DIR/$1" --tag "$2" --out "$TMP/$1.tar"
  "${docker[@]}" load -i "$TMP/$1.tar" >/dev/null || die "docker load of the $1 docker-archive failed"
  log "docker: loaded $2 in $((SECONDS - t0))s ($(du -h "$TMP/$1.tar" | cut -f1) tarball)"
}

load postgres kidney-base/postgres:offline
port="$(free_port)"
c="$RUN_ID-postgres"; CONTAINERS+=("$c")
"${docker[@]}" run -d --name "$c" -p "127.0.0.1:$port:5432" \
  -e POSTGRES_USER=kidney_user -e POSTGRES_PASSWORD=smoke-pw -e POSTGRES_DB=kidney_genetics \
  kidney-base/postgres:offline >/dev/null
t0=$SECONDS
until "${docker[@]}" exec "$c" pg_isready -q -h 127.0.0.1 -U kidney_user -d kidney_genetics; do
  [ $((SECONDS - t0)) -lt 60 ] || { "${docker[@]}" logs "$c" 2>&1 | tail -n 30 >&2; die "postgres container not ready after 60s"; }
  "${docker[@]}" inspect -f '{{.State.Running}}' "$c" | grep -q true || { "${docker[@]}" logs "$c" 2>&1 | tail -n 30 >&2; die "postgres container exited"; }
  sleep 0.5
done
# Over the published port from another container would need a network; the
# password check goes over TCP inside the container instead.
got="$("${docker[@]}" exec -e PGPASSWORD=smoke-pw "$c" psql -h 127.0.0.1 -U kidney_user -d kidney_genetics -tAc 'select current_user')"
[ "$got" = kidney_user ] || die "postgres: scram login as kidney_user failed ('$got')"
! "${docker[@]}" exec -e PGPASSWORD=wrong "$c" psql -h 127.0.0.1 -U kidney_user -d kidney_genetics -tAc 'select 1' >/dev/null 2>&1 ||
  die "postgres: a wrong password was accepted"
# The entrypoint must exec the server as the postgres user, as PID 1 (signals).
pid1="$("${docker[@]}" exec "$c" stat -c '%U %n' /proc/1) $("${docker[@]}" exec "$c" cat /proc/1/comm)"
[ "$pid1" = "postgres /proc/1 postgres" ] || die "postgres: PID 1 should be the postgres server run as postgres, got '$pid1'"
log "postgres: ready in $((SECONDS - t0))s on 127.0.0.1:$port, scram login ok, PID 1 is postgres as user postgres"
passed=$((passed + 1))

load nginx kidney-base/nginx:offline
c="$RUN_ID-nginx"; CONTAINERS+=("$c")
"${docker[@]}" run -d --name "$c" --user 101:101 \
  --health-cmd 'wget --no-verbose --tries=1 --spider http://127.0.0.1:8080/ || exit 1' --health-interval 1s \
  kidney-base/nginx:offline sh -c 'printf "pid /tmp/nginx.pid;\nevents {}\nhttp { client_body_temp_path /tmp/cb; proxy_temp_path /tmp/p; fastcgi_temp_path /tmp/f; uwsgi_temp_path /tmp/u; scgi_temp_path /tmp/s; server { listen 8080; root /usr/share/nginx/html; } }\n" > /tmp/n.conf && exec nginx -c /tmp/n.conf -g "daemon off;"' >/dev/null
t0=$SECONDS
until [ "$("${docker[@]}" inspect -f '{{.State.Health.Status}}' "$c")" = healthy ]; do
  [ $((SECONDS - t0)) -lt 30 ] || { "${docker[@]}" logs "$c" 2>&1 | tail -n 20 >&2; die "nginx container not healthy after 30s"; }
  sleep 0.5
done
log "nginx: healthy as UID $("${docker[@]}" exec "$c" id -u) in $((SECONDS - t0))s"
passed=$((passed + 1))

echo "smoke: $passed passed, 0 failed"
