#!/usr/bin/env bash
# Full-stack test of the production nginx config: throwaway PostgreSQL + the real backend
# (uvicorn) + Debian's nginx running OUR nginx/nginx.prod.conf as an unprivileged user, with the
# upstream rendered and env-config.js written by the real scripts/docker-entrypoint.sh.
# `kgci check` runs its URL checks against it (health, proxying, WebSocket upgrade and ping/pong,
# no upgrade on /api/, gzip), the same code test-e2e runs on the images; this script adds what
# only a host nginx shows (nginx -t, non-root workers, caching, SPA fallback, security headers)
# and the headless-chromium test (frontend/e2e/), which also sees a database change pushed
# over the WebSocket through nginx.
#
# Usage: scripts/test-nginx.sh
#   E2E_SCREENSHOT=path   where the browser test saves its screenshot
#                         (default frontend/e2e-output/live-event.png)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FRONTEND="$ROOT/frontend"
PY=/usr/bin/python3

die() { echo "test-nginx: ERROR: $*" >&2; exit 1; }
log() { echo "test-nginx: $*"; }

# ---- prerequisites -------------------------------------------------------------------------
for tool in nginx curl node npm psql go; do
  command -v "$tool" >/dev/null || die "'$tool' not found; install the packages in scripts/deps/*.apt (nginx, curl, postgresql-client-15), Node 20 and Go"
done
[ -x /usr/bin/chromium ] || [ -n "${CHROMIUM_PATH:-}" ] || die "/usr/bin/chromium not found; apt-get install -y chromium (or set CHROMIUM_PATH)"
[ -x "$PY" ] || die "$PY not found; apt-get install -y python3"
"$PY" -c 'import fastapi, uvicorn, asyncpg' 2>/dev/null ||
  die "the backend's Python modules are missing; apt-get install -y \$(cat scripts/deps/backend.apt)"
[ -f "$ROOT/backend/app/main.py" ] || die "backend/app/main.py not found"
[ -f "$ROOT/scripts/lib/pg.sh" ] || die "scripts/lib/pg.sh not found"
if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r /etc/ssl/certs/ca-certificates.crt ]; then
  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi

# ---- cleanup of everything started here ---------------------------------------------------
TMP=""
NGINX_PID=""
BACKEND_PID=""
# shellcheck source=lib/pg.sh
source "$ROOT/scripts/lib/pg.sh"

stop_pid() {
  local pid="$1"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ] && [ -n "$TMP" ]; then
    for f in "$TMP/nginx-run/nginx.log" "$TMP/backend.log"; do
      [ -s "$f" ] && { echo "---- last lines of $(basename "$f") ----"; tail -n 25 "$f"; }
    done
  fi
  stop_pid "$NGINX_PID"
  stop_pid "$BACKEND_PID"
  pg_cleanup
  [ -n "$TMP" ] && rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

wait_http() { # URL SECONDS PID: until URL answers 200, or the process dies
  local url="$1" secs="$2" pid="$3"
  for _ in $(seq 1 $((secs * 5))); do
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

T0=$SECONDS
TMP="$(mktemp -d "${TMPDIR:-/tmp}/kgdb-nginx-test.XXXXXX")"
# nginx runs as nobody and must read the html copy and write its run dir.
chmod 755 "$TMP"

# ---- frontend build --------------------------------------------------------------------------
cd "$FRONTEND"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "installing frontend dependencies (npm ci)"
  npm ci --no-audit --no-fund --cache "${NPM_CONFIG_CACHE:-$HOME/.npm}" >"$TMP/npm-ci.log" 2>&1 ||
    { cat "$TMP/npm-ci.log"; die "npm ci failed in frontend/"; }
fi
(unset VITE_API_BASE_URL VITE_WS_URL VITE_ENVIRONMENT; npx --no-install vite build --logLevel warn) ||
  die "vite build failed in frontend/"
cp -r dist "$TMP/html"
cd "$ROOT"
log "frontend built ($((SECONDS - T0)) s)"

# ---- PostgreSQL + backend ------------------------------------------------------------------
pg_setup
BACKEND_PORT="$(free_port)"
(
  cd "$ROOT/backend"
  exec env DATABASE_URL="$DATABASE_URL" "$PY" -m uvicorn app.main:app --host 127.0.0.1 --port "$BACKEND_PORT"
) >"$TMP/backend.log" 2>&1 &
BACKEND_PID=$!
wait_http "http://127.0.0.1:$BACKEND_PORT/api/health" 60 "$BACKEND_PID" ||
  die "backend did not become healthy on port $BACKEND_PORT (see the log above)"
log "backend up on 127.0.0.1:$BACKEND_PORT ($((SECONDS - T0)) s)"

# ---- nginx config rendered by the real entrypoint -----------------------------------------
NGINX_PORT="$(free_port)"
RUN_DIR="$TMP/nginx-run"
mkdir -p "$RUN_DIR"
E2E_ENVIRONMENT="e2e-test"
env BACKEND_UPSTREAM="127.0.0.1:$BACKEND_PORT" NGINX_CONF="$ROOT/nginx/nginx.prod.conf" \
  NGINX_RENDERED_CONF="$TMP/rendered.conf" ENV_CONFIG_PATH="$TMP/html/env-config.js" \
  ENVIRONMENT="$E2E_ENVIRONMENT" \
  sh "$ROOT/scripts/docker-entrypoint.sh" true ||
  die "docker-entrypoint.sh failed to render the config"

# The container layout differs from this host's: move the run dir (/tmp/nginx is shared by
# everything on this machine), the html root and the port into this test's own places.
# Each replacement must hit, so a changed config cannot silently go untested.
subst() { # PATTERN REPLACEMENT EXPECTED_COUNT
  local n
  n="$(grep -c -- "$1" "$TMP/rendered.conf" || true)"
  [ "$n" = "$3" ] || die "expected $3 line(s) matching '$1' in nginx/nginx.prod.conf, found $n"
  sed -i "s#$1#$2#g" "$TMP/rendered.conf"
}
subst '/tmp/nginx/' "$RUN_DIR/" 6
subst 'root /usr/share/nginx/html;' "root $TMP/html;" 1
subst 'listen 8080;' "listen 127.0.0.1:$NGINX_PORT;" 1
grep -q "server 127.0.0.1:$BACKEND_PORT;" "$TMP/rendered.conf" || die "entrypoint did not render the upstream"

# Non-root, as in the container: nginx must not need root for anything in this config.
AS_USER=()
if [ "$(id -u)" = 0 ]; then
  NOBODY_UID="$(id -u nobody)"; NOBODY_GID="$(id -g nobody)"
  chown -R nobody "$RUN_DIR"
  AS_USER=(setpriv --reuid="$NOBODY_UID" --regid="$NOBODY_GID" --clear-groups --)
fi
# -e: the compiled-in error log (/var/log/nginx) is not writable for nobody; in the image it is
# a symlink to stderr. The config itself logs to /dev/stderr and /dev/stdout.
NGINX=(nginx -e stderr -c "$TMP/rendered.conf")

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }

