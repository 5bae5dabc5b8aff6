#!/usr/bin/env bash
# Builds the locally made base images from debootstrap bookworm minbase (podman import), once.
#
# usage: scripts/build-base-images.sh [--force] [--no-cache] [TARGET...]
#   TARGET: python nginx (the default: what build-images.sh needs)
#           postgres redis (datastores for compose.podman.yaml; "services" = both)
#           all
#   --force     rebuild even when the image exists with the current recipe
#   --no-cache  do not load from / save to the archive cache in $SHOP_OPS_CACHE
#
# Images (single layer each, linux/amd64):
#   localhost/shop-base-python:bookworm   minbase + python3 (3.11) + ca-certificates; no docs/man/locales
#   localhost/shop-base-nginx:bookworm    distroless-style: nginx + the libraries ldd lists + a
#                                         few busybox applets (sh, sed, wget for entrypoint and
#                                         HEALTHCHECK) + minimal /etc; no package manager
#   localhost/shop-postgres:15-bookworm   minbase + Debian postgresql-15 (JIT/LLVM left out); the
#                                         postgres:15 image's env interface (POSTGRES_USER, ...)
#   localhost/shop-redis:7-bookworm       minbase + Debian redis-server 7.0
#
# "Once": an image is skipped when it exists and its label io.shop-ops.base.recipe equals
# the hash of this script and scripts/base-images/*. Built images are also saved as
# archives under $SHOP_OPS_CACHE/base-images (default ~/.cache/shop-ops), so a fresh clone
# on the same machine loads them in seconds instead of debootstrapping again. The
# debootstrapped minbase rootfs itself is cached there too (refreshed after 7 days; each
# image also runs apt-get upgrade against bookworm-updates and bookworm-security).
set -euo pipefail

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/podman-env.sh
source "$SCRIPTS_DIR/podman-env.sh"

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ARCH=amd64
MULTIARCH=x86_64-linux-gnu
WORK=$SHOP_OPS_STATE/base-build
CACHE_DIR=$SHOP_OPS_CACHE/base-images
MINBASE_MAX_AGE_DAYS=${MINBASE_MAX_AGE_DAYS:-7}

declare -A IMAGE_REF=(
    [python]=localhost/shop-base-python:bookworm
    [nginx]=localhost/shop-base-nginx:bookworm
    [postgres]=localhost/shop-postgres:15-bookworm
    [redis]=localhost/shop-redis:7-bookworm
)

die() { echo "build-base-images: error: $*" >&2; exit 1; }
log() { echo "build-base-images: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, podman storage)"
for tool in debootstrap podman tar chroot; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

FORCE=0
USE_CACHE=1
TARGETS=()
for arg in "$@"; do
    case $arg in
        --force) FORCE=1 ;;
        --no-cache) USE_CACHE=0 ;;
        python | nginx | postgres | redis) TARGETS+=("$arg") ;;
        services) TARGETS+=(postgres redis) ;;
        all) TARGETS+=(python nginx postgres redis) ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (see --help)" ;;
    esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(python nginx)

