"""Each local environment's nginx router, with a short edge cache of catalog reads, and the resource that switches it.

Routes: `/` to the serving slot's storefront, the API to its backend. The upstreams live in an
include file (`upstreams.conf`) that `switch` rewrites before `nginx -s reload`; nginx's graceful
reload keeps in-flight requests, so a switch drops none. The serving slot is read back from that
file, and every response carries `X-Shop-Slot`, so a switch is confirmed by asking the router, not
assumed. pid, temp files and logs stay in `folder`. `Router` is the plain class (the local
environment starts and stops it); `RouterResource` names each environment's router folder, port and
slot ports as fields.

The API's locations (`/api/` and the edge-cached catalog reads below) are rate-limited per client
address with nginx's `limit_req`: 429 with `Retry-After` and the shop's error body past the burst;
allow-listed addresses (127.0.0.1 by default: all local traffic) never (shop_ops/resources/rate_limit.py).

Public listeners (`Router.public`, a PublicListeners): HTTPS on `https_port` with Mozilla's intermediate
settings and HSTS, once the environment's certificate exists (`install_certificate` adds it with a graceful
reload); plain HTTP on `http_port` answering 301 to the HTTPS URL; ACME HTTP-01 challenges on the one
`challenge_port` every router shares (`reuseport`). `port` stays the internal plain listener (release
verification, probes, load tests), like an ALB's target hop. The certificates: shop_ops/security/certificates.py.

The edge cache (the CDN's job, done locally): anonymous `GET`/`HEAD` of `/api/products` (search
and list pages; the query string is part of the key), `/api/products/{id}` and `/api/categories`
are kept for `Router.cache_lifetime` seconds (default 1; nginx counts whole seconds, so an entry
lives 1-2 s; 0 turns the cache off). Nothing else is ever cached: carts, checkout, orders, admin,
`/healthz`, `/readyz`, `/version`, the storefront. A request with an `Authorization` or `Cookie`
header neither reads nor fills the cache, and nginx never stores a response carrying `Set-Cookie`
(that default is left alone). Concurrent misses of one key are collapsed into one upstream request
(`proxy_cache_lock`); an expired entry is answered stale while one background request refreshes it,
and while the backend fails (502/503/504/500, error, timeout).

- Lifetime: the router owns it. The backend sends no `Cache-Control` on the catalog today
  (app/shop/api/catalog.py, responses.py); `Cache-Control`, `Expires` and `X-Accel-Expires` are
  ignored on these locations, so no backend header can stretch an entry past the router's bound
  (which also bounds what a blue/green switch may leave behind). An explicit refusal is still
  obeyed: a response with `Cache-Control: no-store`, `no-cache` or `private` is not stored.
- Stale answers are bounded by `inactive` (CACHE_INACTIVE): an entry nobody asked for in that long
  is dropped; only an entry still being asked for is served stale while the backend keeps failing.
- Every answer of a cached location carries `X-Cache` (nginx's `$upstream_cache_status`: HIT, MISS,
  EXPIRED, STALE, UPDATING, BYPASS, ...); other locations carry none.
- The slot is part of the key: after a switch the new slot's answers fill their own entries, so a
  cached body never contradicts the `X-Shop-Slot` header it is served with (a switch back may find the
  old slot's entries, at most `inactive` old, answered STALE while they refresh).
- The backend's `X-Request-Id` is echoed into a stored response, so the router sends nginx's own
  `$request_id` instead of the visitor's (on every proxied location: its JSON access log, format
  `shop_json`, carries the same id, so a router line finds the backend's lines): a visitor cannot
  plant a header value that others then receive.
- Where the cache lives: see `Router.cache_folder` (outside `folder`, which nginx's workers may be
  unable to enter).
"""

from __future__ import annotations

import grp
import hashlib
import math
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx

from shop_ops.resources.rate_limit import API_PATHS, RateLimit
from shop_ops.services.discovery import write_shop_targets
from shop_ops.services.processes import ServiceError, pid_alive, pids_using, port_is_open, read_pid, wait_gone