# Log files owned by nobody: nginx re-opens /dev/stderr and /dev/stdout, which needs write
# access to what they point to (in a container, runc hands the stdio pipes to the user).
for f in nginx.log nginx-t.log; do
  : >"$RUN_DIR/$f"
  if [ "$(id -u)" = 0 ]; then chown nobody "$RUN_DIR/$f"; fi
done
if "${AS_USER[@]}" "${NGINX[@]}" -t >"$RUN_DIR/nginx-t.log" 2>&1; then
  ok "nginx -t accepts the rendered config ($(nginx -v 2>&1))"
else
  cat "$RUN_DIR/nginx-t.log"; not_ok "nginx -t on the rendered config"
  die "cannot continue with an invalid nginx config"
fi

"${AS_USER[@]}" "${NGINX[@]}" -g 'daemon off;' >>"$RUN_DIR/nginx.log" 2>&1 &
NGINX_PID=$!
BASE="http://127.0.0.1:$NGINX_PORT"
wait_http "$BASE/health" 20 "$NGINX_PID" || die "nginx did not answer on $BASE/health"
log "nginx up on $BASE as uid $(awk '/^Uid:/ {print $2}' "/proc/$NGINX_PID/status") ($((SECONDS - T0)) s)"

if [ "$(id -u)" = 0 ]; then
  uids="$(for p in "$NGINX_PID" $(pgrep -P "$NGINX_PID"); do awk '/^Uid:/ {print $2}' "/proc/$p/status"; done | sort -u | tr '\n' ' ')"
  if [ "$uids" = "$NOBODY_UID " ]; then ok "nginx master and workers run as nobody (uid $NOBODY_UID)"; else not_ok "nginx uids: $uids"; fi
fi

# ---- HTTP checks ---------------------------------------------------------------------------
fetch() { # writes headers to $TMP/h, body to $TMP/b; prints the status code
  curl -sS --max-time 10 -D "$TMP/h" -o "$TMP/b" -w '%{http_code}' "$@"
}
header() { # NAME: value of that response header in $TMP/h (case-insensitive, last one)
  tr -d '\r' <"$TMP/h" | awk -v n="$(echo "$1" | tr 'A-Z' 'a-z')" -F': ' 'tolower($1) == n { v = substr($0, length($1) + 3) } END { print v }'
}
expect() { # LABEL COMMAND...
  local label="$1"; shift
  if "$@"; then ok "$label"; else not_ok "$label"; fi
}

# The URL checks of kgci test-e2e, by the same code: health (direct and through nginx), WebSocket
# upgrade with a ping/pong round trip, /api/ never upgraded, gzip of the JS bundle and API JSON.
if (cd "$ROOT" && go run ./ci/cmd/kgci check --backend-url "http://127.0.0.1:$BACKEND_PORT" \
    --frontend-url "$BASE" --results "$TMP/kgci-check") >"$TMP/kgci-check.out" 2>&1; then
  sed 's/^/  /' "$TMP/kgci-check.out"; ok "kgci check: health, websocket, gzip"
