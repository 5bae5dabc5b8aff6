#!/bin/sh
# Entrypoint of localhost/shop-postgres: the postgres:15 image's env interface on Debian's PostgreSQL.
#
# Env: POSTGRES_USER (default postgres), POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE
# (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default: the user),
# PGDATA (default /var/lib/postgresql/data), POSTGRES_INITDB_ARGS.
# An empty PGDATA is initialised once; then postgres runs in the foreground as "postgres"
# and listens on all interfaces of the container. Other commands are run as given.
set -eu

case ${1:-postgres} in
    postgres | -*) ;;
    *) exec "$@" ;;
esac
[ "${1:-postgres}" = postgres ] && [ $# -gt 0 ] && shift

PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /run/postgresql
    chown postgres:postgres "$PGDATA" /run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" postgres "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
    fi
    auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
        echo "shop-postgres: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (or POSTGRES_HOST_AUTH_METHOD=trust)" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
    # shellcheck disable=SC2086
    initdb --username="$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
        pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        createdb --username="$user" --host=/run/postgresql --owner="$user" "$db"
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    echo "shop-postgres: initialised $PGDATA (user $user, database $db)"
fi

exec postgres -c listen_addresses='*' -c unix_socket_directories=/run/postgresql "$@"
