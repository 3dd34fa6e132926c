#!/usr/bin/env bash
# Usage: scripts/make-base-images.sh [--force] [python|node|nginx|postgres|docker|go ...]
#
# Builds the offline stand-ins for the public base images the upstream profile
# pulls (python:3.11-slim, node:20-alpine, nginx:1.26-alpine, postgres:16-alpine,
# and for the Dagger path docker:27-dind and golang:1.26-bookworm), because no
# container registry is reachable from CI. Each becomes an OCI image
# layout $KGCI_CACHE/base/<name>/ whose single manifest is annotated
# org.opencontainers.image.ref.name=<name>, made from Debian packages:
#   debootstrap minbase (cached as $KGCI_CACHE/rootfs/minbase-bookworm.tar)
#   -> chroot + apt-get -> rootfs tree -> ci/cmd/baseimage -> layout.
# A layout is rebuilt only when missing or when its recipe (the functions below,
# the Go image writer, the files it copies in) changed; --force rebuilds all
# named images and the minbase tarball.
#
# Needs root (debootstrap, chroot, mounts), Go, and the packages in
# scripts/deps/engines.apt. The apt mirror is the host's (debian.sources).
# KGCI_KEEP_WORK=1 keeps the work directory (rootfs trees, test logs) for debugging.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KGCI_CACHE="${KGCI_CACHE:-/var/cache/kidney-genetics-ci}"
BASE_DIR="$KGCI_CACHE/base"
MINBASE_TAR="$KGCI_CACHE/rootfs/minbase-bookworm.tar"
SUITE=bookworm
HOST_SOURCES=/etc/apt/sources.list.d/debian.sources
ALL_IMAGES=(python node nginx postgres docker go)
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf '[make-base-images] %s\n' "$*" >&2; }
die() { printf '[make-base-images] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup ---
WORK=""
MOUNTS=()   # mount points, unmounted in reverse order
BG_PIDS=()  # test servers started inside chroots

cleanup() {
  local rc=$? i
  set +e # best effort: one failing step must not skip the others
  for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -z "${STEP_PID:-}" ] || kill -TERM -- "-$STEP_PID" 2>/dev/null || true
  for pid in "${BG_PIDS[@]}" ${STEP_PID:+"$STEP_PID"}; do wait "$pid" 2>/dev/null || true; done
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null || true
  done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    # debootstrap mounts /proc and /sys in its target; an interrupted run leaves them.
    findmnt -rn -o TARGET | grep "^$WORK/" | sort -r | while read -r m; do umount -l "$m" || true; done
    # Never rm -rf across a mount that is still there (it could be the host's).
    if [ -n "${KGCI_KEEP_WORK:-}" ]; then
      log "KGCI_KEEP_WORK is set: leaving $WORK for inspection"
    elif findmnt -rn -o TARGET | grep -q "^$WORK/"; then
      log "not removing $WORK: something is still mounted below it (see findmnt); unmount it and delete the directory by hand"
      rc=1
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# step CMD...: runs a long command so that a signal to this script is handled
# at once (bash runs traps only between foreground commands, but during
# `wait`); the cleanup trap then stops the command.
# CMD must be a program (not a function): it gets its own session, so the
# whole process tree (dpkg, wget, ...) can be stopped.
STEP_PID=""
step() {
  setsid "$@" &
  STEP_PID=$!
  local rc=0
  wait "$STEP_PID" || rc=$?
  STEP_PID=""
  return "$rc"
}

# --------------------------------------------------------- chroot helpers ---
# Private /proc and a tmpfs /dev with the few nodes package scripts and test
# servers need; the host's /dev is never bind-mounted into a tree we rm -rf.
chroot_mount() {
  local root="$1"
  mkdir -p "$root/proc" "$root/dev"
  mount -t proc proc "$root/proc"; MOUNTS+=("$root/proc")
  mount -t tmpfs -o mode=755,size=64m tmpfs "$root/dev"; MOUNTS+=("$root/dev")
  mknod -m 666 "$root/dev/null" c 1 3
  mknod -m 666 "$root/dev/zero" c 1 5
  mknod -m 666 "$root/dev/full" c 1 7
  mknod -m 666 "$root/dev/random" c 1 8
  mknod -m 666 "$root/dev/urandom" c 1 9
  mknod -m 666 "$root/dev/tty" c 5 0
  ln -s /proc/self/fd "$root/dev/fd"
  ln -s /proc/self/fd/0 "$root/dev/stdin"
  ln -s /proc/self/fd/1 "$root/dev/stdout"
  ln -s /proc/self/fd/2 "$root/dev/stderr"
  mkdir -m 1777 "$root/dev/shm"
  # apt wants a pty for its log; a private devpts instance keeps the host's out.
  mkdir "$root/dev/pts"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$root/dev/pts"; MOUNTS+=("$root/dev/pts")
  ln -s pts/ptmx "$root/dev/ptmx"
}

chroot_umount() {
  local root="$1" i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    case "${MOUNTS[i]}" in
      "$root"/*) umount "${MOUNTS[i]}"; unset 'MOUNTS[i]' ;;
    esac
  done
  MOUNTS=("${MOUNTS[@]}")
}

# Same fixed date as ci/baseimage's mtime clamp, so that e.g. useradd's
# "last password change" in /etc/shadow does not make images differ by day.
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1747699200}"
export SOURCE_DATE_EPOCH

# A clean environment, as a container would have.
CHROOT_ENV=(/usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8
  DEBIAN_FRONTEND=noninteractive SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH")
in_chroot() { # in_chroot ROOT CMD...
  local root="$1"; shift
  chroot "$root" "${CHROOT_ENV[@]}" "$@"
}

# apt_prepare ROOT: the host's apt sources (the reachable mirror) and DNS, no
# service starts, and no docs/man pages/translations, like Debian's slim images.
apt_prepare() {
  local root="$1"
  rm -f "$root/etc/apt/sources.list"
  install -m 644 "$HOST_SOURCES" "$root/etc/apt/sources.list.d/debian.sources"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/kgci-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
CFG
}

apt_install() { # apt_install ROOT PKG...
  local root="$1"; shift
  step chroot "$root" "${CHROOT_ENV[@]}" apt-get update -qq
  step chroot "$root" "${CHROOT_ENV[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# apt_finish ROOT: drop what only the build needed; apt stays usable after
# `apt-get update`, as in the official images.
apt_finish() {
  local root="$1"
  in_chroot "$root" apt-get clean
  rm -f "$root/usr/sbin/policy-rc.d"
  : >"$root/etc/resolv.conf"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
    "$root"/var/log/apt/* "$root"/var/log/dpkg.log "$root"/var/log/alternatives.log \
    "$root"/tmp/* "$root"/var/tmp/* "$root"/root/.cache \
    "$root"/var/cache/ldconfig/aux-cache
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/usr/share/lintian
}

extract_minbase() { # extract_minbase DEST
  mkdir -p "$1"
  tar -C "$1" --numeric-owner -xpf "$MINBASE_TAR"
}

debian_mirror() {
  local uri
  uri="$(awk '/^URIs:/ {print $2; exit}' "$HOST_SOURCES" 2>/dev/null || true)"
  echo "${KGCI_DEBIAN_MIRROR:-${uri:-http://deb.debian.org/debian}}"
}

# ----------------------------------------------------------------- minbase ---
build_minbase() {
  local root="$WORK/minbase" mirror t0=$SECONDS
  mirror="$(debian_mirror)"
  log "minbase: debootstrap --variant=minbase $SUITE from $mirror (1-7 min, depending on the mirror)..."
  step debootstrap --variant=minbase --arch=amd64 \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    "$SUITE" "$root" "$mirror" >"$WORK/debootstrap.log" 2>&1 || {
    tail -n 30 "$WORK/debootstrap.log" >&2
    die "debootstrap failed (log above); check that $mirror is reachable and debootstrap + debian-archive-keyring are installed"
  }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/bootstrap.log
  mkdir -p "$(dirname "$MINBASE_TAR")"
  tar -C "$root" --numeric-owner -cpf "$MINBASE_TAR.tmp" .
  mv "$MINBASE_TAR.tmp" "$MINBASE_TAR"
  rm -rf "$root"
  log "minbase: built in $((SECONDS - t0))s ($(du -h "$MINBASE_TAR" | cut -f1)) -> $MINBASE_TAR"
}

# ------------------------------------------------------------------ python ---
# python:3.11-slim: Debian's python3 (3.11.2); apt works after `apt-get update`.
build_python() {
  local root="$1"
  extract_minbase "$root"
  chroot_mount "$root"
  apt_prepare "$root"
  apt_install "$root" python3 ca-certificates
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  local v; v="$(in_chroot "$root" python3 -c 'import platform; print(platform.python_version())')"
  case "$v" in 3.11.*) ;; *) die "python image: expected Python 3.11, got '$v'" ;; esac
  in_chroot "$root" python3 -c 'import ssl, sqlite3, json; ssl.create_default_context()'
  apt_finish "$root"
  chroot_umount "$root"
  IMAGE_ARGS=(--env "PATH=$CHROOT_PATH" --env LANG=C.UTF-8 --cmd python3)
}

# -------------------------------------------------------------------- node ---
# node:20-alpine: Node 20 is not in Debian bookworm (18 only), so the machine's
# own Node 20 + npm are copied onto the minbase. The node image's "node" user
# (UID 1000) is kept for builder stages that expect it.
build_node() {
  local root="$1" v
  v="$(node --version 2>/dev/null || true)"
  case "$v" in v20.*) ;; *) die "node image: needs the host's Node 20 at /usr/bin/node (found '${v:-none}')" ;; esac
  [ -d /usr/lib/node_modules/npm ] || die "node image: /usr/lib/node_modules/npm missing (npm ships with Node 20)"
  extract_minbase "$root"
  chroot_mount "$root"
  apt_prepare "$root"
  apt_install "$root" ca-certificates
  install -m 755 "$(readlink -f /usr/bin/node)" "$root/usr/bin/node"
  mkdir -p "$root/usr/lib/node_modules"
  cp -a /usr/lib/node_modules/npm "$root/usr/lib/node_modules/npm"
  chown -R 0:0 "$root/usr/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"
  in_chroot "$root" groupadd --gid 1000 node
  in_chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  local nv npmv
  nv="$(in_chroot "$root" node --version)"
  npmv="$(in_chroot "$root" npm --version)"
  [ "$nv" = "$v" ] || die "node image: chroot node --version gave '$nv', host has '$v'"
  log "node: chroot test: node $nv, npm $npmv"
  apt_finish "$root"
  rm -rf "$root/root/.npm"
  chroot_umount "$root"
  IMAGE_ARGS=(--env "PATH=$CHROOT_PATH" --env LANG=C.UTF-8 --env "NODE_VERSION=${v#v}" --cmd node)
}

# ------------------------------------------------------------------- nginx ---
# nginx:1.26-alpine is ~20 MB compressed, so this is not a Debian system: only
# Debian's nginx-light binary with exactly the libraries ldd names, ld.so,
# nginx's data files and busybox-static for sh/wget. Packages are installed
# into a throwaway minbase chroot and the files are picked out of it.
NGINX_UID=101
build_nginx() {
  local root="$1" build="$WORK/nginx-build" lib real applet f copied
  extract_minbase "$build"
  chroot_mount "$build"
  apt_prepare "$build"
  apt_install "$build" nginx-light busybox-static

  mkdir -p "$root"/usr/{bin,sbin,lib,lib64} "$root"/etc/nginx/conf.d
  ln -s usr/bin "$root/bin"; ln -s usr/sbin "$root/sbin"
  ln -s usr/lib "$root/lib"; ln -s usr/lib64 "$root/lib64"
  install -m 755 "$build/usr/sbin/nginx" "$root/usr/sbin/nginx"
  # ldd prints "name => /path (addr)" and the loader as "/path (addr)".
  copied=()
  for lib in $(in_chroot "$build" ldd /usr/sbin/nginx | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    copied+=("$lib")
    real="$(in_chroot "$build" readlink -f "$lib")"
    mkdir -p "$root$(dirname "$lib")"
    install -m 755 "$build$real" "$root$lib"
  done
  install -m 755 "$build/bin/busybox" "$root/usr/bin/busybox"
  for applet in $(in_chroot "$build" /bin/busybox --list-full); do
    [ "$applet" != linuxrc ] || continue
    [ -e "$root/$applet" ] || [ -L "$root/$applet" ] || ln -s /usr/bin/busybox "$root/$applet"
  done
  for f in mime.types fastcgi_params fastcgi.conf scgi_params uwsgi_params; do
    install -m 644 "$build/etc/nginx/$f" "$root/etc/nginx/$f"
  done
  # What the image holds must be readable from it (the SBOM, ci/sbom, and the
  # vulnerability gate read dpkg's status and os-release): record the status
  # entries of the Debian packages the copied files came from. dpkg knows
  # usrmerged files by their /lib path, hence the second try.
  for f in /usr/sbin/nginx /bin/busybox "${copied[@]}"; do
    real="$(in_chroot "$build" readlink -f "$f")"
    in_chroot "$build" dpkg -S "$real" 2>/dev/null || in_chroot "$build" dpkg -S "${real#/usr}" 2>/dev/null ||
      die "nginx image: no Debian package owns $real"
  done | sed 's/:.*//' | sort -u | while read -r p; do in_chroot "$build" dpkg-query -s "$p"; echo; done >"$WORK/nginx-status"
  grep -q '^Package: nginx' "$WORK/nginx-status" || die "nginx image: no dpkg status entry for nginx"
  mkdir -p "$root/var/lib/dpkg" "$root/usr/lib"
  install -m 644 "$WORK/nginx-status" "$root/var/lib/dpkg/status"
  install -m 644 "$build/usr/lib/os-release" "$root/usr/lib/os-release"
  ln -s ../usr/lib/os-release "$root/etc/os-release"
  log "nginx: dpkg status records $(grep -c '^Package:' "$WORK/nginx-status") packages: $(grep '^Package:' "$WORK/nginx-status" | cut -d' ' -f2 | tr '\n' ' ')"
  chroot_umount "$build"
  rm -rf "$build"

  mkdir -p "$root"/etc "$root"/root "$root"/run "$root"/var/log/nginx "$root"/var/lib/nginx \
    "$root"/var/cache/nginx "$root"/usr/share/nginx/html "$root"/proc "$root"/sys "$root"/dev
  ln -s /run "$root/var/run"
  install -d -m 1777 "$root/tmp"
  cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
nginx:x:$NGINX_UID:$NGINX_UID:nginx:/var/cache/nginx:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
  cat >"$root/etc/group" <<EOF
root:x:0:
nginx:x:$NGINX_UID:nginx
nogroup:x:65534:
EOF
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
  printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
  chmod 644 "$root"/etc/{passwd,group,nsswitch.conf,hosts}
  chmod 700 "$root/root"
  # Debian's binary has /var/lib/nginx/* compiled in as temp paths; the
  # official image uses /var/cache/nginx. Both are writable by the nginx user.
  chown "$NGINX_UID:$NGINX_UID" "$root/var/lib/nginx" "$root/var/cache/nginx"
  # As in the official image: logs go to the container's stdout/stderr.
  ln -s /dev/stdout "$root/var/log/nginx/access.log"
  ln -s /dev/stderr "$root/var/log/nginx/error.log"
  cat >"$root/etc/nginx/nginx.conf" <<'EOF'
user  nginx;
worker_processes  auto;

error_log  /var/log/nginx/error.log notice;
pid        /var/run/nginx.pid;

events {
    worker_connections  1024;
}

http {
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;

    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';

    access_log  /var/log/nginx/access.log  main;

    sendfile        on;
    keepalive_timeout  65;

    include /etc/nginx/conf.d/*.conf;
}
EOF
  cat >"$root/etc/nginx/conf.d/default.conf" <<'EOF'
server {
    listen       80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
EOF
  printf '<!DOCTYPE html>\n<html><body><h1>Welcome to nginx!</h1></body></html>\n' >"$root/usr/share/nginx/html/index.html"
  printf '<!DOCTYPE html>\n<html><body><h1>An error occurred.</h1></body></html>\n' >"$root/usr/share/nginx/html/50x.html"
  chmod 644 "$root"/etc/nginx/nginx.conf "$root"/etc/nginx/conf.d/default.conf "$root"/usr/share/nginx/html/*

  test_nginx "$root"
  IMAGE_ARGS=(--env "PATH=$CHROOT_PATH" --env "NGINX_VERSION=$NGINX_VERSION"
    --cmd nginx --cmd -g --cmd 'daemon off;' --expose 80/tcp --stop-signal SIGQUIT)
}

# test_nginx ROOT: as UID 101 in a chroot, the config test passes, nginx serves
# a page on a free port and busybox wget fetches it; as root the default
# config (user nginx; port 80) passes -t.
test_nginx() {
  local root="$1" port pid body i
  chroot_mount "$root"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  cat >"$root/tmp/test.conf" <<EOF
pid /tmp/nginx.pid;
error_log /dev/stderr warn;
events {}
http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path /tmp/client_temp;
    proxy_temp_path /tmp/proxy_temp;
    fastcgi_temp_path /tmp/fastcgi_temp;
    uwsgi_temp_path /tmp/uwsgi_temp;
    scgi_temp_path /tmp/scgi_temp;
    server {
        listen 127.0.0.1:${NGINX_TEST_PORT:-8080};
        location / { root /usr/share/nginx/html; }
    }
}
EOF
  # nginx (re)opens /dev/stderr by path, as the UID it runs as: the logs it
  # writes to must be writable by that UID (in a container they are pipes).
  install -m 666 /dev/null "$WORK/nginx-t.log"
  install -m 666 /dev/null "$WORK/nginx-run.log"
  in_chroot "$root" /usr/sbin/nginx -t -c /etc/nginx/nginx.conf >"$WORK/nginx-t.log" 2>&1 || {
    cat "$WORK/nginx-t.log" >&2; die "nginx image: 'nginx -t' with the default config failed as root"; }
  chroot --userspec=$NGINX_UID:$NGINX_UID "$root" /usr/bin/env -i PATH="$CHROOT_PATH" \
    /usr/sbin/nginx -t -c /tmp/test.conf >>"$WORK/nginx-t.log" 2>&1 || {
    cat "$WORK/nginx-t.log" >&2; die "nginx image: 'nginx -t' as UID $NGINX_UID failed"; }
  # Debian's busybox-static runs its own applets first (`command -v wget` says
  # "wget"), so check that the applet links exist for exec-form health checks.
  [ "$(chroot --userspec=$NGINX_UID:$NGINX_UID "$root" /bin/sh -c 'for a in wget sh sed env id; do [ -x /usr/bin/$a ] || echo "no $a"; done; id -un')" = nginx ] ||
    die "nginx image: sh/wget/sed/env/id missing or UID $NGINX_UID is not 'nginx'"
  sed -i "s/listen 127.0.0.1:[0-9]*;/listen 127.0.0.1:$port;/" "$root/tmp/test.conf"
  chroot --userspec=$NGINX_UID:$NGINX_UID "$root" /usr/bin/env -i PATH="$CHROOT_PATH" \
    /usr/sbin/nginx -c /tmp/test.conf -g 'daemon off;' >"$WORK/nginx-run.log" 2>&1 &
  pid=$!; BG_PIDS+=("$pid")
  body=""
  for i in $(seq 50); do
    # No -T: Debian's busybox is built without wget timeouts and crashes on -T.
    body="$(chroot --userspec=$NGINX_UID:$NGINX_UID "$root" wget -q -O - "http://127.0.0.1:$port/" 2>/dev/null || true)"
    [ -n "$body" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  case "$body" in *'Welcome to nginx'*) ;; *)
    kill -QUIT "$pid" 2>/dev/null || true
    cat "$WORK/nginx-run.log" >&2; die "nginx image: nginx as UID $NGINX_UID did not serve index.html to busybox wget" ;;
  esac
  # The upstream compose health check, verbatim but for the port.
  chroot --userspec=$NGINX_UID:$NGINX_UID "$root" wget --no-verbose --tries=1 --spider "http://localhost:$port/" >>"$WORK/nginx-run.log" 2>&1 || {
    kill -QUIT "$pid" 2>/dev/null || true
    cat "$WORK/nginx-run.log" >&2; die "nginx image: the health check 'wget --no-verbose --tries=1 --spider http://localhost:PORT/' failed"; }
  kill -QUIT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  NGINX_VERSION="$(in_chroot "$root" /usr/sbin/nginx -v 2>&1 | sed 's|.*nginx/||')"
  log "nginx: chroot test as UID $NGINX_UID: nginx $NGINX_VERSION -t ok, served index.html to wget on 127.0.0.1:$port"
  rm -rf "$root"/tmp/* "$root"/run/*
  chroot_umount "$root"
}

# ---------------------------------------------------------------- postgres ---
# postgres:16-alpine -> Debian's postgresql-15 with an entrypoint that keeps the
# official image's contract (scripts/postgres-entrypoint.sh). The image runs as
# root like the official one; the entrypoint drops to the postgres user.
PG_MAJOR=15
build_postgres() {
  local root="$1" port
  extract_minbase "$root"
  chroot_mount "$root"
  apt_prepare "$root"
  # No default cluster: the entrypoint creates one in PGDATA at first start.
  # A drop-in, as in the official Debian-based image (a createcluster.conf of
  # our own would make ucf record a conflict with a random temp name).
  mkdir -p "$root/etc/postgresql-common/createcluster.d"
  printf 'create_main_cluster = false\n' >"$root/etc/postgresql-common/createcluster.d/no-main-cluster.conf"
  # JIT (LLVM 14 + z3 + bitcode, ~140 MB of a ~375 MB image) is left out, as
  # dpkg excludes like the docs ones; jit=off below, and PostgreSQL runs
  # without JIT when its provider is absent anyway.
  cat >"$root/etc/dpkg/dpkg.cfg.d/kgci-no-jit" <<'CFG'
path-exclude /usr/lib/x86_64-linux-gnu/libLLVM-*
path-exclude /usr/lib/llvm-*
path-exclude /usr/lib/x86_64-linux-gnu/libz3.so*
path-exclude /usr/lib/postgresql/*/lib/llvmjit*
path-exclude /usr/lib/postgresql/*/lib/bitcode/*
CFG
  apt_install "$root" "postgresql-$PG_MAJOR"
  sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "$root/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample"
  sed -ri "s!^#?(jit)\s*=\s*\S+.*!\1 = off!" "$root/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample"
  grep -q "^listen_addresses = '\*'" "$root/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample" &&
    grep -q "^jit = off" "$root/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample" ||
    die "postgres image: could not set listen_addresses/jit in postgresql.conf.sample"
  # ssl-cert made a random snakeoil key pair: an image must not ship one private
  # key to everyone (and ssl stays off in the clusters initdb makes).
  rm -f "$root/etc/ssl/certs/ssl-cert-snakeoil.pem" "$root/etc/ssl/private/ssl-cert-snakeoil.key"
  [ -z "$(ls -A "$root/var/lib/postgresql/$PG_MAJOR" 2>/dev/null)" ] ||
    die "postgres image: Debian created a default cluster despite create_main_cluster = false"
  install -m 755 "$REPO_ROOT/scripts/postgres-entrypoint.sh" "$root/usr/local/bin/docker-entrypoint.sh"
  mkdir -p "$root/docker-entrypoint-initdb.d" "$root/var/lib/postgresql/data"
  in_chroot "$root" chown postgres:postgres /var/lib/postgresql/data
  chmod 1777 "$root/var/lib/postgresql/data"
  in_chroot "$root" sh -c 'install -d -o postgres -g postgres -m 3777 /var/run/postgresql'
  in_chroot "$root" sh -c 'command -v setpriv' >/dev/null || die "postgres image: setpriv (util-linux) missing"
  test_postgres "$root"
  apt_finish "$root"
  chroot_umount "$root"
  IMAGE_ARGS=(--env "PATH=/usr/lib/postgresql/$PG_MAJOR/bin:$CHROOT_PATH" --env LANG=C.UTF-8
    --env "PG_MAJOR=$PG_MAJOR" --env PGDATA=/var/lib/postgresql/data
    --entrypoint /usr/local/bin/docker-entrypoint.sh --cmd postgres
    --expose 5432/tcp --volume /var/lib/postgresql/data --stop-signal SIGINT --user root)
}

# test_postgres ROOT: the entrypoint, started as root in the chroot, initialises
# a cluster, creates the database and accepts a scram password login over TCP.
test_postgres() {
  local root="$1" port pid i ok=""
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  chroot "$root" /usr/bin/env -i PATH="/usr/lib/postgresql/$PG_MAJOR/bin:$CHROOT_PATH" LANG=C.UTF-8 \
    PGDATA=/tmp/pgtest POSTGRES_PASSWORD=kgci-test POSTGRES_USER=kidney POSTGRES_DB=kidney_db \
    /usr/local/bin/docker-entrypoint.sh postgres -c listen_addresses=127.0.0.1 -p "$port" \
    >"$WORK/postgres-run.log" 2>&1 &
  pid=$!; BG_PIDS+=("$pid")
  for i in $(seq 150); do
    if in_chroot "$root" env PGPASSWORD=kgci-test "/usr/lib/postgresql/$PG_MAJOR/bin/psql" -h 127.0.0.1 -p "$port" \
      -U kidney -d kidney_db -tAc 'select 1' 2>/dev/null | grep -qx 1; then
      ok=1; break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  local settings
  settings="$(in_chroot "$root" env PGPASSWORD=kgci-test "/usr/lib/postgresql/$PG_MAJOR/bin/psql" -h 127.0.0.1 -p "$port" \
    -U kidney -d kidney_db -tAc "select current_setting('jit') || ',' || current_setting('password_encryption') || ',' || current_setting('server_encoding')" 2>&1 || true)"
  [ "$settings" = "off,scram-sha-256,UTF8" ] || { ok=""; log "postgres: unexpected settings jit,password_encryption,encoding: '$settings'"; }
  # A wrong password must be refused: scram is on for host connections.
  if [ -n "$ok" ] && in_chroot "$root" env PGPASSWORD=wrong "/usr/lib/postgresql/$PG_MAJOR/bin/psql" -h 127.0.0.1 -p "$port" \
    -U kidney -d kidney_db -tAc 'select 1' >/dev/null 2>&1; then
    ok=""; log "postgres: a wrong password was accepted"
  fi
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ -n "$ok" ] || { tail -n 30 "$WORK/postgres-run.log" >&2; die "postgres image: entrypoint test failed (log above)"; }
  log "postgres: chroot test: entrypoint initdb + scram login to kidney_db on 127.0.0.1:$port ok"
  rm -rf "$root/tmp/pgtest"
}

# ------------------------------------------------------------------ docker ---
# docker:27-dind: the Dagger path's checker runs `kgci test-e2e --dockerd` in
# it, which starts this dockerd inside the container (docs/dagger.md). Debian's
# docker.io (20.10) brings containerd, runc, docker-proxy and tini; iptables is
# what dockerd programs the bridge networks with. chromium (and one font, so
# the screenshots have letters) is for the browser.* checks, which kgci runs
# in the same container against the ports its dockerd publishes on loopback.
build_docker() {
  local root="$1" v
  extract_minbase "$root"
  chroot_mount "$root"
  apt_prepare "$root"
  apt_install "$root" docker.io iptables ca-certificates chromium fonts-dejavu-core
  for c in dockerd docker containerd runc docker-proxy iptables chromium; do
    in_chroot "$root" sh -c "command -v $c" >/dev/null || die "docker image: $c missing after apt-get install docker.io"
  done
  v="$(in_chroot "$root" dockerd --version)"
  log "docker: chroot test: $v; $(in_chroot "$root" containerd --version | cut -d' ' -f1-3); $(in_chroot "$root" chromium --version)"
  apt_finish "$root"
  chroot_umount "$root"
  IMAGE_ARGS=(--env "PATH=$CHROOT_PATH" --env LANG=C.UTF-8 --cmd dockerd --volume /var/lib/docker)
}

# ---------------------------------------------------------------------- go ---
# golang:1.26-bookworm: the machine's own Go (the one that builds this
# repository) on a Debian minbase with git, which reads the commit time.
GO_ROOT="${KGCI_GO_ROOT:-$(go env GOROOT 2>/dev/null || echo /usr/local/go)}"
build_go() {
  local root="$1" v
  [ -x "$GO_ROOT/bin/go" ] || die "go image: no Go toolchain at $GO_ROOT (set KGCI_GO_ROOT)"
  extract_minbase "$root"
  chroot_mount "$root"
  apt_prepare "$root"
  apt_install "$root" git ca-certificates
  mkdir -p "$root/usr/local"
  cp -a "$GO_ROOT" "$root/usr/local/go"
  chown -R 0:0 "$root/usr/local/go"
  rm -rf "$root/usr/local/go/pkg/obj" "$root/usr/local/go/.git"
  mkdir -p "$root/go"
  v="$(in_chroot "$root" /usr/local/go/bin/go version)"
  case "$v" in "$("$GO_ROOT/bin/go" version)") ;; *) die "go image: chroot 'go version' gave '$v'" ;; esac
  log "go: chroot test: $v, $(in_chroot "$root" git --version)"
  apt_finish "$root"
  chroot_umount "$root"
  IMAGE_ARGS=(--env "PATH=/usr/local/go/bin:/go/bin:$CHROOT_PATH" --env LANG=C.UTF-8 --env GOPATH=/go
    --env GOTOOLCHAIN=local --workdir /go --cmd bash)
}

# ------------------------------------------------------------------ driver ---
# recipe_hash NAME: what the image depends on; a change rebuilds it.
recipe_hash() {
  local name="$1"
  {
    declare -f chroot_mount in_chroot apt_prepare apt_install apt_finish extract_minbase "build_$name"
    echo "$SOURCE_DATE_EPOCH"
    minbase_recipe
    cat "$REPO_ROOT"/ci/baseimage/*.go "$REPO_ROOT"/ci/cmd/baseimage/*.go
    case "$name" in
      nginx) declare -f test_nginx; echo "$NGINX_UID" ;;
      postgres) declare -f test_postgres; echo "$PG_MAJOR"; cat "$REPO_ROOT/scripts/postgres-entrypoint.sh" ;;
      node) node --version 2>/dev/null || true; cat /usr/lib/node_modules/npm/package.json 2>/dev/null | grep '"version"' || true ;;
      go) "$GO_ROOT/bin/go" version 2>/dev/null || true ;;
    esac
  } | sha256sum | cut -d' ' -f1
}

minbase_recipe() {
  { echo "debootstrap --variant=minbase --arch=amd64 $SUITE $(debian_mirror) $SOURCE_DATE_EPOCH"; declare -f build_minbase; } | sha256sum | cut -d' ' -f1
}

require_host() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot and mounts); re-run with sudo"
  local c
  command -v go >/dev/null 2>&1 || die "'go' not found: Go >= 1.26.0 (go.mod) is needed to build ci/cmd/baseimage (Debian's golang-go is too old; use the go.dev toolchain)"
  for c in debootstrap:debootstrap chroot:coreutils mount:mount findmnt:util-linux flock:util-linux python3:python3; do
    command -v "${c%%:*}" >/dev/null 2>&1 ||
      die "'${c%%:*}' not found; install with: apt-get install -y --no-install-recommends ${c##*:} (see scripts/deps/engines.apt)"
  done
  [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] ||
    die "Debian archive keyring missing; apt-get install -y debian-archive-keyring"
  [ -f "$HOST_SOURCES" ] || die "$HOST_SOURCES not found: the images copy the host's apt sources (the reachable mirror)"
}

usage() {
  cat <<EOF
usage: $0 [--force] [${ALL_IMAGES[*]// /|}...]
Builds OCI layouts in \$KGCI_CACHE/base/<name>/ (KGCI_CACHE=$KGCI_CACHE).
  --force   rebuild the minbase tarball and the named images even if cached
EOF
}

main() {
  local force="" names=() n t0=$SECONDS
  while [ $# -gt 0 ]; do
    case "$1" in
      --force) force=1 ;;
      -h|--help) usage; exit 0 ;;
      python|node|nginx|postgres|docker|go) names+=("$1") ;;
      *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
  done
  [ ${#names[@]} -gt 0 ] || names=("${ALL_IMAGES[@]}")
  require_host
  mkdir -p "$BASE_DIR" "$(dirname "$MINBASE_TAR")"
  # One run at a time per cache (other pipelines on this machine share it).
  exec 9>"$KGCI_CACHE/.make-base-images.lock"
  if ! flock -n 9; then
    log "another make-base-images run holds $KGCI_CACHE/.make-base-images.lock; waiting (up to 20 min)..."
    flock -w 1200 9 || die "timed out waiting for the other make-base-images run"
  fi
  WORK="$(mktemp -d "$KGCI_CACHE/.make-base-images.XXXXXX")"

  # Which images need building? Only those need the minbase tarball and Go.
  local todo=() want
  for n in "${names[@]}"; do
    want="$(recipe_hash "$n")"
    if [ -z "$force" ] && [ -f "$BASE_DIR/$n/index.json" ] && [ "$(cat "$BASE_DIR/$n.recipe" 2>/dev/null)" = "$want" ]; then
      log "$n: cached ($(cat "$BASE_DIR/$n.info" 2>/dev/null))"
    else
      todo+=("$n")
    fi
  done
  if [ ${#todo[@]} -eq 0 ]; then
    log "all cached in $((SECONDS - t0))s"
    return 0
  fi

  if [ -n "$force" ] || [ ! -f "$MINBASE_TAR" ] || [ "$(cat "$MINBASE_TAR.recipe" 2>/dev/null)" != "$(minbase_recipe)" ]; then
    build_minbase
    minbase_recipe >"$MINBASE_TAR.recipe"
  else
    log "minbase: cached ($MINBASE_TAR)"
  fi

  log "building ci/cmd/baseimage..."
  (cd "$REPO_ROOT" && go build -o "$WORK/baseimage" ./ci/cmd/baseimage) ||
    die "go build ./ci/cmd/baseimage failed (see above)"

  local ti root
  for n in "${todo[@]}"; do
    ti=$SECONDS
    root="$WORK/$n-rootfs"
    IMAGE_ARGS=()
    log "$n: building..."
    "build_$n" "$root"
    "$WORK/baseimage" --rootfs "$root" --name "$n" --out "$BASE_DIR/$n" "${IMAGE_ARGS[@]}" >/dev/null
    rm -rf "$root"
    "$WORK/baseimage" info --layout "$BASE_DIR/$n" >"$BASE_DIR/$n.info"
    recipe_hash "$n" >"$BASE_DIR/$n.recipe"
    log "$n: built in $((SECONDS - ti))s ($(cat "$BASE_DIR/$n.info"))"
  done
  log "done in $((SECONDS - t0))s; layouts in $BASE_DIR"
}

main "$@"