else
  sed 's/^/  /' "$TMP/kgci-check.out"; not_ok "kgci check (results in the output above)"
fi

# Beyond kgci check: gzip also behind the front proxy, never unasked, and how assets are cached.
# Behind the front proxy, requests carry a Via header; nginx compresses those only with gzip_proxied.
code="$(fetch -H 'Accept-Encoding: gzip' -H 'Via: 1.1 front-proxy' "$BASE/api/genes?page_size=100")"
expect "JSON is gzip-compressed also for requests that came through a proxy (Via)" \
  test "$code $(header Content-Encoding)" = "200 gzip"
code="$(fetch "$BASE/api/genes?page_size=100")"
expect "no gzip without Accept-Encoding" test "$code" = 200 -a -z "$(header Content-Encoding)"

BUNDLE="$(grep -o '/assets/[^"]*\.js' "$TMP/html/index.html" | head -n1)"
code="$(fetch "$BASE$BUNDLE")"
expect "JS bundle $BUNDLE is JavaScript (got $code)" bash -c '[[ "$1" == 200\ *javascript* ]]' _ "$code $(header Content-Type)"
expect "assets are cached for a year, immutable" test "$(header Cache-Control)" = "public, max-age=31536000, immutable"
code="$(fetch "$BASE/assets/does-not-exist.js")"
expect "a missing asset is 404, not index.html (got $code)" test "$code" = 404

code="$(fetch "$BASE/genes/PKD1")"
expect "SPA fallback: /genes/PKD1 serves index.html" \
  test "$code" = 200 -a "$(header Content-Type)" = "text/html" -a "$(cmp -s "$TMP/b" "$TMP/html/index.html" && echo same)" = same
expect "index.html is revalidated on every load" test "$(header Cache-Control)" = "no-cache, must-revalidate"
code="$(fetch "$BASE/")"
expect "/ serves index.html, not cached" \
  test "$code" = 200 -a "$(header Cache-Control)" = "no-cache, must-revalidate" -a "$(cmp -s "$TMP/b" "$TMP/html/index.html" && echo same)" = same

code="$(fetch "$BASE/env-config.js")"
expect "env-config.js: Cache-Control no-store, no-cache, must-revalidate" \
  test "$code $(header Cache-Control)" = "200 no-store, no-cache, must-revalidate"
expect "env-config.js is the file the entrypoint wrote (ENVIRONMENT $E2E_ENVIRONMENT)" \
  grep -q "ENVIRONMENT: \"$E2E_ENVIRONMENT\"" "$TMP/b"
expect "env-config.js is served as UTF-8 JavaScript" bash -c '[[ "$1" == *javascript*charset=utf-8* ]]' _ "$(header Content-Type)"

for path in / /env-config.js "$BUNDLE" /genes/PKD1 /api/health /health; do
  fetch "$BASE$path" >/dev/null
  csp="$(header Content-Security-Policy)"
  if [ "$(header X-Content-Type-Options)" = nosniff ] &&
      [[ "$(header X-Frame-Options)" =~ ^(DENY|SAMEORIGIN)$ ]] &&
      [ -n "$(header Referrer-Policy)" ] &&
      [[ "$csp" == *"default-src 'self'"* && "$csp" == *"connect-src 'self' ws: wss:"* ]] &&
      [ "$(header Server)" = nginx ]; then
    ok "security headers on $path, Server header without version"
  else
    not_ok "security headers on $path: $(tr -d '\r' <"$TMP/h" | tr '\n' '|')"
  fi
done

# ---- browser -------------------------------------------------------------------------------
TRIGGER_CMD="psql '$DATABASE_URL' -X -q -v ON_ERROR_STOP=1 -c \"UPDATE genes SET name = name WHERE approved_symbol = 'PKD1'\""
SHOT="${E2E_SCREENSHOT:-$FRONTEND/e2e-output/live-event.png}"
log "browser test (chromium) against $BASE/"
B0=$SECONDS
if (cd "$FRONTEND" && E2E_BASE_URL="$BASE/" E2E_TRIGGER_CMD="$TRIGGER_CMD" E2E_SCREENSHOT="$SHOT" \
    E2E_EXPECT_ENVIRONMENT="$E2E_ENVIRONMENT" node --test e2e/); then
  ok "browser test ($((SECONDS - B0)) s), screenshot: $SHOT"
else
  not_ok "browser test (node --test frontend/e2e/)"
fi

if grep -qiE '\[(emerg|alert|crit)\]' "$RUN_DIR/nginx.log"; then
  not_ok "nginx logged serious errors: $(grep -iE '\[(emerg|alert|crit)\]' "$RUN_DIR/nginx.log" | head -n 3)"
else
  ok "no emerg/alert/crit in the nginx log"
fi

echo
echo "test-nginx: total $((SECONDS - T0)) s"
echo "test-nginx: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
