#!/bin/sh
# Last customize hook of every rootfs.sh profile: drop what a running system never reads
# (apt lists and caches, logs of the build, backup files of dpkg/debconf) and, unless
# KEEP_DOCS=1, what dpkg's path-excludes let through under /usr/share/doc (symlinks to the
# excluded docs, files of the first, essential-only dpkg run): only copyright files stay.
set -eu
r=$1
rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
       "$r"/var/lib/dpkg/*-old "$r"/var/cache/ldconfig/aux-cache "$r"/tmp/* "$r"/var/tmp/*
mkdir -p "$r/var/lib/apt/lists/partial"
find "$r/var/log" -type f -delete
if [ "${KEEP_DOCS:-0}" != 1 ] && [ -d "$r/usr/share/doc" ]; then
  find "$r/usr/share/doc" ! -type d ! -name copyright -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$r/usr/share/info"   # install-info's index of the excluded info pages
fi
