#!/usr/bin/env bash
# Install everything flatnet needs on a fresh Debian 12 machine, idempotently:
#   apt packages (kernel tools, podman, etcd, reference CNI plugins, traffic tools),
#   a virtualenv in .venv with flatnet and its test dependencies,
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
# The Debian etcd-server package starts a system etcd on 2379; flatnet's tests and lab run
# their own on free ports, so the system one is not needed (and must not hold the ports).
if systemctl is-active --quiet etcd 2>/dev/null; then systemctl stop etcd || true; fi
# Likewise containerd: the CRI tests and bench (flatnet_lab.testbed.cri) start private ones with
# their own root, state, socket and CNI dirs; and prometheus: the lab's Prometheus test runs its
# own (own config and data dir, in a lab namespace). The system services are not wanted.
for svc in containerd prometheus; do
  if systemctl is-enabled --quiet "$svc" 2>/dev/null; then systemctl disable --now "$svc" || true; fi
  if systemctl is-active --quiet "$svc" 2>/dev/null; then systemctl stop "$svc" || true; fi
done

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

# The CNI plugin: the native forwarder (static C, no Python on the node), built from this
# tree and replaced atomically (a runtime may exec it at any moment).
make -s -C native/forwarder install BINDIR=/opt/cni/bin

# `flatnet` (and `flatnet-inprocess`) on PATH, where nothing else has the name
scripts/path-links.sh "$ROOT" /usr/local/bin
