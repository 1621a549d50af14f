#!/bin/sh
# Customize hook of the redis profile: what a Redis container never reads. The Debian
# package's config and systemd units are replaced by the pod's own config on its volume;
# redis-benchmark and redis-check-* are tools for a person, not for the pod; glibc's iconv
# modules (8 MB) convert nothing here.
set -eu
r=$1
rm -rf "$r/usr/lib/x86_64-linux-gnu/gconv" "$r/usr/bin/redis-benchmark" "$r/lib/systemd/system/redis"*
mkdir -p "$r/data"
chroot "$r" redis-server --version
