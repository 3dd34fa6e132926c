#!/usr/bin/env bash
# Entrypoint of the offline postgres stand-in image (Debian postgresql-15),
# copied to /usr/local/bin/docker-entrypoint.sh by scripts/make-base-images.sh.
# It keeps the contract of the official postgres image's entrypoint so the same
# compose files and pipeline steps work with either image:
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust),
#   POSTGRES_USER (default postgres), POSTGRES_DB (default $POSTGRES_USER),
#   PGDATA (default /var/lib/postgresql/data), POSTGRES_INITDB_ARGS,
#   POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), *_FILE variants of the
#   first three, /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz on first start.
# Started as root it fixes ownership of PGDATA and re-executes itself as the
# postgres user (the official image uses gosu; Debian's util-linux has setpriv).
set -Eeuo pipefail

# file_env VAR [DEFAULT]: VAR or the contents of the file named by VAR_FILE.
file_env() {
  local var="$1" fileVar="${1}_FILE" def="${2:-}" val
  if [ -n "${!var:-}" ] && [ -n "${!fileVar:-}" ]; then
    echo >&2 "error: both $var and $fileVar are set (but are exclusive)"
    exit 1
  fi
  val="$def"
  if [ -n "${!var:-}" ]; then
    val="${!var}"
  elif [ -n "${!fileVar:-}" ]; then
    val="$(<"${!fileVar}")"
  fi
  export "$var"="$val"
  unset "$fileVar"
}

# A leading option means "postgres OPTIONS...", as in the official image.
if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"

if [ "$1" != 'postgres' ]; then
  exec "$@"
fi

if [ "$(id -u)" = '0' ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 3777 /var/run/postgresql
  # An existing (mounted) cluster may belong to root if it was copied in.
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"
file_env POSTGRES_INITDB_ARGS
export POSTGRES_HOST_AUTH_METHOD="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
    cat >&2 <<'MSG'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the
       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
       connections without a password. This is *not* recommended.
MSG
    exit 1
  fi
  if [ "$(id -u)" = '0' ] || ! [ -w "$PGDATA" ]; then
    echo >&2 "error: PGDATA $PGDATA is not writable by $(id -un) (uid $(id -u))"
    exit 1
  fi

  echo "initializing database cluster in $PGDATA"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of options on purpose
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" \
    --encoding=UTF8 --locale=C.UTF-8 $POSTGRES_INITDB_ARGS
  # Containers are reached over their network, never via localhost only.
  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

  # Local, socket-only server for database creation and init scripts.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc --dbname postgres)
  # Variables (:'db') are interpolated only in scripts read from stdin, not in -c.
  if [ "$POSTGRES_DB" != 'postgres' ] &&
    [ -z "$("${psql[@]}" -tA -v db="$POSTGRES_DB" <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")" ]; then
    "${psql[@]}" -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    echo "created database $POSTGRES_DB"
  fi
  shopt -s nullglob
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "running $f"; if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
      *.sql) echo "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
      *) echo "ignoring $f" ;;
    esac
  done
  shopt -u nullglob
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo 'PostgreSQL init process complete; ready for start up.'
fi

exec "$@"
