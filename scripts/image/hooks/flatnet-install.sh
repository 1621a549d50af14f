#!/bin/sh
# Customize hook of the flatnet profile: install flatnet from its wheel (and its runtime
# dependencies, all wheels from PyPI collected by build.sh) with the rootfs's own python3,
# offline; then the CNI forwarder at /opt/flatnet/bin/flatnet, which the DaemonSet's init
# container copies to the node.
#   FLATNET_WHEELS     directory of wheels: flatnet's, its dependencies', pip-*.whl
#   FLATNET_DIST       flatnet's distribution name (pyproject's project.name)
#   FLATNET_FORWARDER  the native forwarder binary (static; the node needs nothing else)
set -eu
r=$1
: "${FLATNET_WHEELS:?FLATNET_WHEELS is not set (scripts/image/build.sh sets it)}"
: "${FLATNET_FORWARDER:?FLATNET_FORWARDER is not set (scripts/image/build.sh sets it)}"
: "${FLATNET_DIST:?FLATNET_DIST is not set (scripts/image/build.sh sets it)}"
mkdir -p "$r/tmp/fnm-wheels"
cp "$FLATNET_WHEELS"/*.whl "$r/tmp/fnm-wheels/"
pip=$(cd "$r/tmp/fnm-wheels" && ls pip-*.whl | head -n1)
# pip runs from its wheel (zipimport): no pip package is left in the image
chroot "$r" env PYTHONDONTWRITEBYTECODE= python3 "/tmp/fnm-wheels/$pip/pip" install --no-index \
  --find-links /tmp/fnm-wheels --no-cache-dir --break-system-packages --root-user-action=ignore \
  --disable-pip-version-check --no-warn-script-location -q "$FLATNET_DIST"
rm -rf "$r/tmp/fnm-wheels"
chroot "$r" flatnet --help >/dev/null

install -D -m 0755 "$FLATNET_FORWARDER" "$r/opt/flatnet/bin/flatnet"

# glibc's iconv modules (8 MB): nothing in the image converts charsets through iconv
# (Python has its own codecs; ip and nft speak ASCII)
rm -rf "$r/usr/lib/x86_64-linux-gnu/gconv"
