#!/usr/bin/env bash
# Tests scripts/docker-entrypoint.sh under both shells it must support: dash (Debian) and
# busybox sh with ONLY busybox applets on PATH (what nginx:alpine has).
#
# For default, custom and hostile values it checks, by evaluating the written env-config.js
# in node's vm module with a fake `window`, that window._env_ holds exactly the input strings
# and that nothing else ran. It also checks the exec/-c handling and BACKEND_UPSTREAM rendering
# and validation.
#
# Usage: scripts/test-entrypoint.sh       (from anywhere; needs dash, busybox, node)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENTRYPOINT="$ROOT/scripts/docker-entrypoint.sh"
PROD_CONF="$ROOT/nginx/nginx.prod.conf"

for tool in dash busybox node; do
  command -v "$tool" >/dev/null || {
    echo "test-entrypoint: '$tool' not found; install the packages in scripts/deps/frontend.apt (apt-get install -y dash busybox) and Node 20" >&2
    exit 1
  }
done
DASH="$(command -v dash)"
BUSYBOX="$(command -v busybox)"
NODE="$(command -v node)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/kgdb-entrypoint-test.XXXXXX")"
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# busybox applets only, as on alpine; nothing from Debian's coreutils/mawk can sneak in.
BB_BIN="$TMP/bb-bin"
mkdir -p "$BB_BIN"
for applet in sh awk od sed grep mkdir cat id printf tr; do
  ln -s "$BUSYBOX" "$BB_BIN/$applet"
done

# Stand-ins for the exec'd command: record argv so the test can see what would have run.
FAKE_BIN="$TMP/fake-bin"
mkdir -p "$FAKE_BIN"
for name in nginx other-cmd; do
  cat >"$FAKE_BIN/$name" <<EOF
#!$DASH
printf '%s\n' "$name" "\$@" >"\$FAKE_EXEC_LOG"
EOF
  chmod +x "$FAKE_BIN/$name"
done

cat >"$TMP/check-env.cjs" <<'EOF'
// Evaluates env-config.js like a browser would (as a classic script with a global `window`)
// and compares window._env_ with the expected strings passed through the environment.
const fs = require('fs')
const vm = require('vm')
const assert = require('assert')
process.on('uncaughtException', (e) => {
  console.error(e.message.replace(/\n+/g, ' | '))
  process.exit(1)
})

const [file] = process.argv.slice(2)
const src = fs.readFileSync(file, 'utf8')
const expected = {
  API_BASE_URL: process.env.EXP_API_BASE_URL,
  WS_URL: process.env.EXP_WS_URL,
  ENVIRONMENT: process.env.EXP_ENVIRONMENT,
}

const calls = []
const trap = (name) => (...args) => calls.push([name, ...args])
const window = {}
const context = { window, alert: trap('alert'), eval: trap('eval'), fetch: trap('fetch'), document: { write: trap('document.write') } }
vm.createContext(context)
vm.runInContext(src, context, { filename: file, timeout: 1000 })

assert.deepStrictEqual(calls, [], `code ran from the config: ${JSON.stringify(calls)}`)
assert.deepStrictEqual(Object.keys(context).sort(), ['alert', 'document', 'eval', 'fetch', 'window'], 'new globals were created')
assert.deepStrictEqual(Object.keys(window), ['_env_'], 'window got more than _env_')
assert.deepStrictEqual({ ...window._env_ }, expected)
// Even where it is embedded in HTML, nothing may close a <script> or start markup.
assert.ok(!/[<>&\u2028\u2029]/.test(src), 'raw <, >, &, U+2028 or U+2029 in the file')
assert.ok(!/[\u0000-\u0009\u000b-\u001f\u007f]/.test(src), 'raw control character in the file')
assert.strictEqual(src.split('\n').length, 2, 'the file must be exactly one line')
EOF

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }

SHELLS=(dash busybox)

