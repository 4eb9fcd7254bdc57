#!/usr/bin/env bash
# Start, stop or restart one private test dockerd, described by its folder DIR:
#   DIR/daemon.json  its config file (--config-file): what `vllmgen apply` merges into
#   DIR/netns        optional: the network namespace file it runs in (nsenter --net=...)
#   DIR/storage-driver  optional: overlay2 or vfs (default: $VLLMGEN_TEST_STORAGE_DRIVER, else vfs)
#   DIR/docker.sock  its socket; DIR/dockerd.pid, DIR/dockerd.log; DIR/data, DIR/exec its state
# The daemon is found again by its pidfile only: nothing here looks processes up by name.
#   usage: dockerd-ctl.sh DIR start|stop|restart
set -euo pipefail

dir="$1"
action="$2"
pidfile="${dir}/dockerd.pid"
sock="${dir}/docker.sock"

running_pid() {
    local pid
    [[ -s "${pidfile}" ]] || return 1
    pid="$(cat "${pidfile}")"
    [[ -d "/proc/${pid}" ]] || return 1
    echo "${pid}"
}

stop() {
    local pid waited=0
    pid="$(running_pid)" || return 0
    kill -TERM "${pid}"
    while [[ -d "/proc/${pid}" ]]; do
        if ((waited >= 300)); then  # 30 s: dockerd stops its containers first
            kill -KILL "${pid}" 2>/dev/null || true
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "${pidfile}"
}

start() {
    local enter=() waited=0 driver="${VLLMGEN_TEST_STORAGE_DRIVER:-vfs}"
    [[ -s "${dir}/storage-driver" ]] && driver="$(cat "${dir}/storage-driver")"
    if running_pid >/dev/null; then
        return 0
    fi
    if [[ -s "${dir}/netns" ]]; then
        enter=(nsenter "--net=$(cat "${dir}/netns")")
    fi
    mkdir -p "${dir}/data" "${dir}/exec"
    [[ -e "${dir}/daemon.json" ]] || echo '{}' >"${dir}/daemon.json"
    rm -f "${sock}"
    setsid "${enter[@]}" dockerd \
        --data-root "${dir}/data" --exec-root "${dir}/exec" --pidfile "${pidfile}" \
        -H "unix://${sock}" --config-file "${dir}/daemon.json" \
        --storage-driver "${driver}" --iptables=false --ip-masq=false --bridge=none \
        >>"${dir}/dockerd.log" 2>&1 </dev/null &
    local launcher=$!
    until [[ -S "${sock}" ]] && curl -fsS --unix-socket "${sock}" http://docker/_ping >/dev/null 2>&1; do
        if ! kill -0 "${launcher}" 2>/dev/null; then
            echo "dockerd did not start; the end of ${dir}/dockerd.log:" >&2
            tail -n 15 "${dir}/dockerd.log" >&2
            exit 1
        fi
        if ((waited >= 600)); then
            echo "dockerd did not answer on ${sock} within 60 s" >&2
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

case "${action}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    *) echo "usage: $0 DIR start|stop|restart" >&2; exit 2 ;;
esac