SLOTS = ("blue", "green")
BACKEND_PATHS = ("/api/", "= /healthz", "= /readyz", "= /version")
_SLOT_LINE = re.compile(r"^# slot: (\w+) backend (\d+) frontend (\d+)$", re.MULTILINE)
# The anonymous catalog reads the edge cache keeps (nginx location arguments). A regex location wins
# over the `/api/` prefix; product ids are integers, anything else under /api/products/ is not cached.
CATALOG_PATHS = ("= /api/products", "~ ^/api/products/[0-9]+$", "= /api/categories")
CACHE_ZONE = "shop_catalog"
CACHE_MAX_SIZE = "64m"
CACHE_INACTIVE = "10s"  # also the most a STALE answer can be behind (see the module docstring)
CACHE_LOCK_TIMEOUT = "2s"  # a collapsed request waits at most this long, then asks the backend itself
# nginx run by root starts its workers (and cache manager and loader) as this user: set explicitly, so
# the cache folder can be handed to the same user.
WORKER_USER = "nobody"


@dataclass(frozen=True)
class Upstreams:
    """Where the router sends traffic: a slot name and its two ports on 127.0.0.1."""

    slot: str
    backend_port: int
    frontend_port: int


# Mozilla's "intermediate" configuration (guidelines 5.7) for nginx 1.22 and OpenSSL 3. The DHE-RSA suites of
# the guideline are left out: the certificates are ECDSA P-256 (only ECDHE-ECDSA suites can be negotiated with
# them), and nginx 1.22 offers no DHE at all without `ssl_dhparam`.
TLS_PROTOCOLS = "TLSv1.2 TLSv1.3"
TLS_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
TLS_CURVES = "X25519:prime256v1:secp384r1"
ACME_CHALLENGE_PATH = "/.well-known/acme-challenge/"


def certificate_files(tls_folder: Path, environment: str) -> tuple[Path, Path]:
    """Where an environment's certificate lives: (full chain, private key) under `<tls_folder>/<environment>/`.

    nginx's master (root, or the user who started it) reads them at start and reload; its workers never do.
    """
    folder = tls_folder / environment
    return folder / "fullchain.pem", folder / "privkey.pem"


@dataclass(frozen=True)
class PublicListeners:
    """A router's public side: HTTPS on `https_port` (once its certificate exists), HTTP on `http_port`
    redirecting there, and ACME HTTP-01 challenges on `challenge_port`.

    The challenge port is shared by every router of the machine (Pebble validates every name on one
    port): each nginx binds it with `reuseport`, all serving the same `challenge_root`, so whichever
    master the kernel hands a connection to answers it. nginx's workers read `challenge_root`, so it
    must be a folder they can reach (see `shared_challenge_root`).
    """

    server_name: str
    https_port: int
    http_port: int
    challenge_port: int
    challenge_root: Path
    certificate: Path  # the full chain (leaf first), PEM
    certificate_key: Path
    hsts_max_age: int = 63072000

    def has_certificate(self) -> bool:
        return self.certificate.is_file() and self.certificate_key.is_file()


def shared_challenge_root(tls_folder: Path) -> Path:
    """The ACME challenge webroot that the routers of the state folder around `tls_folder` share.

    nginx's workers serve it, and run by root they run as `nobody`, who cannot pass a mode-700 folder
    (a checkout in root's home): so it lives under the system temp folder (mode 1777), named by a hash
    of `tls_folder`. Its content is public by design (tokens Pebble fetches over plain HTTP).
    """
    digest = hashlib.sha256(os.fsencode(os.path.abspath(tls_folder))).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"shop-ops-acme-challenges-{digest}"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise ServiceError("nginx not found: install it (apt-get install nginx-light)")
    return found


CONFIRMATIONS = 5  # answers in a row from the new slot before a switch counts as done


