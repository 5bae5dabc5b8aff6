#!/usr/bin/env bash
# Installs what shop-ops needs on Debian 12 / Ubuntu, skipping what is already there:
# Debian packages, the Python virtualenv (.venv), checkov and sslyze in virtualenvs of their own
# (.venv-checkov, .venv-sslyze: see install_own_venv) and the storefront's npm dependencies.
#   scripts/install.sh            # everything
#   scripts/install.sh apt|venv|checkov|sslyze|npm
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

APT_PACKAGES=(
  postgresql-15 pgbackrest redis-server nginx-light             # the shop's services, physical backups, the router
  podman buildah skopeo runc uidmap fuse-overlayfs slirp4netns  # Docker API and image builds
  golang-github-containernetworking-plugin-dnsname              # compose service names resolve on podman networks
  debootstrap docker-compose docker-registry apache2-utils      # base images, compose, registry
  chromium python3-venv python3-pip git make curl ca-certificates  # e2e checks, toolchain, wheels
  prometheus prometheus-alertmanager prometheus-pushgateway prometheus-node-exporter prometheus-postgres-exporter prometheus-redis-exporter prometheus-nginx-exporter  # metrics, promtool, alerting (issue 12)
  rsyslog rsyslog-pgsql logrotate                               # central logs: collector, its PostgreSQL output, rotation (issue 12)
  pgbouncer redis-sentinel prometheus-pgbouncer-exporter        # data tier: pooling, cart store failover, pool metrics (issue 13)
  pebble                                                        # certificates: Let's Encrypt's test ACME server and its DNS (issue 14)
)

PIP_IGNORED_LOCATION='is ignored: it is neither a file nor a directory'

say() { printf '[install] %s\n' "$*"; }

install_apt() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "Debian packages: all present"
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  # rsyslog-pgsql would have dbconfig-common create a database in a system PostgreSQL on port 5432;
  # shop-ops creates its own log store (shop_ops/observability/logs.py).
  echo "rsyslog-pgsql rsyslog-pgsql/dbconfig-install boolean false" | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian packages start their own services; ours run on free ports under our own folders.
  for svc in redis-server nginx postgresql prometheus prometheus-alertmanager prometheus-pushgateway \
    prometheus-node-exporter prometheus-postgres-exporter prometheus-redis-exporter prometheus-nginx-exporter \
    pgbouncer redis-sentinel prometheus-pgbouncer-exporter; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
      say "note: the system's $svc service is running; shop-ops does not use it"
    fi
  done
  # rsyslog installed just now: its system daemon would take /dev/log and the kernel log. shop-ops runs
  # its own rsyslogd (no system sockets) under .state/, so the package's service is stopped and disabled.
  # A system rsyslog that was there before (e.g. Ubuntu's) is the machine's logger and is left alone.
  if [[ " ${missing[*]} " == *" rsyslog "* ]]; then
    if command -v systemctl >/dev/null; then
      systemctl disable --now rsyslog.service >/dev/null 2>&1 || systemctl disable rsyslog.service >/dev/null 2>&1 || true
    fi
    if [ -f /run/rsyslogd.pid ] && grep -q rsyslogd "/proc/$(cat /run/rsyslogd.pid)/cmdline" 2>/dev/null; then
      kill "$(cat /run/rsyslogd.pid)" || true
    fi
    say "rsyslog: the package's system service is stopped and disabled (shop-ops runs its own collector)"
  fi
}

install_venv() {
  local stamp=.venv/.shop-ops-installed want
  want=$(cat pyproject.toml app/pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
    say "virtualenv: up to date"
    return
  fi
  say "virtualenv: installing shop (app/) and shop-ops with dev tools into .venv"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
  .venv/bin/pip install -q --disable-pip-version-check -e ./app -e '.[dev]'
  echo "$want" >"$stamp"
}

# A tool that pins what .venv must not get, in a virtualenv of its own, at the versions of its pin
# file (the runner image installs the same file): checkov (an old boto3, its own python-hcl2) and
# sslyze (cryptography < 47). Usage: install_own_venv NAME VENV PIN_FILE CHECK_ARGS...
# (CHECK_ARGS run through the venv's python: a script's #! line breaks in a path with spaces).
install_own_venv() {
  local name=$1 venv=$2 requirements=$3 stamp want
  shift 3
  stamp=$venv/.shop-ops-installed
  [ -f "$requirements" ] || { say "$requirements is missing" >&2; exit 1; }
  want=$(sha256sum <"$requirements" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
    say "$name: up to date"
    return
  fi
  say "$name: installing $(grep -v '^#' "$requirements" | xargs) into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # pip warns about each missing file:///opt/pypi-more/simple/ location of pip.conf: harmless, left out.
  if ! "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements" 2>"$venv/pip.log"; then
    grep -v "$PIP_IGNORED_LOCATION" "$venv/pip.log" | tail -n 30 >&2
    say "$name: pip install failed (log: $venv/pip.log)" >&2
    exit 1
  fi
  grep -v "$PIP_IGNORED_LOCATION" "$venv/pip.log" >&2 || true
  "$venv/bin/python" "$@" >/dev/null || { say "$name: does not run in $venv" >&2; exit 1; }
  echo "$want" >"$stamp"
}

install_checkov() { install_own_venv checkov .venv-checkov scripts/checkov-requirements.txt .venv-checkov/bin/checkov --version; }
install_sslyze() { install_own_venv sslyze .venv-sslyze scripts/sslyze-requirements.txt -m sslyze --help; }

install_npm() {
  if ! command -v node >/dev/null || ! node -e 'process.exit(parseInt(process.versions.node, 10) < 20 ? 1 : 0)'; then
    say "Node.js 20 or newer is needed for the storefront (found: $(node --version 2>/dev/null || echo none))" >&2
    exit 1
  fi
  if [ -f frontend/node_modules/.package-lock.json ] && [ frontend/node_modules/.package-lock.json -nt frontend/package-lock.json ]; then
    say "npm: up to date"
    return
  fi
  say "npm: installing the storefront's dependencies (npm ci)"
  (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
}

case "${1:-all}" in
  apt) install_apt ;;
  venv) install_venv ;;
  checkov) install_checkov ;;
  sslyze) install_sslyze ;;
  npm) install_npm ;;
  all) install_apt; install_venv; install_checkov; install_sslyze; install_npm ;;
  *) echo "usage: $0 [apt|venv|checkov|sslyze|npm|all]" >&2; exit 2 ;;
esac
