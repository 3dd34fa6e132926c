#!/bin/sh
# Frontend container entrypoint: writes the runtime config the Vue bundle reads
# (window._env_ in /env-config.js), optionally points nginx at another backend, then
# execs the command (default: nginx in the foreground).
#
# Plain POSIX sh on purpose: it must run under busybox sh (nginx:alpine) and dash (Debian),
# where neither bash nor jq nor python exist.
#
# Environment:
#   API_BASE_URL      default /api
#   WS_URL            default /ws
#   ENVIRONMENT       default production
#   ENV_CONFIG_PATH   default /usr/share/nginx/html/env-config.js
#   NGINX_CONF        nginx config to use or render from; default /etc/nginx/nginx.conf
#   BACKEND_UPSTREAM  host:port; replaces the literal kidney_genetics_backend:8000 in NGINX_CONF,
#                     written to NGINX_RENDERED_CONF (default /tmp/nginx/nginx.conf)
#
# Usage: docker-entrypoint.sh [command args...]
#   With no arguments runs `nginx -g 'daemon off;'`. When the command is nginx and has no -c of
#   its own, `-c <config>` is added so a rendered config is actually used.
set -eu

# Byte-wise processing below must not depend on the container's locale.
LC_ALL=C
export LC_ALL

UPSTREAM_PLACEHOLDER='kidney_genetics_backend:8000'

die() {
    printf 'docker-entrypoint: ERROR: %s\n' "$*" >&2
    exit 1
}

# Prints VALUE as the body of a JavaScript double-quoted string literal. Every character that
# could end the string, start a new statement or close a <script> element is escaped, so no
# environment value can inject code. Other bytes (UTF-8 text, emoji) pass through unchanged.
js_string_body() {
    printf '%s' "$1" | od -An -v -tu1 | awk '
        { for (i = 1; i <= NF; i++) b[n++] = $i + 0 }
        END {
            for (i = 0; i < n; i++) {
                c = b[i]
                # U+2028 / U+2029 (E2 80 A8 / E2 80 A9) end a line in older JS parsers.
                if (c == 226 && i + 2 < n && b[i + 1] == 128 && (b[i + 2] == 168 || b[i + 2] == 169)) {
                    printf "\\u%s", (b[i + 2] == 168 ? "2028" : "2029")
                    i += 2
                } else if (c == 92) { printf "\\\\" }
                else if (c == 34) { printf "\\\"" }
                else if (c == 39) { printf "\\u0027" }
                else if (c == 60) { printf "\\u003c" }
                else if (c == 62) { printf "\\u003e" }
                else if (c == 38) { printf "\\u0026" }
                else if (c == 10) { printf "\\n" }
                else if (c == 13) { printf "\\r" }
                else if (c == 9)  { printf "\\t" }
                else if (c < 32 || c == 127) { printf "\\u%04x", c }
                else { printf "%c", c }
            }
        }'
}

write_env_config() {
    path=${ENV_CONFIG_PATH:-/usr/share/nginx/html/env-config.js}
    api=$(js_string_body "${API_BASE_URL:-/api}")
    ws=$(js_string_body "${WS_URL:-/ws}")
    envname=$(js_string_body "${ENVIRONMENT:-production}")
    { printf 'window._env_ = { API_BASE_URL: "%s", WS_URL: "%s", ENVIRONMENT: "%s" };\n' \
        "$api" "$ws" "$envname"; } 2>/dev/null >"$path" ||
        die "cannot write $path (set ENV_CONFIG_PATH to a writable file, or make it writable for user $(id -un 2>/dev/null || id -u))"
}

validate_upstream() {
    case $1 in
        '' | *[!A-Za-z0-9._:-]* | *:*:* | :* | *:)
            die "BACKEND_UPSTREAM='$1' is not host:port (letters, digits, '.', '-', '_' and one ':port'); example: BACKEND_UPSTREAM=backend:8000" ;;
        *:*) ;;
        *) die "BACKEND_UPSTREAM='$1' has no port; example: BACKEND_UPSTREAM=backend:8000" ;;
    esac
    port=${1##*:}
    case $port in
        *[!0-9]*) die "BACKEND_UPSTREAM='$1': port '$port' is not a number" ;;
    esac
    # Strip leading zeros so that the shell does not read the port as octal.
    port_num=$(printf '%s' "$port" | sed 's/^0*//')
    if [ -z "$port_num" ] || [ "${#port_num}" -gt 5 ] || [ "$port_num" -gt 65535 ]; then
        die "BACKEND_UPSTREAM='$1': port must be between 1 and 65535"
    fi
}

# Reject a bad upstream before touching anything.
[ -z "${BACKEND_UPSTREAM:-}" ] || validate_upstream "$BACKEND_UPSTREAM"

# nginx runs as a non-root user: its pid file and temp paths live here (see nginx.prod.conf).
mkdir -p /tmp/nginx

write_env_config

conf=${NGINX_CONF:-/etc/nginx/nginx.conf}
if [ -n "${BACKEND_UPSTREAM:-}" ]; then
    [ -r "$conf" ] || die "NGINX_CONF=$conf is not readable; cannot render BACKEND_UPSTREAM into it"
    grep -q "$UPSTREAM_PLACEHOLDER" "$conf" ||
        die "$conf does not contain '$UPSTREAM_PLACEHOLDER'; nothing to replace with BACKEND_UPSTREAM"
    rendered=${NGINX_RENDERED_CONF:-/tmp/nginx/nginx.conf}
    # The validated value holds no sed metacharacters ('/', '&', '\'), so it is safe here.
    sed "s/$UPSTREAM_PLACEHOLDER/$BACKEND_UPSTREAM/g" "$conf" >"$rendered" ||
        die "cannot write rendered nginx config $rendered"
    conf=$rendered
fi

if [ "$#" -eq 0 ]; then
    set -- nginx -g 'daemon off;'
fi

if [ "${1##*/}" = nginx ]; then
    has_c=no
    for arg in "$@"; do
        case $arg in -c) has_c=yes ;; esac
    done
    [ "$has_c" = yes ] || set -- "$@" -c "$conf"
fi

exec "$@"
