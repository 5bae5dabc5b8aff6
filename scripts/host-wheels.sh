# shellcheck shell=bash
# Builds Python wheels on the host for a podman image (source me; needs scripts/podman-env.sh first).
#
#   py=$(wheel_python_for IMAGE) || exit 1      # the host interpreter matching IMAGE's python3
#   host_wheels PY SRC_DIR WHEEL_DIR LOG || exit 1
#   host_wheels_requirements PY REQUIREMENTS_FILE WHEEL_DIR LOG || exit 1
#
# Nothing can be downloaded inside a build here, so images install wheels built on the host
# with `pip install --no-index`. Environment markers decide which wheels a project needs
# (redis needs async-timeout only where python_full_version < "3.11.3"), so the wheels are
# resolved with an interpreter of the image's exact patch release when the host has one;
# failing that, the same minor release with a warning. WHEEL_PYTHON overrides the choice.
# Functions print their errors on stderr and return non-zero; callers add their own context.

_wheels_python_version() { "$1" -c 'import platform; print(platform.python_version())' 2>/dev/null; }

# wheel_python_for IMAGE: prints the host interpreter for wheels installed into IMAGE.
wheel_python_for() {
    local image=$1 want candidate version version_match c
    want=$(podman run --rm --network none --entrypoint python3 "$image" \
        -c 'import platform; print(platform.python_version())') ||
        { echo "cannot run python3 in $image" >&2; return 1; }
    if [ -n "${WHEEL_PYTHON:-}" ]; then
        candidate=$WHEEL_PYTHON
    else
        candidate=""
        for version_match in exact minor; do
            for c in /usr/bin/python3 "python${want%.*}" python3; do
                command -v "$c" >/dev/null || continue
                version=$(_wheels_python_version "$c" || true)
                if [ "$version" = "$want" ] || { [ $version_match = minor ] && [ "${version%.*}" = "${want%.*}" ]; }; then
                    candidate=$c
                    break 2
                fi
            done
        done
        [ -n "$candidate" ] ||
            { echo "no host python ${want%.*} to build wheels for $image's python $want (set WHEEL_PYTHON)" >&2; return 1; }
    fi
    version=$(_wheels_python_version "$candidate" || true)
    [ -n "$version" ] || { echo "WHEEL_PYTHON=$candidate does not run" >&2; return 1; }
    [ "$version" = "$want" ] ||
        echo "warning: wheels for $image (python $want) resolved with $candidate (python $version)" >&2
    "$candidate" -m pip --version >/dev/null 2>&1 ||
        { echo "$candidate has no pip (apt-get install python3-pip, or set WHEEL_PYTHON)" >&2; return 1; }
    echo "$candidate"
}

# host_wheels PY SRC_DIR WHEEL_DIR LOG: wheels of the project in SRC_DIR, its dependencies and
# pip itself, into a fresh WHEEL_DIR. Skipped when WHEEL_DIR holds the wheels of the same sources
# and interpreter release (stamp WHEEL_DIR.source, outside the build context); pip does not
# resolve again then, so a dependency range is not re-resolved until the sources change.
# On failure the log's tail goes to stderr.
host_wheels() {
    local py=$1 src=$2 wheels=$3 log=$4 stamp
    stamp=$(
        {
            _wheels_python_version "$py"
            cd "$src" && find . -type f ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
        } | sha256sum | cut -c1-16
    )
    _host_wheels_build "$py" "$stamp" "$wheels" "$log" "$src"
}

# host_wheels_requirements PY REQUIREMENTS_FILE WHEEL_DIR LOG: the same for the requirements of a
# pip requirements file (no project of its own): their wheels, their dependencies' and pip's,
# skipped while the file's content and the interpreter release are the same.
host_wheels_requirements() {
    local py=$1 requirements=$2 wheels=$3 log=$4 stamp
    [ -f "$requirements" ] || { echo "no requirements file $requirements" >&2; return 1; }
    stamp=$(
        {
            _wheels_python_version "$py"
            sha256sum <"$requirements"
        } | sha256sum | cut -c1-16
    )
    _host_wheels_build "$py" "$stamp" "$wheels" "$log" -r "$requirements"
}

# _host_wheels_build PY STAMP WHEEL_DIR LOG PIP_WHEEL_ARGS...: `pip wheel PIP_WHEEL_ARGS... pip` into
# a fresh WHEEL_DIR unless WHEEL_DIR.source holds STAMP and WHEEL_DIR has wheels.
_host_wheels_build() {
    local py=$1 stamp=$2 wheels=$3 log=$4
    shift 4
    if [ -f "$wheels.source" ] && [ "$(cat "$wheels.source")" = "$stamp" ] &&
        compgen -G "$wheels/*.whl" >/dev/null; then
        echo "wheels up to date in $wheels (source $stamp)" >&2
        return 0
    fi
    rm -rf "$wheels" "$wheels.source"
    mkdir -p "$wheels"
    if ! "$py" -m pip wheel --disable-pip-version-check --wheel-dir "$wheels" "$@" pip >"$log" 2>&1; then
        grep -v 'is ignored: it is neither a file nor a directory' "$log" | tail -n 30 >&2
        echo "pip wheel of $* failed (log: $log)" >&2
        return 1
    fi
    echo "$stamp" >"$wheels.source"
}