# run_ep SHELL [VAR=value...] -- [args...]: runs the entrypoint with a clean environment.
# Leaves stdout+stderr in $TMP/out, the exec'd argv in $TMP/exec.log, returns its exit status.
run_ep() {
  local shell="$1"; shift
  local -a envs=()
  while [ "$#" -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  local path sh_cmd
  if [ "$shell" = dash ]; then
    path="$FAKE_BIN:/usr/bin:/bin"; sh_cmd=("$DASH")
  else
    path="$FAKE_BIN:$BB_BIN"; sh_cmd=("$BUSYBOX" sh)
  fi
  rm -f "$TMP/exec.log" "$TMP/env-config.js"
  env -i PATH="$path" FAKE_EXEC_LOG="$TMP/exec.log" ENV_CONFIG_PATH="$TMP/env-config.js" \
    NGINX_RENDERED_CONF="$TMP/rendered.conf" "${envs[@]}" \
    "${sh_cmd[@]}" "$ENTRYPOINT" "$@" >"$TMP/out" 2>&1
}

# check_values SHELL LABEL API WS ENV [expected API WS ENV]
check_values() {
  local shell="$1" label="$2" api="$3" ws="$4" envn="$5"
  local e_api="${6:-$3}" e_ws="${7:-$4}" e_env="${8:-$5}"
  if ! run_ep "$shell" API_BASE_URL="$api" WS_URL="$ws" ENVIRONMENT="$envn" -- other-cmd; then
    not_ok "[$shell] $label: entrypoint failed: $(cat "$TMP/out")"; return
  fi
  if EXP_API_BASE_URL="$e_api" EXP_WS_URL="$e_ws" EXP_ENVIRONMENT="$e_env" \
      "$NODE" "$TMP/check-env.cjs" "$TMP/env-config.js" >"$TMP/node.out" 2>&1; then
    ok "[$shell] $label"
  else
    not_ok "[$shell] $label: $(head -c 2000 "$TMP/node.out")"
    echo "       file: $(cat "$TMP/env-config.js")"
  fi
}

LONG="$(printf 'x%.0s' $(seq 1 5000))\"</script>"

for sh in "${SHELLS[@]}"; do
  # Defaults: no variables at all.
  if run_ep "$sh" -- other-cmd &&
      EXP_API_BASE_URL=/api EXP_WS_URL=/ws EXP_ENVIRONMENT=production \
      "$NODE" "$TMP/check-env.cjs" "$TMP/env-config.js" >"$TMP/node.out" 2>&1; then
    ok "[$sh] defaults /api /ws production"
  else
    not_ok "[$sh] defaults: $(cat "$TMP/out" "$TMP/node.out" 2>/dev/null)"
  fi
  check_values "$sh" "empty values fall back to defaults" "" "" "" /api /ws production
  check_values "$sh" "custom values" "https://api.example.org/api" "wss://api.example.org/ws" "staging"
  check_values "$sh" "string break-out" '"; alert(1); //' "'; alert(1); //" '`${alert(1)}`'
  check_values "$sh" "script close tag" '</script><script>alert(1)</script>' '<!--' ']]>&amp;'
  check_values "$sh" "backslashes" 'a\b\\c\' '\"; alert(1); //' '\u0022\x22\n'
  check_values "$sh" "newline, CR, tab" $'line1\nline2' $'a\r\nalert(1)//\n' $'\ttab\t'
  check_values "$sh" "quotes and shell syntax" $'\'single\' "double" `tick`' '$(id) ${HOME} $((1+1))' '%s %d %n %%'
  check_values "$sh" "unicode, U+2028/9, emoji" $'caf\u00e9 \u2028alert(1)\u2029' $'\U0001F600\U0001F9EC \u4e2d\u6587' $'\u00a0\ufeff\u200b'
  check_values "$sh" "control characters" $'\x01\x02\x1b[31m\x7f' $'\x0b\x0c' $'\x1f'
  check_values "$sh" "option-like values" '-n' '-e' '--'
  check_values "$sh" "long value" "$LONG" "/ws" "x"

  # exec handling.
  if run_ep "$sh" -- && [ "$(cat "$TMP/exec.log")" = $'nginx\n-g\ndaemon off;\n-c\n/etc/nginx/nginx.conf' ]; then
    ok "[$sh] no arguments: exec nginx -g 'daemon off;' -c /etc/nginx/nginx.conf"
  else
    not_ok "[$sh] no arguments: got $(cat "$TMP/exec.log" "$TMP/out" 2>/dev/null | tr '\n' ' ')"
  fi
  if run_ep "$sh" NGINX_CONF=/etc/custom.conf -- nginx -t && [ "$(cat "$TMP/exec.log")" = $'nginx\n-t\n-c\n/etc/custom.conf' ]; then
    ok "[$sh] 'nginx -t' gets -c \$NGINX_CONF"
  else
    not_ok "[$sh] 'nginx -t': got $(cat "$TMP/exec.log" "$TMP/out" 2>/dev/null | tr '\n' ' ')"
  fi
  if run_ep "$sh" -- nginx -c /mine.conf -T && [ "$(cat "$TMP/exec.log")" = $'nginx\n-c\n/mine.conf\n-T' ]; then
    ok "[$sh] an explicit -c is left alone"
  else
    not_ok "[$sh] explicit -c: got $(cat "$TMP/exec.log" "$TMP/out" 2>/dev/null | tr '\n' ' ')"
  fi
  if run_ep "$sh" -- other-cmd 'a b' '' '-c' && [ "$(cat "$TMP/exec.log")" = $'other-cmd\na b\n\n-c' ]; then
    ok "[$sh] other commands are exec'd with their arguments unchanged"
  else
    not_ok "[$sh] other command: got $(cat "$TMP/exec.log" "$TMP/out" 2>/dev/null | tr '\n' ' ')"
  fi

  # BACKEND_UPSTREAM rendering.
  rm -f "$TMP/rendered.conf"
  if run_ep "$sh" NGINX_CONF="$PROD_CONF" BACKEND_UPSTREAM=backend-1.internal_x:8001 -- \
      && [ "$(cat "$TMP/exec.log")" = $'nginx\n-g\ndaemon off;\n-c\n'"$TMP/rendered.conf" ] \
      && grep -q '^ *server backend-1.internal_x:8001;' "$TMP/rendered.conf" \
      && ! grep -q 'kidney_genetics_backend:8000' "$TMP/rendered.conf" \
      && [ "$(diff "$PROD_CONF" "$TMP/rendered.conf" | grep -c '^[<>]')" = 2 ]; then
    ok "[$sh] BACKEND_UPSTREAM renders the upstream line only and nginx gets -c <rendered>"
  else
    not_ok "[$sh] BACKEND_UPSTREAM rendering: $(cat "$TMP/exec.log" "$TMP/out" 2>/dev/null | tr '\n' ' ')"
  fi

  for bad in 'backend' 'backend:' ':8000' 'backend:0' 'backend:65536' 'backend:99999999999' 'backend:80a' \
      'a:1:2' 'evil;host:80' 'host:80;}' 'a/b:80' 'a&b:80' '$(id):80' 'back end:80' $'back\nend:80' '[::1]:80'; do
    if run_ep "$sh" NGINX_CONF="$PROD_CONF" BACKEND_UPSTREAM="$bad" -- nginx; then
      not_ok "[$sh] BACKEND_UPSTREAM='$bad' was accepted"
    elif ! grep -q "BACKEND_UPSTREAM" "$TMP/out"; then
      not_ok "[$sh] BACKEND_UPSTREAM='$bad': error does not name the variable: $(cat "$TMP/out")"
    elif [ -e "$TMP/exec.log" ] || [ -e "$TMP/env-config.js" ]; then
      not_ok "[$sh] BACKEND_UPSTREAM='$bad': rejected, but only after writing files or running nginx"
    else
      ok "[$sh] BACKEND_UPSTREAM='${bad//$'\n'/\\n}' rejected: $(head -n1 "$TMP/out")"
    fi
  done
  if run_ep "$sh" BACKEND_UPSTREAM=backend:8000 NGINX_CONF=/etc/hostname -- nginx; then
    not_ok "[$sh] a config without the upstream literal was accepted"
  else
    ok "[$sh] config without the literal rejected: $(head -n1 "$TMP/out")"
  fi
  if run_ep "$sh" ENV_CONFIG_PATH="$TMP/no/such/dir/env-config.js" -- other-cmd; then
    not_ok "[$sh] unwritable ENV_CONFIG_PATH was accepted"
  elif grep -q 'cannot write' "$TMP/out" && [ ! -e "$TMP/exec.log" ]; then
    ok "[$sh] unwritable ENV_CONFIG_PATH stops start-up: $(head -n1 "$TMP/out")"
  else
    not_ok "[$sh] unwritable ENV_CONFIG_PATH: $(cat "$TMP/out")"
  fi
done

echo
echo "test-entrypoint: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
