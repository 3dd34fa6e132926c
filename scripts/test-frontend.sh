#!/usr/bin/env bash
# Frontend checks: npm ci, vitest unit tests, production build, and assertions on the build
# output (runtime config loaded before the bundle, no API location baked into the bundle).
#
# Usage: scripts/test-frontend.sh      (needs Node >= 20.19 and npm; npm cache in ~/.npm)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FRONTEND="$ROOT/frontend"

die() { echo "test-frontend: ERROR: $*" >&2; exit 1; }

command -v node >/dev/null || die "node not found; install Node 20 (>= 20.19, Vite 8 needs it)"
command -v npm >/dev/null || die "npm not found; it ships with Node 20"
node -e '
  const [maj, min] = process.versions.node.split(".").map(Number)
  process.exit(maj > 20 || (maj === 20 && min >= 19) ? 0 : 1)
' || die "Node $(node -v) is too old: Vite 8 needs >= 20.19 (Debian's nodejs 18 is not enough)"

# A TLS-intercepting proxy re-signs registry traffic; trust the system bundle when present.
if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r /etc/ssl/certs/ca-certificates.crt ]; then
  export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi
# Build-time VITE_* from the caller's shell would be baked into the bundle and defeat the
# "no hard-coded API URL" check below.
unset VITE_API_BASE_URL VITE_WS_URL VITE_ENVIRONMENT

step() {
  local name="$1"; shift
  local start=$SECONDS
  echo "== $name"
  "$@" || die "$name failed (command: $*)"
  echo "== $name: done in $((SECONDS - start)) s"
}

cd "$FRONTEND"
step "npm ci" npm ci --no-audit --no-fund --cache "${NPM_CONFIG_CACHE:-$HOME/.npm}"
step "vitest" npx --no-install vitest run
rm -rf dist
step "vite build" npx --no-install vite build

PASS=0
FAIL=0
check() {
  local label="$1"; shift
  if "$@"; then PASS=$((PASS + 1)); echo "ok   - $label"; else FAIL=$((FAIL + 1)); echo "FAIL - $label"; fi
}

index="dist/index.html"
check "dist/index.html exists" test -f "$index"
check "dist/env-config.js exists (dev defaults, overwritten by the entrypoint)" test -f dist/env-config.js
check "dist/assets has a JS bundle" compgen -G 'dist/assets/*.js' >/dev/null

# Classic <script src="/env-config.js"> (not module/async/defer, so it runs first and blocks)
# must appear before the module bundle.
env_order() {
  node -e '
    const html = require("fs").readFileSync(process.argv[1], "utf8")
    const tags = [...html.matchAll(/<script\b[^>]*>/g)].map((m) => m[0])
    const envIdx = tags.findIndex((t) => /src="\/env-config\.js"/.test(t))
    const bundleIdx = tags.findIndex((t) => /type="module"/.test(t) && /src="\/assets\/[^"]+\.js"/.test(t))
    if (envIdx < 0) throw new Error("no <script src=\"/env-config.js\"> in " + process.argv[1])
    if (bundleIdx < 0) throw new Error("no module bundle script in " + process.argv[1])
    if (/\b(type="module"|async|defer)\b/.test(tags[envIdx])) throw new Error("env-config.js must be a plain blocking script: " + tags[envIdx])
    if (envIdx > bundleIdx) throw new Error("env-config.js comes after the bundle")
    console.log("  " + tags[envIdx] + "  before  " + tags[bundleIdx])
  ' "$index"
}
check "index.html loads /env-config.js before the bundle" env_order

# The bundle must read window._env_ at run time and carry no backend location of its own.
check "bundle reads window._env_" grep -q '_env_' dist/assets/*.js
no_hardcoded_urls() {
  local hits
  hits="$(grep -rnoE 'localhost|127\.0\.0\.1|0\.0\.0\.0|kidney_genetics_backend|:8000|(https?|wss?)://[A-Za-z0-9.-]+(:[0-9]+)?/(api|ws)' dist || true)"
  if [ -n "$hits" ]; then echo "  hard-coded backend locations in dist:"; echo "$hits" | head -n 10; return 1; fi
}
check "dist contains no hard-coded API/WS URL" no_hardcoded_urls
check "no source maps or node_modules paths shipped" bash -c '! compgen -G "dist/assets/*.map" >/dev/null && ! grep -rq node_modules dist/index.html'

echo
echo "test-frontend: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