@dataclass
class Router:
    """The nginx router of one environment, listening on 127.0.0.1:`port`."""

    name: str
    folder: Path
    port: int
    cache_lifetime: float = 1.0  # seconds the catalog reads are kept; 0: no edge cache
    # Prometheus's discovery folder: every start and switch rewrites shop-<name>.json to the serving backend.
    metrics_targets: Path | None = None
    # The public HTTPS/HTTP listeners and the shared ACME challenge port; None: the internal listener only.
    public: PublicListeners | None = None
    # The API's rate limit per client address (see RATE_LIMIT_DOC): requests per second (0: no limit), the
    # burst answered at once beyond it, and the addresses or networks never limited (the pipeline's own).
    api_rate_per_second: float = 20.0
    api_burst: int = 40
    rate_limit_allow: tuple[str, ...] = ("127.0.0.1",)

    def __post_init__(self) -> None:
        if not self.cache_lifetime >= 0:
            raise ValueError(f"cache_lifetime must be 0 (off) or more seconds, not {self.cache_lifetime!r}")
        self.rate_limit  # noqa: B018 (validated at construction: a bad rate, burst or address fails here)

    @property
    def rate_limit(self) -> RateLimit:
        """The API's per-client rate limit, as nginx configuration (shop_ops/resources/rate_limit.py)."""
        return RateLimit(self.api_rate_per_second, self.api_burst, tuple(self.rate_limit_allow))

    @property
    def caching(self) -> bool:
        return self.cache_lifetime > 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def status_url(self) -> str:
        """nginx's stub_status page (answered to 127.0.0.1 only), read by the nginx exporter."""
        return f"{self.url}/router-status"

    @property
    def conf(self) -> Path:
        return self.folder / "nginx.conf"

    @property
    def upstreams_file(self) -> Path:
        return self.folder / "upstreams.conf"

    @property
    def pidfile(self) -> Path:
        return self.folder / "nginx.pid"

    @property
    def error_log(self) -> Path:
        return self.folder / "error.log"

    @property
    def cache_folder(self) -> Path:
        """Where this router's edge cache lives: a folder of its own under the system temp folder.

        Not in `folder`: nginx's workers, cache manager and cache loader write the cache, and run by
        root they run as `nobody`, who cannot pass a mode-700 folder on the way to `folder` (a checkout
        in root's home). The temp folder (mode 1777) lets every user through; the cache folder itself
        is mode 700 and owned by the workers' user, so only they (and root) read it. The name holds a
        hash of `folder`, so two routers or two stacks never share one. `start` creates it afresh and
        `stop` removes it: the cache is disposable.
        """
        digest = hashlib.sha256(os.fsencode(os.path.abspath(self.folder))).hexdigest()[:16]
        label = re.sub(r"[^A-Za-z0-9_.-]", "-", self.name)
        return Path(tempfile.gettempdir()) / f"shop-ops-router-cache-{label}-{digest}"

    # ------------------------------------------------------------------ config
    def _write_conf(self) -> None:
        tmp = self.folder / "tmp"
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        proxy = (
            "            proxy_pass http://{upstream};\n"
            "            proxy_http_version 1.1;\n"
            '            proxy_set_header Connection "";\n'
            "            proxy_set_header Host $http_host;\n"
            "            proxy_set_header X-Real-IP $remote_addr;\n"
            "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
            "            proxy_set_header X-Forwarded-Proto $scheme;\n"
            # nginx's own id: the backend logs it too, so a router line and a backend line share it.
            "            proxy_set_header X-Request-Id $request_id;\n"
            "            proxy_next_upstream error timeout;\n"
            "            proxy_connect_timeout 3s;\n"
            "            proxy_read_timeout 60s;\n"
            # Run by root, nginx's workers run as `nobody`, who cannot enter a folder only root may
            # (root's home is mode 700): they must never need a file in `folder`. So no response or
            # request body goes to a temporary file; nginx passes bodies through its memory buffers.
            "            proxy_max_temp_file_size 0;\n"
            "            proxy_request_buffering off;\n"
        )
        limit = self.rate_limit.location_directives()  # on the API's locations, not on probes
        backend = "".join(
            f"        location {path} {{\n{proxy.format(upstream='shop_backend')}"
            f"{limit if path in API_PATHS else ''}        }}\n"
            for path in BACKEND_PATHS
        )
        # A location with add_header of its own inherits none of the server's: they are repeated.
        backend += self.rate_limit.answer_location(("X-Shop-Slot $shop_slot", "Strict-Transport-Security $shop_hsts"))
        cache_http = ""
        if self.caching:
            backend += "".join(
                f"        location {path} {{\n{proxy.format(upstream='shop_backend')}{self._cache_directives()}"
                f"{limit}        }}\n"
                for path in CATALOG_PATHS
            )
            cache_http = (
                "\n    # The edge cache of anonymous catalog reads (module docstring of shop_ops/resources/router.py).\n"
                # use_temp_path=off: a response being stored is written in the cache folder itself, not
                # in proxy_temp_path (inside `folder`, which the workers may not enter).
                f"    proxy_cache_path {_quoted(self.cache_folder)} levels=1:2 keys_zone={CACHE_ZONE}:4m"
                f" max_size={CACHE_MAX_SIZE} inactive={CACHE_INACTIVE} use_temp_path=off;\n"
                # Evaluated once the backend's headers are in (proxy_no_cache), never before: volatile.
                "    map $upstream_http_cache_control $shop_cache_refused {\n"
                "        volatile;\n"
                "        default 0;\n"
                '        "~*(no-store|no-cache|private)" 1;\n'
                "    }\n"
            )
        # The routes, served alike by the internal listener and the public HTTPS one.
        routes = f"""        add_header X-Shop-Slot $shop_slot always;
        add_header Strict-Transport-Security $shop_hsts always;

        location = /router-health {{
            access_log off;
            default_type text/plain;
            return 200 "ok\\n";
        }}

        # nginx's connection and request counters, for the nginx exporter (status_url); loopback only.
        location = /router-status {{
            stub_status;
            access_log off;
            allow 127.0.0.1;
            deny all;
        }}
{backend}        location / {{
{proxy.format(upstream="shop_frontend")}        }}
"""
        hsts = f"max-age={self.public.hsts_max_age}" if self.public else ""
        # Run by root, name the workers' user: the cache folder is handed to that same user.
        user = f"user {WORKER_USER} {_group_name(_worker_ids()[1])};\n" if os.geteuid() == 0 else ""
        text = f"""# The {self.name} router, written by shop-ops (shop_ops/resources/router.py); edits are overwritten.
{user}worker_processes 1;
pid {_quoted(self.pidfile)};
error_log {_quoted(self.error_log)} warn;

events {{
    worker_connections 2048;
}}

http {{
    # One JSON object per request, read by the central log collector (shop_ops/observability/logs.py).
    # The path only ($uri): a query string may carry what must not be stored.
    log_format shop_json escape=json '{{"ts":"$time_iso8601","msec":$msec,"request_id":"$request_id",'
        '"method":"$request_method","uri":"$uri","status":$status,"request_time":$request_time,'
        '"upstream_addr":"$upstream_addr","upstream_status":"$upstream_status","slot":"$shop_slot",'
        '"environment":"{_log_name(self.name)}","bytes_sent":$body_bytes_sent}}';
    access_log {_quoted(self.folder / "access.log")} shop_json buffer=64k flush=2s;
    client_body_temp_path {_quoted(tmp / "client_body")};
    proxy_temp_path {_quoted(tmp / "proxy")};
    fastcgi_temp_path {_quoted(tmp / "fastcgi")};
    uwsgi_temp_path {_quoted(tmp / "uwsgi")};
    scgi_temp_path {_quoted(tmp / "scgi")};
    server_tokens off;
    keepalive_timeout 65s;
{cache_http}{self.rate_limit.http_directives()}
    # upstream shop_backend, upstream shop_frontend and $shop_slot: rewritten by a switch
    include {_quoted(self.upstreams_file)};

    # HSTS on HTTPS answers only (nginx sends no header whose value is empty). Every level that has an
    # add_header of its own repeats it: nginx inherits add_header only into levels that have none.
    map $scheme $shop_hsts {{
        default "";
        https "{hsts}";
    }}

    server {{
        listen 127.0.0.1:{self.port} default_server;
        server_name _;
{routes}    }}
{self._public_servers(routes)}}}
"""
        _write_if_changed(self.conf, text)

    def _cache_directives(self) -> str:
        """The cache part of a catalog location (added to its proxy directives)."""
        lifetime = max(1, math.ceil(self.cache_lifetime))  # nginx keeps entries for whole seconds
        return (
            # X-Request-Id is nginx's $request_id (the proxy directives): the backend echoes it, and a stored
            # answer shows it to everyone, so never the visitor's.
            f"            proxy_cache {CACHE_ZONE};\n"
            "            proxy_cache_methods GET HEAD;\n"
            # The slot too, so a body always matches the X-Shop-Slot it is served with after a switch.
            '            proxy_cache_key "$shop_slot $scheme://$http_host$request_uri";\n'
            f"            proxy_cache_valid 200 {lifetime}s;\n"
            # The router owns the lifetime; an explicit refusal (no-store, private) still counts, below.
            "            proxy_ignore_headers Cache-Control Expires X-Accel-Expires;\n"
            # A visitor who sends credentials or cookies gets the backend's own answer, never stored.
            "            proxy_cache_bypass $http_authorization $http_cookie;\n"
            "            proxy_no_cache $http_authorization $http_cookie $shop_cache_refused;\n"
            "            proxy_cache_lock on;\n"
            f"            proxy_cache_lock_timeout {CACHE_LOCK_TIMEOUT};\n"
            f"            proxy_cache_lock_age {CACHE_LOCK_TIMEOUT};\n"
            "            proxy_cache_use_stale updating error timeout http_500 http_502 http_503 http_504;\n"
            "            proxy_cache_background_update on;\n"
            # add_header here replaces the server's: X-Shop-Slot is repeated.
            "            add_header X-Shop-Slot $shop_slot always;\n"
            "            add_header X-Cache $upstream_cache_status always;\n"
            "            add_header Strict-Transport-Security $shop_hsts always;\n"
        )

    def _public_servers(self, routes: str) -> str:
        """The public server blocks: ACME challenges, HTTP -> HTTPS, and HTTPS once the certificate exists."""
        public = self.public
        if public is None:
            return ""
        challenges = (
            f"        location {ACME_CHALLENGE_PATH} {{\n"
            f"            root {_quoted(public.challenge_root)};\n"
            "            default_type text/plain;\n"
            "        }\n"
        )
        # The configured name, not the visitor's Host header, goes into the redirect.
        servers = f"""
    # ACME HTTP-01 challenges of every router of this machine: one port, bound by each nginx with reuseport.
    server {{
        listen 127.0.0.1:{public.challenge_port} reuseport;
        server_name _;
{challenges}        location / {{
            return 404;
        }}
    }}

    # Plain HTTP: challenges answered, everything else sent to HTTPS.
    server {{
        listen 127.0.0.1:{public.http_port};
        server_name _;
{challenges}        location / {{
            return 301 https://{public.server_name}:{public.https_port}$request_uri;
        }}
    }}
"""
        if not public.has_certificate():
            return servers  # no HTTPS before the first certificate (install_certificate reloads)
        return (
            servers
            + f"""
    # HTTPS: Mozilla's intermediate configuration (TLS_PROTOCOLS, TLS_CIPHERS in shop_ops/resources/router.py).
    server {{
        listen 127.0.0.1:{public.https_port} ssl http2;
        server_name {public.server_name};
        ssl_certificate {_quoted(public.certificate)};
        ssl_certificate_key {_quoted(public.certificate_key)};
        ssl_protocols {TLS_PROTOCOLS};
        ssl_ciphers {TLS_CIPHERS};
        ssl_ecdh_curve {TLS_CURVES};
        ssl_prefer_server_ciphers off;
        ssl_session_cache shared:shop_tls:10m;
        ssl_session_timeout 1d;
        ssl_session_tickets off;
{routes}    }}
"""
        )

    def install_certificate(self, timeout: float = 10) -> None:
        """Serve the certificate now in `public.certificate`: rewrite the config (the HTTPS server appears
        with the first certificate), check it, graceful reload, and wait until the HTTPS port presents it.

        nginx's graceful reload lets old workers finish their requests: no request fails (tests/security/test_tls.py).
        """
        if self.public is None or not self.public.has_certificate():
            raise ServiceError(
                f"the {self.name} router has no certificate to install (public listeners or files missing)"
            )
        self.reload()
        if not self.running():
            return  # the next start serves it
        expected = leaf_der(self.public.certificate)
        deadline, in_a_row = time.monotonic() + timeout, 0
        while in_a_row < CONFIRMATIONS:
            in_a_row = in_a_row + 1 if self.served_certificate() == expected else 0
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"the {self.name} router does not present {self.public.certificate} on port "
                    f"{self.public.https_port} {timeout:.0f}s after its reload; see {self.error_log}"
                )
            if in_a_row == 0:
                time.sleep(0.05)

    def reload(self) -> None:
        """Rewrite nginx.conf from this object, check it, and reload a running router gracefully."""
        previous = self.conf.read_text() if self.conf.exists() else None
        self._write_conf()
        try:
            self.test_config()
        except ServiceError:
            if previous is not None:
                _write_if_changed(self.conf, previous)
            raise
        if self.running():
            result = self._nginx("-s", "reload")
            if result.returncode != 0:
                raise ServiceError(f"nginx -s reload ({self.name} router): {result.stderr.strip()}")

    def served_certificate(self) -> bytes | None:
        """The DER leaf certificate the HTTPS port presents for `server_name` now (None: no TLS answer)."""
        if self.public is None:
            return None
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # what is served is compared, not trusted
        try:
            with socket.create_connection(("127.0.0.1", self.public.https_port), timeout=2) as raw:
                with context.wrap_socket(raw, server_hostname=self.public.server_name) as tls:
                    return tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError):
            return None

    def _prepare_cache_folder(self, fresh: bool) -> None:
        """Create the cache folder (mode 700, owned by the workers' user); `fresh`: drop what was there.

        The name is predictable and the temp folder open to all, so a folder found in its place is not
        trusted: it is removed and made again with an exclusive mkdir, which fails rather than adopt
        one someone else created in between. (nginx would otherwise create it itself, and chown
        whatever it finds there to its workers.)
        """
        path = self.cache_folder
        uid, gid = _worker_ids()
        if os.geteuid() == 0:
            _check_reachable(path, uid, gid)
        if not fresh:
            try:
                info = path.lstat()
            except FileNotFoundError:
                pass
            else:
                if stat.S_ISDIR(info.st_mode) and info.st_uid == uid and stat.S_IMODE(info.st_mode) == 0o700:
                    return
        _remove_cache_folder(path)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            raise ServiceError(f"{path} appeared while the {self.name} router was making it: not used") from None
        path.chmod(0o700)
        if os.geteuid() == 0:
            os.chown(path, uid, gid)

    @staticmethod
    def render_upstreams(target: Upstreams) -> str:
        return (
            f"# slot: {target.slot} backend {target.backend_port} frontend {target.frontend_port}\n"
            "# Written by shop-ops on each switch (then nginx -s reload); edits are overwritten.\n"
            "upstream shop_backend {\n"
            f"    server 127.0.0.1:{target.backend_port} max_fails=0;\n"
            "    keepalive 32;\n"
            "}\n"
            "upstream shop_frontend {\n"
            f"    server 127.0.0.1:{target.frontend_port} max_fails=0;\n"
            "    keepalive 16;\n"
            "}\n"
            "map $host $shop_slot {\n"
            f"    default {target.slot};\n"
            "}\n"
        )

    def serving(self) -> Upstreams | None:
        """What the upstream file points at (None before the first switch)."""
        try:
            match = _SLOT_LINE.search(self.upstreams_file.read_text())
        except OSError:
            return None
        if match is None:
            return None
        return Upstreams(match.group(1), int(match.group(2)), int(match.group(3)))

    def _nginx(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [nginx_binary(), "-p", str(self.folder), "-e", str(self.error_log), "-c", str(self.conf), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def test_config(self) -> None:
        result = self._nginx("-t", "-q")
        if result.returncode != 0:
            raise ServiceError(f"nginx config of the {self.name} router is invalid: {result.stderr.strip()}")

    # ------------------------------------------------------------------ lifecycle
    def running(self) -> bool:
        pid = read_pid(self.pidfile)
        return pid is not None and pid_alive(pid, "nginx")

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/router-health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def start(self, target: Upstreams, timeout: float = 10) -> None:
        """Start nginx pointing at `target` (or keep the running one and switch it there)."""
        if target.slot not in SLOTS:
            raise ServiceError(f"unknown slot {target.slot!r}: use blue or green")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_conf()
        if self.running():
            self.switch(target)
            return
        self.pidfile.unlink(missing_ok=True)
        if port_is_open(self.port):
            raise ServiceError(f"port {self.port} for the {self.name} router is already in use")
        if self.public is not None:  # (the challenge port is shared with the other routers: reuseport)
            for port, what in ((self.public.https_port, "HTTPS"), (self.public.http_port, "HTTP")):
                if port_is_open(port):
                    raise ServiceError(f"port {port} for the {self.name} router's {what} listener is already in use")
        _write_if_changed(self.upstreams_file, self.render_upstreams(target))
        if self.caching:
            self._prepare_cache_folder(fresh=True)
        self.test_config()
        # The daemonized master must not keep a pipe of ours open: its stderr goes to a file.
        startup_log = self.folder / "startup.log"
        with open(startup_log, "w") as log:
            code = subprocess.run(
                [nginx_binary(), "-p", str(self.folder), "-e", str(self.error_log), "-c", str(self.conf)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=30,
            ).returncode  # fmt: skip
        if code != 0:
            raise ServiceError(f"nginx ({self.name} router) did not start: {startup_log.read_text().strip()}")
        deadline = time.monotonic() + timeout
        while not self.answers():
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"the {self.name} router on port {self.port} did not answer; see {self.error_log}")
            time.sleep(0.05)
        self._publish(target)

    def switch(self, target: Upstreams, timeout: float = 10) -> None:
        """Point the router at `target`: rewrite the upstream file, check it, reload, confirm."""
        if target.slot not in SLOTS:
            raise ServiceError(f"unknown slot {target.slot!r}: use blue or green")
        previous = self.upstreams_file.read_text() if self.upstreams_file.exists() else None
        _write_if_changed(self.upstreams_file, self.render_upstreams(target))
        running = self.running()
        # What the written config names counts, not this object's lifetime (RouterResource builds a
        # Router with the default one just to switch).
        if running and self.conf.exists() and _quoted(self.cache_folder) in self.conf.read_text():
            self._prepare_cache_folder(fresh=False)  # kept as is when it is there and right
        try:
            self.test_config()
        except ServiceError:
            if previous is not None:
                _write_if_changed(self.upstreams_file, previous)
            raise
        if not running:
            # `nginx -t` creates the paths it names, the cache folder too: nothing uses it yet.
            _remove_cache_folder(self.cache_folder)
            return  # the next start reads the file
        result = self._nginx("-s", "reload")
        if result.returncode != 0:
            raise ServiceError(f"nginx -s reload ({self.name} router): {result.stderr.strip()}")
        # Old workers may still accept a connection or two while they wind down: confirmed means
        # several answers in a row from the new configuration.
        deadline, in_a_row = time.monotonic() + timeout, 0
        while in_a_row < CONFIRMATIONS:
            in_a_row = in_a_row + 1 if self.slot_answering() == target.slot else 0
            if time.monotonic() > deadline:
                raise ServiceError(f"the {self.name} router did not switch to {target.slot} within {timeout:.0f}s")
            if in_a_row == 0:
                time.sleep(0.05)
        self._publish(target)

    def _publish(self, target: Upstreams) -> None:
        """Point Prometheus's discovery file of this environment at the backend that now serves."""
        if self.metrics_targets is not None:
            write_shop_targets(self.metrics_targets, self.name, [(target.slot, f"127.0.0.1:{target.backend_port}")])

    def slot_answering(self) -> str | None:
        """The slot the running router says it serves (its X-Shop-Slot header), None if it is down."""
        try:
            return httpx.get(f"{self.url}/router-health", timeout=2).headers.get("x-shop-slot")
        except httpx.TransportError:
            return None

    def reap_leftovers(self) -> list[int]:
        """Kill nginx processes a crash left holding this router's files (not running: no master)."""
        if self.running():
            return []
        pids = pids_using(self.folder, "nginx")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in pids:
            wait_gone(pid, 5)
        self.pidfile.unlink(missing_ok=True)
        return pids

    def stop(self, timeout: float = 15) -> None:
        """Stop this router (by its pid file only), wait until it is gone, and remove its cache."""
        pid = read_pid(self.pidfile)
        if pid is not None and pid_alive(pid, "nginx"):
            os.kill(pid, signal.SIGTERM)  # the master exits after its workers, cache manager and loader
            if not wait_gone(pid, timeout):
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 5)
        self.pidfile.unlink(missing_ok=True)
        _remove_cache_folder(self.cache_folder)


def _log_name(name: str) -> str:
    """A router name as it is written into the JSON access log's format (a constant string there)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ServiceError(
            f"router name {name!r}: use letters, digits, '_', '.' or '-' (it is written into the access log)"
        )
    return name


def leaf_der(chain: Path) -> bytes:
    """The first certificate of a PEM chain file, DER-encoded (what a TLS server presents as its leaf)."""
    text = chain.read_text()
    end = "-----END CERTIFICATE-----"
    if end not in text:
        raise ServiceError(f"{chain} holds no PEM certificate")
    return ssl.PEM_cert_to_DER_cert(text[: text.index(end) + len(end)] + "\n")


def _quoted(path: Path) -> str:
    """A path as one nginx argument, whatever spaces or quotes it holds."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _worker_ids() -> tuple[int, int]:
    """uid and gid nginx's workers run as: WORKER_USER when started by root, else the current user."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    try:
        entry = pwd.getpwnam(WORKER_USER)
    except KeyError:
        raise ServiceError(f"no user {WORKER_USER!r} for nginx's workers on this machine") from None
    return entry.pw_uid, entry.pw_gid


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        raise ServiceError(f"no group {gid} (of user {WORKER_USER!r}) for nginx's workers") from None


def _check_reachable(path: Path, uid: int, gid: int) -> None:
    """Fail with a clear message when the workers' user cannot pass some folder above `path`."""
    for parent in path.parents:
        info = parent.stat()
        bit = stat.S_IXUSR if info.st_uid == uid else stat.S_IXGRP if info.st_gid == gid else stat.S_IXOTH
        if not info.st_mode & bit:
            raise ServiceError(
                f"nginx's workers (user {WORKER_USER}) cannot enter {parent}, on the way to their cache "
                f"folder {path}: set TMPDIR to a folder they can reach (e.g. /tmp)"
            )


def _remove_cache_folder(path: Path) -> None:
    """Remove a cache folder, or whatever stands in its place (a symlink is removed, not followed)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _write_if_changed(path: Path, text: str) -> None:
    """Atomic replace (nginx never reads half a file), skipped when the content is the same."""
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RouterError(RuntimeError):
    """No router for that environment or slot."""


class SlotPortsConfig(dg.Config):
    """The two ports one slot's containers listen on (127.0.0.1)."""

    backend_port: int
    frontend_port: int


class EnvironmentRouter(dg.Config):
    """One environment's router: its folder (config, pid, logs), its port and both slots' ports."""

    folder: str
    port: int
    blue: SlotPortsConfig
    green: SlotPortsConfig
    # Public listeners (RouterResource.tls_folder set): HTTPS for `server_name` and HTTP redirecting to it.
    https_port: int = 0
    http_port: int = 0
    server_name: str = ""


class RouterResource(dg.ConfigurableResource):
    """The routers of the local environments (`shop-ops local up` starts them; releases switch them)."""

    environments: dict[str, EnvironmentRouter]
    # Prometheus's discovery folder (shop_ops/services/discovery.py); empty: no metrics discovery.
    metrics_targets_dir: str = ""
    # The edge cache's lifetime (performance.edge_cache_seconds): a certificate install rewrites nginx.conf, so
    # the resource must describe the router as `shop-ops local up` started it.
    cache_lifetime: float = 1.0
    # The certificates (certificate_files) and the shared ACME challenge port and webroot; empty: no public listeners.
    tls_folder: str = ""
    challenge_port: int = 0
    challenge_root: str = ""
    hsts_max_age_seconds: int = 63072000
    # The API's rate limit per client address (SecuritySettings; shop_ops/resources/rate_limit.py).
    api_rate_per_second: float = 20.0
    api_burst: int = 40
    rate_limit_allow: list[str] = ["127.0.0.1"]  # noqa: RUF012 (a pydantic field: copied per instance)

    def _environment(self, environment: str) -> EnvironmentRouter:
        if environment not in self.environments:
            known = ", ".join(sorted(self.environments)) or "none"
            raise RouterError(f"no router for environment {environment!r} (known: {known})")
        return self.environments[environment]

    def router(self, environment: str) -> Router:
        env = self._environment(environment)
        return Router(
            environment,
            Path(env.folder),
            env.port,
            cache_lifetime=self.cache_lifetime,
            metrics_targets=Path(self.metrics_targets_dir) if self.metrics_targets_dir else None,
            public=self.public_listeners(environment),
            api_rate_per_second=self.api_rate_per_second,
            api_burst=self.api_burst,
            rate_limit_allow=tuple(self.rate_limit_allow),
        )

    def public_listeners(self, environment: str) -> PublicListeners | None:
        """The environment's HTTPS/HTTP listeners and the shared challenge port; None without a TLS folder."""
        env = self._environment(environment)
        if not self.tls_folder:
            return None
        if not (env.https_port and env.http_port and env.server_name and self.challenge_port and self.challenge_root):
            raise RouterError(
                f"the {environment} router has a TLS folder but not all of https_port, http_port, server_name, "
                "challenge_port and challenge_root: set them (shop_ops/definitions.py builds them from tls: settings)"
            )
        certificate, key = certificate_files(Path(self.tls_folder), environment)
        return PublicListeners(
            server_name=env.server_name,
            https_port=env.https_port,
            http_port=env.http_port,
            challenge_port=self.challenge_port,
            challenge_root=Path(self.challenge_root),
            certificate=certificate,
            certificate_key=key,
            hsts_max_age=self.hsts_max_age_seconds,
        )

    def slot_ports(self, environment: str, slot: str) -> Upstreams:
        """The ports `slot` of `environment` listens on."""
        if slot not in SLOTS:
            raise RouterError(f"unknown slot {slot!r}: use blue or green")
        ports = getattr(self._environment(environment), slot)
        return Upstreams(slot, ports.backend_port, ports.frontend_port)
