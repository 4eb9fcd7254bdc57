#!/usr/bin/env bash
# Install and cache what the runner's slow tests need; safe to run again (quick when done).
#   usage: tests/infra/setup.sh [rootfs] [ray] [vllm]      (default: rootfs ray; "all" adds vllm)
#   env:   VLLMGEN_CACHE   cache folder (default ~/.cache/vllmgen)
#          PYTHON          interpreter for the cached venvs (default python3; not the system /usr one:
#                          its prefix is bind-mounted into the test containers)
# System packages (as root, Debian/Ubuntu): docker.io (dockerd 20.10), iproute2 (ip netns),
# util-linux (nsenter), debootstrap (the base image's rootfs), curl, openssh-server/-client (ssh hosts). nginx (the gateway).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(rootfs ray)
[[ " ${want[*]} " == *" all "* ]] && want=(rootfs ray vllm)

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v curl >/dev/null || need+=(curl)
# the ssh test hosts: one sshd per namespace host (never started as a service here), and the client
[[ -x /usr/sbin/sshd ]] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v promtool >/dev/null || need+=(prometheus)  # promtool and a real Prometheus for the monitoring tests
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)  # the gateway: `nginx -t` and a real front door
if [[ ${#need[@]} -gt 0 ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "missing ${need[*]}: run this script as root to install them" >&2
        exit 1
    fi
    echo "installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

"${PYTHON:-python3}" -c 'import docker' 2>/dev/null || "${PYTHON:-python3}" -m pip install --quiet 'docker>=7.0'
PYTHONPATH=tests "${PYTHON:-python3}" -m infra.cache "${want[@]}"
