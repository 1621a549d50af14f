#!/bin/sh
# Prepare a Debian 12 machine for tests/e2e/test_podman.py and say what is missing.
# Installs only distribution packages (podman, runc, busybox-static for the rootfs;
# there is no registry access in the test). Touches no podman state and no network.
set -eu
[ "$(id -u)" = 0 ] || { echo "run as root (podman's CNI backend and netns need it)" >&2; exit 1; }
missing=""
command -v podman >/dev/null 2>&1 || missing="$missing podman"
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing="$missing runc"
[ -x /usr/bin/busybox ] || [ -x /bin/busybox ] || missing="$missing busybox-static"
[ -x /usr/lib/cni/loopback ] || missing="$missing containernetworking-plugins"
if [ -n "$missing" ]; then
    echo "installing:$missing"
    apt-get install -y $missing
fi
podman --version
if [ -e /opt/cni/bin/flatnet ]; then
    echo "plugin: /opt/cni/bin/flatnet (installed)"
else
    echo "plugin: not installed; the test writes a launcher into its temp dir"
fi
echo "run: /work/main/.venv/bin/pytest -m podman tests/e2e -v"
