#!/usr/bin/env bash
# Brings the production compose file up for real, with the test overlay, on
# the images `kgci build --load` made, and checks what a person deploying it
# would check first: the health-check chain (postgres -> backend -> frontend)
# completes, and `kgci check` passes on the published test ports (health,
# proxying, WebSocket, gzip: the URL checks of kgci test-e2e). kgci test-e2e
# runs its own topology from the same file's settings; this proves the file
# itself works with docker-compose. Everything it creates is
# removed on exit (containers, networks, the named volume).
#
#   DOCKER_HOST=unix:///run/kgci/docker.sock bash scripts/test-compose.sh [--profile offline|upstream]
set -euo pipefail
cd "$(dirname "$0")/.."

profile=offline
[ "${1:-}" = --profile ] && profile=${2:?--profile needs a value}
command -v go >/dev/null || { echo "test-compose: go not found (it runs kgci check)" >&2; exit 1; }
command -v docker-compose >/dev/null || { echo "test-compose: docker-compose not found; apt-get install docker-compose (scripts/deps/e2e.apt)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "test-compose: no Docker engine at ${DOCKER_HOST:-the default socket}; start one with scripts/engines/dockerd.sh start and export DOCKER_HOST" >&2; exit 1; }
for img in kidney_genetics_backend:latest kidney_genetics_frontend:latest; do
  docker image inspect "$img" >/dev/null 2>&1 || { echo "test-compose: image $img missing; run kgci build --load first" >&2; exit 1; }
done

work=$(mktemp -d /tmp/kgci-compose.XXXXXX)
project="kgcicompose$$"
tagged_pg=""
# The compose files are copied next to a throwaway .env.production (env_file
# paths are relative to the compose file), so a real .env.production in the
# checkout is never read or overwritten.
cp docker-compose.prod.yml docker-compose.test.yml "$work/"
# Docker runs a container's first health check one `interval` after it
# starts (10-30 s in the production file), and docker-compose 1.29 knows no
# start_interval: most of this test was waiting. One more overlay, for this
# run only, checks every second; the commands, timeouts and retries, and the
# postgres -> backend -> frontend chain of service_healthy, stay the
# production file's.
cat >"$work/docker-compose.fast-health.yml" <<'YAML'
services:
  postgres:
    healthcheck:
      interval: 1s
  backend:
    healthcheck:
      interval: 1s
  frontend:
    healthcheck:
      interval: 1s
YAML
dc() { docker-compose --env-file "$work/.env.production" -p "$project" -f "$work/docker-compose.prod.yml" -f "$work/docker-compose.test.yml" -f "$work/docker-compose.fast-health.yml" "$@"; }
cleanup() {
  local rc=$?
  if [ $rc != 0 ]; then
    echo "test-compose: FAILED; service logs:" >&2
    dc logs --no-color --tail 40 >&2 || true
  fi
  dc down -v --remove-orphans >/dev/null 2>&1 || true
  [ -n "$tagged_pg" ] && docker rmi "$tagged_pg" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The compose file names the public postgres image; offline, the Debian-made
# stand-in takes its tag for this run only.
if [ "$profile" = offline ] && ! docker image inspect postgres:16-alpine >/dev/null 2>&1; then
  docker image inspect kidney-base/postgres:offline >/dev/null 2>&1 || { echo "test-compose: kidney-base/postgres:offline missing; run kgci test-e2e --profile offline once (it loads it)" >&2; exit 1; }
  docker tag kidney-base/postgres:offline postgres:16-alpine
  tagged_pg=postgres:16-alpine
fi

# A throwaway password: nothing real is ever written to disk.
pw=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
sed "s/change-me/$pw/g" .env.example > "$work/.env.production"

start=$(date +%s)
dc up -d >/dev/null
pass=0 fail=0
ok() { echo "ok   - $*"; pass=$((pass + 1)); }
bad() { echo "FAIL - $*"; fail=$((fail + 1)); }

# docker-compose 1.29 has no --wait: poll the containers' own health.
deadline=$(( $(date +%s) + 150 ))
for c in kidney_genetics_postgres kidney_genetics_backend kidney_genetics_frontend; do
  while :; do
    st=$(docker inspect -f '{{.State.Health.Status}}' "$c" 2>/dev/null || echo missing)
    [ "$st" = healthy ] && break
    if [ "$(date +%s)" -gt "$deadline" ]; then bad "$c healthy (still '$st' after 150 s)"; exit 1; fi
    sleep 1
  done
  ok "$c healthy after $(( $(date +%s) - start ))s"
done

if go run ./ci/cmd/kgci check --backend-url http://127.0.0.1:8001 --frontend-url http://127.0.0.1:8080 --results "$work/kgci-check"; then
  ok "kgci check on the published ports 8001 and 8080"
else
  bad "kgci check on the published ports 8001 and 8080"
fi
body=$(curl -fsS http://127.0.0.1:8001/api/genes?search=PKD1) && [[ $body == *'"symbol":"PKD1"'* ]] && ok "backend published on 127.0.0.1:8001 serves the seed data" || bad "backend on 8001: $body"
body=$(curl -fsS http://127.0.0.1:8080/env-config.js) && [[ $body == *'ENVIRONMENT: "production"'* ]] && ok "env-config.js from .env.production" || bad "env-config.js: $body"
if docker exec kidney_genetics_postgres pg_isready -h 127.0.0.1 >/dev/null; then ok "postgres ready inside its container"; else bad "pg_isready"; fi
# The internal network is internal: no published port of its own, no gateway.
internal=$(docker network inspect -f '{{.Internal}}' kidney_genetics_internal_net)
[ "$internal" = true ] && ok "kidney_genetics_internal_net is internal" || bad "kidney_genetics_internal_net internal=$internal"
user=$(docker inspect -f '{{.Config.User}}' kidney_genetics_backend)
[ "$user" = 1000:1000 ] && ok "backend runs as $user" || bad "backend user '$user'"

echo "test-compose: $pass passed, $fail failed ($(( $(date +%s) - start ))s)"
[ "$fail" = 0 ]
