#!/bin/sh
# Renders the storefront's nginx config from the environment, then runs nginx in the foreground.
#
#   LISTEN_PORT   port to listen on (default 8080; unprivileged)
#   LISTEN_HOST   address to bind (default 0.0.0.0; 127.0.0.1 with host networking)
#   BACKEND_URL   where /api/ goes (default http://backend:8000; scheme://host[:port], no path).
#                 An IP address gets a static upstream with keepalive connections; a host
#                 name is re-resolved through the resolvers of /etc/resolv.conf (or
#                 NGINX_RESOLVER), so nginx starts even before the backend is resolvable.
#   NGINX_WORKER_PROCESSES  (default auto)   NGINX_ACCESS_LOG  on|off (default on, to stdout)
# With arguments, the config is rendered and the arguments run instead (e.g. `nginx -T -c ...`).
set -eu

die() { echo "storefront entrypoint: $*" >&2; exit 64; }

LISTEN_PORT=${LISTEN_PORT:-8080}
LISTEN_HOST=${LISTEN_HOST:-0.0.0.0}
BACKEND_URL=${BACKEND_URL:-http://backend:8000}
WORKER_PROCESSES=${NGINX_WORKER_PROCESSES:-auto}
RUN_DIR=${NGINX_RUN_DIR:-/tmp/nginx}
TEMPLATE=${NGINX_TEMPLATE:-/etc/shop-nginx/nginx.conf.template}

case $LISTEN_PORT in
    '' | *[!0-9]*) die "LISTEN_PORT must be a port number, got '$LISTEN_PORT'" ;;
esac
case $LISTEN_HOST in
    '' | *[!0-9A-Za-z.:_-]*) die "LISTEN_HOST must be an address, got '$LISTEN_HOST'" ;;
esac
case $WORKER_PROCESSES in
    auto | [1-9] | [1-9][0-9]) ;;
    *) die "NGINX_WORKER_PROCESSES must be auto or a number, got '$WORKER_PROCESSES'" ;;
esac
case ${NGINX_ACCESS_LOG:-on} in
    on) ACCESS_LOG="/dev/stdout main buffer=32k flush=1s" ;;
    off) ACCESS_LOG=off ;;
    *) die "NGINX_ACCESS_LOG must be on or off" ;;
esac

scheme=${BACKEND_URL%%://*}
rest=${BACKEND_URL#*://}
rest=${rest%/}
case $scheme in
    http | https) ;;
    *) die "BACKEND_URL must be http://host[:port] or https://host[:port], got '$BACKEND_URL'" ;;
esac
case $rest in
    '' | */* | *[!0-9A-Za-z.:_\[\]-]*) die "BACKEND_URL must be scheme://host[:port] without a path, got '$BACKEND_URL'" ;;
esac
case $rest in
    *:[0-9]*) hostport=$rest ;;
    *) if [ "$scheme" = https ]; then hostport=$rest:443; else hostport=$rest:80; fi ;;
esac

case $LISTEN_HOST in
    *:*) listen="[$LISTEN_HOST]:$LISTEN_PORT" ;;
    *) listen="$LISTEN_HOST:$LISTEN_PORT" ;;
esac

host=${hostport%:*}
mkdir -p "$RUN_DIR/client_body" "$RUN_DIR/proxy" "$RUN_DIR/fastcgi" "$RUN_DIR/uwsgi" "$RUN_DIR/scgi"

resolvers=${NGINX_RESOLVER:-}
case $host in
    *[!0-9.]* | '')
        if [ -z "$resolvers" ] && [ -r /etc/resolv.conf ]; then
            # The first nameserver only: it is the container network's DNS (Docker's
            # 127.0.0.11, podman's aardvark); nginx would round-robin over the others,
            # which answer "not found" for service names.
            resolvers=$(sed -n 's/^[[:space:]]*nameserver[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' /etc/resolv.conf |
                sed -n 1p | sed 's/^\(.*:.*\)$/[\1]/')
        fi
        ;;
    *) resolvers="" ;; # IPv4 literal: no DNS involved
esac
case $host in \[*) resolvers="" ;; esac # IPv6 literal
if [ "$host" = localhost ]; then resolvers=""; fi

if [ -n "$resolvers" ]; then
    printf 'resolver %s valid=10s ipv6=off;\nresolver_timeout 3s;\n' "$resolvers" >"$RUN_DIR/backend-http.conf"
    # shellcheck disable=SC2016  # nginx variables, not shell ones
    printf 'set $shop_backend "%s://%s";\nproxy_pass $shop_backend;\n' "$scheme" "$hostport" >"$RUN_DIR/backend-proxy.conf"
else
    printf 'upstream shop_backend {\n    server %s;\n    keepalive 32;\n}\n' "$hostport" >"$RUN_DIR/backend-http.conf"
    printf 'proxy_pass %s://shop_backend;\n' "$scheme" >"$RUN_DIR/backend-proxy.conf"
fi
sed -e "s|@LISTEN@|$listen|g" \
    -e "s|@RUN_DIR@|$RUN_DIR|g" \
    -e "s|@WORKER_PROCESSES@|$WORKER_PROCESSES|g" \
    -e "s|@ACCESS_LOG@|$ACCESS_LOG|g" \
    "$TEMPLATE" >"$RUN_DIR/nginx.conf"

if [ $# -gt 0 ]; then
    exec "$@"
fi
exec nginx -e stderr -c "$RUN_DIR/nginx.conf" -g 'daemon off;'
