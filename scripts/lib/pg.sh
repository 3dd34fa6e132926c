#!/usr/bin/env bash
# Throwaway PostgreSQL 15 clusters for tests (Debian's /usr/lib/postgresql/15/bin).
#
# Source it from a script that runs with `set -euo pipefail`:
#
#   source scripts/lib/pg.sh
#   trap pg_cleanup EXIT        # the library never installs traps itself
#   pg_setup                    # initdb + start + role/database with a password
#   ... use $DATABASE_URL ...
#   pg_stop                     # stop the cluster (simulates "database down")
#   pg_start                    # start it again: same port, same data
#   pg_is_running               # exit status 0 while the server accepts connections
#   pg_cleanup                  # stop (if running) and delete everything; safe to call twice
#
# pg_setup exports:
#   PG_DIR        temp dir (owned by the postgres OS user): data/, postgres.log, unix socket
#   PG_BIN        PostgreSQL binaries (override before pg_setup to use another version)
#   PG_PORT       TCP port on 127.0.0.1, picked free at start-up
#   PG_USER, PG_PASSWORD, PG_DB   role (LOGIN CREATEDB) and database; PG_USER/PG_DB may be set before
#   DATABASE_URL  postgresql://PG_USER:PG_PASSWORD@127.0.0.1:PG_PORT/PG_DB
#   PG_SH         absolute path of this file (for child processes, see below)
#
# Child processes (e.g. pytest) that must stop/start the same cluster run this file as a command;
# it only needs PG_DIR and PG_BIN from the environment:
#   bash "$PG_SH" stop | start | status
#
# Run as root, the server runs as the `postgres` OS user (initdb refuses root); run as another
# user, it runs as that user.

PG_SH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
export PG_SH

_pg_die() {
  echo "pg.sh: $*" >&2
  return 1
}

# Runs a command as the cluster's OS user, from a directory that user can read (runuser keeps the
# caller's cwd, often /root, and initdb/pg_ctl complain about an unreadable cwd).
_pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    (cd "$PG_DIR" && runuser -u postgres -- "$@")
  else
    (cd "$PG_DIR" && "$@")
  fi
}

_pg_free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

_pg_log_tail() {
  if [ -n "${PG_DIR:-}" ] && [ -f "$PG_DIR/postgres.log" ]; then
    echo "---- last lines of $PG_DIR/postgres.log ----" >&2
    tail -n 20 "$PG_DIR/postgres.log" >&2 || true
  fi
}

_pg_check_tools() {
  PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
  export PG_BIN
  local tool
  for tool in initdb pg_ctl psql pg_isready; do
    [ -x "$PG_BIN/$tool" ] || _pg_die "$PG_BIN/$tool not found; install PostgreSQL 15: apt-get install -y postgresql-15 postgresql-client-15 (or set PG_BIN)" || return 1
  done
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || _pg_die "OS user 'postgres' is missing; it is created by: apt-get install -y postgresql-15" || return 1
    command -v runuser >/dev/null || _pg_die "runuser not found; install util-linux" || return 1
  fi
  [ -x /usr/bin/python3 ] || _pg_die "/usr/bin/python3 not found (used to pick a free port); apt-get install -y python3" || return 1
}

pg_is_running() {
  [ -n "${PG_DIR:-}" ] && [ -n "${PG_BIN:-}" ] || return 1
  [ -f "$PG_DIR/data/postmaster.pid" ] || return 1
  _pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1
}

pg_start() {
  [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ] || _pg_die "no cluster: PG_DIR is unset or has no data/ (call pg_setup first)" || return 1
  PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
  if ! _pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 30 start >/dev/null; then
    _pg_log_tail
    _pg_die "could not start PostgreSQL in $PG_DIR/data" || return 1
  fi
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ] || _pg_die "no cluster: PG_DIR is unset or has no data/ (call pg_setup first)" || return 1
  PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
  pg_is_running || return 0
  # fast: clients are disconnected at once, as in a real database outage.
  _pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null \
    || { _pg_log_tail; _pg_die "could not stop PostgreSQL in $PG_DIR/data"; }
}

pg_setup() {
  _pg_check_tools || return 1
  PG_USER="${PG_USER:-kgdb}"
  PG_DB="${PG_DB:-kgdb}"
  PG_PASSWORD="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/kgdb-pg.XXXXXX")"
  export PG_DIR PG_USER PG_DB PG_PASSWORD
  chmod 700 "$PG_DIR"
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$PG_DIR"
  fi

  # Local (unix socket) logins are trusted so this script can create the role; TCP needs the password.
  if ! _pg_as_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1; then
    cat "$PG_DIR/initdb.log" >&2
    _pg_die "initdb failed in $PG_DIR/data" || return 1
  fi

  # A port is only free until someone else takes it: retry with a new one if the bind fails.
  local attempt
  for attempt in 1 2 3; do
    PG_PORT="$(_pg_free_port)"
    # Settings go into postgresql.conf so pg_start (after pg_stop) comes back on the same port.
    # fsync off: a throwaway cluster has nothing to protect, and the machine is shared.
    _pg_as_owner tee "$PG_DIR/data/postgresql.auto.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 60
EOF
    if _pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 30 start >/dev/null; then
      break
    fi
    if [ "$attempt" = 3 ]; then
      _pg_log_tail
      _pg_die "could not start PostgreSQL (3 attempts); see $PG_DIR/postgres.log" || return 1
    fi
  done
  export PG_PORT

  if ! _pg_as_owner "$PG_BIN/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q \
      -c "CREATE ROLE \"$PG_USER\" LOGIN CREATEDB PASSWORD '$PG_PASSWORD'" \
      -c "CREATE DATABASE \"$PG_DB\" OWNER \"$PG_USER\"" >/dev/null; then
    _pg_die "could not create role $PG_USER / database $PG_DB" || return 1
  fi

  DATABASE_URL="postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
  export DATABASE_URL
  echo "pg.sh: PostgreSQL running on 127.0.0.1:$PG_PORT (dir $PG_DIR, database $PG_DB, role $PG_USER)"
}

pg_cleanup() {
  [ -n "${PG_DIR:-}" ] || return 0
  if [ -d "$PG_DIR/data" ] && pg_is_running; then
    _pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  case "$PG_DIR" in
    */kgdb-pg.*) rm -rf "$PG_DIR" ;;
    *) echo "pg.sh: not deleting unexpected PG_DIR=$PG_DIR" >&2 ;;
  esac
  PG_DIR=""
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  case "${1:-}" in
    stop) pg_stop ;;
    start) pg_start ;;
    status)
      if pg_is_running; then echo running; else echo stopped; exit 3; fi
      ;;
    *)
      echo "usage: PG_DIR=... [PG_BIN=...] bash $0 stop|start|status  (or source it: see the top of this file)" >&2
      exit 2
      ;;
  esac
fi