# Everything that defines the images' content; a change rebuilds them.
RECIPE=$(cat "$SCRIPTS_DIR/build-base-images.sh" "$SCRIPTS_DIR"/base-images/* 2>/dev/null |
    sha256sum | cut -c1-16)

mkdir -p "$WORK" "$CACHE_DIR"
# One build at a time per state folder (the work dirs and apt.log are shared).
exec 9>"$WORK/.lock"
flock 9
: >"$WORK/apt.log"

# ---------------------------------------------------------------- chroot helpers
MOUNTED=()
cleanup() {
    local m
    for m in "${MOUNTED[@]}"; do
        umount -l "$m" 2>/dev/null || true
    done
}
trap cleanup EXIT

mount_proc() {
    mkdir -p "$1/proc"
    mount -t proc proc "$1/proc"
    MOUNTED+=("$1/proc")
}

umount_proc() {
    umount "$1/proc"
    local kept=() m
    for m in "${MOUNTED[@]}"; do [ "$m" = "$1/proc" ] || kept+=("$m"); done
    MOUNTED=("${kept[@]+"${kept[@]}"}")
}

in_chroot() {
    DEBIAN_FRONTEND=noninteractive LC_ALL=C LANG=C \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        chroot "$@"
}

# apt_in ROOT ARGS: apt-get in the chroot; output goes to $WORK/apt.log, shown on failure.
apt_in() {
    local root=$1
    shift
    echo "+ apt-get $*" >>"$WORK/apt.log"
    if ! in_chroot "$root" apt-get -q -y -o Dpkg::Options::=--force-confold "$@" >>"$WORK/apt.log" 2>&1; then
        tail -n 30 "$WORK/apt.log" >&2
        die "apt-get $* failed in $root (log: $WORK/apt.log)"
    fi
}

# A cached debootstrap --variant=minbase tarball, refreshed after MINBASE_MAX_AGE_DAYS.
minbase_tarball() {
    local tarball=$CACHE_DIR/rootfs-$SUITE-minbase.tar
    if [ -f "$tarball" ] && [ -z "$(find "$tarball" -mtime +"$MINBASE_MAX_AGE_DAYS")" ]; then
        echo "$tarball"
        return
    fi
    # debootstrap's dependency resolution splits its target path on spaces: into a clone under
    # "shop ops/" it silently fetches only the required packages (no libc6) and then fails to
    # chroot. So it works in a folder of its own under /var/tmp, whatever the clone's path.
    local dir t0=$SECONDS
    dir=$(mktemp -d /var/tmp/shop-ops-minbase.XXXXXX)
    log "debootstrap --variant=minbase $SUITE from $MIRROR (about a minute)"
    if ! debootstrap --variant=minbase --arch="$ARCH" "$SUITE" "$dir" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1; then
        tail -n 30 "$WORK/debootstrap.log" >&2
        rm -rf "$dir"
        die "debootstrap failed (log: $WORK/debootstrap.log)"
    fi
    tar -C "$dir" --numeric-owner -cf "$tarball.tmp" .
    mv -f "$tarball.tmp" "$tarball"
    rm -rf "$dir"
    log "minbase rootfs cached: $tarball ($((SECONDS - t0)) s)"
    echo "$tarball"
}

# new_rootfs DIR: fresh minbase copy, sources with updates + security, dpkg excludes,
# no service starts, /proc mounted, package lists fetched and upgraded.
new_rootfs() {
    local dir=$1 tarball
    tarball=$(minbase_tarball)
    rm -rf "$dir"
    mkdir -p "$dir"
    tar -C "$dir" --numeric-owner -xf "$tarball"
    cat >"$dir/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
    cat >"$dir/etc/dpkg/dpkg.cfg.d/01-shop-ops-excludes" <<'EOF'
# Images carry no documentation, manuals or translations (copyright files stay).
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
path-exclude=/usr/share/linda/*
EOF
    cat >"$dir/etc/apt/apt.conf.d/01-shop-ops" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
    printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
    chmod 755 "$dir/usr/sbin/policy-rc.d"
    cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
    mount_proc "$dir"
    apt_in "$dir" update
    apt_in "$dir" upgrade
}

# strip_rootfs DIR: caches, lists, logs, docs that debootstrap installed before the excludes.
strip_rootfs() {
    local dir=$1
    apt_in "$dir" clean
    umount_proc "$dir"
    rm -f "$dir/usr/sbin/policy-rc.d"
    : >"$dir/etc/resolv.conf"
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/* "$dir"/var/cache/debconf/*-old \
        "$dir"/var/lib/dpkg/*-old "$dir"/var/log/* "$dir"/tmp/* "$dir"/var/tmp/* \
        "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/* \
        "$dir"/usr/share/lintian "$dir"/usr/share/linda "$dir"/root/.bash_history
    find "$dir/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
    # Keeps /etc/machine-id empty like upstream images (filled per container if ever needed).
    [ -f "$dir/etc/machine-id" ] && : >"$dir/etc/machine-id"
    return 0
}

# import_rootfs DIR REF [--change ...]: one-layer image from DIR.
import_rootfs() {
    local dir=$1 ref=$2
    shift 2
    local created
    created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    tar -C "$dir" --numeric-owner -cf "$WORK/rootfs.tar" .
    podman import -q \
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "ENV LANG=C.UTF-8" \
        --change "LABEL io.shop-ops.base.recipe=$RECIPE" \
        --change "LABEL org.opencontainers.image.created=$created" \
        --change "LABEL org.opencontainers.image.base.name=debian:$SUITE-minbase" \
        "$@" --message "shop-ops build-base-images.sh ($RECIPE)" \
        "$WORK/rootfs.tar" "$ref" >/dev/null
    rm -f "$WORK/rootfs.tar"
}

# ---------------------------------------------------------------- the images
build_python() {
    local dir=$WORK/python
    new_rootfs "$dir"
    apt_in "$dir" install python3 ca-certificates
    strip_rootfs "$dir"
    import_rootfs "$dir" "${IMAGE_REF[python]}" \
        --change "LABEL org.opencontainers.image.title=shop-base-python" \
        --change "LABEL org.opencontainers.image.description=Debian $SUITE minbase + python3 + ca-certificates" \
        --change 'CMD ["python3"]'
    rm -rf "$dir"
}

# copy_into ROOT OUT PATH: PATH from ROOT into OUT: the resolved file, plus a symlink when
# PATH's last component is itself a link (libz.so.1 -> libz.so.1.2.13). Directory links
# (/lib -> usr/lib) exist in OUT already.
copy_into() {
    local root=$1 out=$2 path=$3 real link
    real=$(in_chroot "$root" readlink -f "$path")
    link=$(in_chroot "$root" readlink -f "$(dirname "$path")")/$(basename "$path")
    mkdir -p "$out$(dirname "$real")"
    cp -p "$root$real" "$out$real"
    if [ "$real" != "$link" ]; then
        mkdir -p "$out$(dirname "$link")"
        if [ "$(dirname "$real")" = "$(dirname "$link")" ]; then
            ln -sfn "$(basename "$real")" "$out$link"
        else
            ln -sfn "$real" "$out$link"
        fi
    fi
}

# package_of ROOT PATH: the Debian package owning PATH (merged /usr: dpkg may record
# either the /usr or the / spelling of a path).
package_of() {
    local root=$1 path=$2 real candidate
    real=$(in_chroot "$root" readlink -f "$path")
    for candidate in "$path" "$real" "${path#/usr}" "${real#/usr}"; do
        in_chroot "$root" dpkg -S "$candidate" 2>/dev/null | head -n1 | cut -d: -f1 | grep . && return 0
    done
    return 1
}

build_nginx() {
    local root=$WORK/nginx-pkg out=$WORK/nginx-rootfs
    new_rootfs "$root"
    # nginx-light is nginx + the echo module on bookworm; the nginx binary is what we copy.
    apt_in "$root" install nginx busybox-static

    rm -rf "$out"
    mkdir -p "$out"/usr/{bin,sbin,lib/"$MULTIARCH",lib64,share/doc} "$out"/etc/nginx \
        "$out"/{tmp,run,proc,sys,dev,var/lib/dpkg/status.d}
    chmod 1777 "$out/tmp"
    ln -s usr/bin "$out/bin"
    ln -s usr/sbin "$out/sbin"
    ln -s usr/lib "$out/lib"
    ln -s usr/lib64 "$out/lib64"

    local files=(/usr/sbin/nginx /usr/bin/busybox) lib
    while read -r lib; do
        files+=("$lib")
    done < <(in_chroot "$root" ldd /usr/sbin/nginx |
        awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
    local f pkg packages=()
    for f in "${files[@]}"; do
        copy_into "$root" "$out" "$f"
        pkg=$(package_of "$root" "$f") && packages+=("$pkg")
    done
    # Busybox applets needed by the entrypoint (sh, sed) and the HEALTHCHECK (wget).
    local applet
    for applet in sh cat echo env id ls mkdir printf rm sed sleep test wget; do
        ln -s busybox "$out/usr/bin/$applet"
    done
    cp -p "$root/etc/nginx/mime.types" "$out/etc/nginx/mime.types"
    cp -p "$root/etc/os-release" "$root/etc/debian_version" "$out/etc/" 2>/dev/null ||
        cp -p "$root/usr/lib/os-release" "$out/etc/os-release"
    cat >"$out/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
shop:x:10001:10001:shop:/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
    cat >"$out/etc/group" <<'EOF'
root:x:0:
shop:x:10001:
nogroup:x:65534:
EOF
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$out/etc/nsswitch.conf"
    # Licences and package records of what was copied: scanners read status.d like on
    # other distroless images.
    for pkg in $(printf '%s\n' "${packages[@]}" | sort -u); do
        in_chroot "$root" dpkg -s "$pkg" >"$out/var/lib/dpkg/status.d/$pkg"
        if [ -f "$root/usr/share/doc/$pkg/copyright" ]; then
            mkdir -p "$out/usr/share/doc/$pkg"
            cp -p "$root/usr/share/doc/$pkg/copyright" "$out/usr/share/doc/$pkg/"
        fi
    done
    umount_proc "$root"

    # The copy must run on its own: fail the build now, not in the frontend build.
    chroot "$out" /usr/sbin/nginx -v >/dev/null 2>&1 || die "copied nginx does not run in the scratch rootfs"
    [ "$(chroot "$out" /usr/bin/sh -c 'echo x | sed s/x/y/ && test -x /usr/bin/wget && echo ok')" = "$(printf 'y\nok')" ] ||
        die "busybox applets do not run in the scratch rootfs"

    import_rootfs "$out" "${IMAGE_REF[nginx]}" \
        --change "LABEL org.opencontainers.image.title=shop-base-nginx" \
        --change "LABEL org.opencontainers.image.description=nginx from Debian $SUITE, distroless-style (nginx + its libraries + busybox sh/sed/wget)" \
        --change "STOPSIGNAL SIGQUIT" \
        --change 'CMD ["nginx", "-e", "stderr", "-g", "daemon off;"]'
    rm -rf "$root" "$out"
}

build_postgres() {
    local dir=$WORK/postgres
    new_rootfs "$dir"
    # JIT (LLVM 14 + z3, ~130 MB) is left out; PostgreSQL runs without JIT when the
    # provider library is missing. No cluster is created at install time.
    cat >"$dir/etc/dpkg/dpkg.cfg.d/02-shop-ops-no-jit" <<'EOF'
path-exclude=/usr/lib/postgresql/*/lib/llvmjit*
path-exclude=/usr/lib/postgresql/*/lib/bitcode/*
path-exclude=/usr/lib/x86_64-linux-gnu/libLLVM*
path-exclude=/usr/lib/llvm-*/*
path-exclude=/usr/lib/x86_64-linux-gnu/libz3*
EOF
    mkdir -p "$dir/etc/postgresql-common"
    echo "create_main_cluster = false" >"$dir/etc/postgresql-common/createcluster.conf"
    apt_in "$dir" install postgresql-15
    install -m 755 "$SCRIPTS_DIR/base-images/postgres-entrypoint.sh" "$dir/usr/local/bin/shop-postgres-entrypoint"
    mkdir -p "$dir/var/lib/postgresql/data" "$dir/run/postgresql"
    in_chroot "$dir" chown -R postgres:postgres /var/lib/postgresql /run/postgresql
    chmod 700 "$dir/var/lib/postgresql/data"
    strip_rootfs "$dir"
    import_rootfs "$dir" "${IMAGE_REF[postgres]}" \
        --change "LABEL org.opencontainers.image.title=shop-postgres" \
        --change "LABEL org.opencontainers.image.description=PostgreSQL 15 from Debian $SUITE with the postgres image's env interface" \
        --change "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "ENV PGDATA=/var/lib/postgresql/data" \
        --change "EXPOSE 5432" \
        --change "STOPSIGNAL SIGINT" \
        --change 'ENTRYPOINT ["/usr/local/bin/shop-postgres-entrypoint"]' \
        --change 'CMD ["postgres"]'
    rm -rf "$dir"
}

