#!/bin/sh
# Entrypoint of localhost/shop-redis: runs Debian's redis-server like the redis:7 image.
#
# "redis-server ARGS" (the default) runs as user redis in /data; without a config file
# protected mode is switched off, since the container network is the boundary (as in
# the redis image). Other commands are run as given.
set -eu

if [ "${1:-redis-server}" = redis-server ] || [ "${1#-}" != "${1:-}" ]; then
    [ "${1:-}" = redis-server ] && shift
    case ${1:-} in
        *.conf) ;;
        *) set -- --protected-mode no "$@" ;;
    esac
    if [ "$(id -u)" = 0 ]; then
        chown redis:redis /data 2>/dev/null || true
        exec setpriv --reuid=redis --regid=redis --init-groups redis-server "$@"
    fi
    exec redis-server "$@"
fi
exec "$@"