build_redis() {
    local dir=$WORK/redis
    new_rootfs "$dir"
    apt_in "$dir" install redis-server
    install -m 755 "$SCRIPTS_DIR/base-images/redis-entrypoint.sh" "$dir/usr/local/bin/shop-redis-entrypoint"
    mkdir -p "$dir/data"
    in_chroot "$dir" chown redis:redis /data
    strip_rootfs "$dir"
    import_rootfs "$dir" "${IMAGE_REF[redis]}" \
        --change "LABEL org.opencontainers.image.title=shop-redis" \
        --change "LABEL org.opencontainers.image.description=Redis 7 from Debian $SUITE" \
        --change "WORKDIR /data" \
        --change "EXPOSE 6379" \
        --change 'ENTRYPOINT ["/usr/local/bin/shop-redis-entrypoint"]' \
        --change 'CMD ["redis-server"]'
    rm -rf "$dir"
}

# ---------------------------------------------------------------- driver
image_recipe() {
    podman image inspect --format '{{index .Labels "io.shop-ops.base.recipe"}}' "$1" 2>/dev/null || true
}

image_mb() {
    local bytes
    bytes=$(podman image inspect --format '{{.Size}}' "$1")
    awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1000000 }'
}

declare -A RESULT SECS
for target in "${TARGETS[@]}"; do
    [ -n "${RESULT[$target]:-}" ] && continue
    ref=${IMAGE_REF[$target]}
    archive=$CACHE_DIR/${target}-$RECIPE.tar
    t0=$SECONDS
    if [ "$FORCE" = 0 ] && [ "$(image_recipe "$ref")" = "$RECIPE" ]; then
        RESULT[$target]=present
    elif [ "$FORCE" = 0 ] && [ "$USE_CACHE" = 1 ] && [ -f "$archive" ] &&
        podman load -q -i "$archive" >/dev/null && [ "$(image_recipe "$ref")" = "$RECIPE" ]; then
        RESULT[$target]="loaded from cache"
    else
        log "building $ref (recipe $RECIPE)"
        old_id=$(podman image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)
        "build_$target"
        RESULT[$target]=built
        # The previous build lost its name: remove it unless a container still uses it.
        if [ -n "$old_id" ] && [ "$(podman image inspect --format '{{.Id}}' "$ref")" != "$old_id" ]; then
            podman rmi "$old_id" >/dev/null 2>&1 || true
        fi
        if [ "$USE_CACHE" = 1 ]; then
            rm -f "$CACHE_DIR/${target}"-*.tar
            podman save -q --format docker-archive -o "$archive.tmp" "$ref" && mv -f "$archive.tmp" "$archive"
        fi
    fi
    SECS[$target]=$((SECONDS - t0))
done

printf '%-40s %-18s %9s %6s\n' IMAGE STATUS "SIZE MB" SECONDS
for target in "${TARGETS[@]}"; do
    [ -n "${RESULT[$target]:-}" ] || continue
    printf '%-40s %-18s %9s %6s\n' "${IMAGE_REF[$target]}" "${RESULT[$target]}" \
        "$(image_mb "${IMAGE_REF[$target]}")" "${SECS[$target]}"
    unset "RESULT[$target]"
done
