#!/usr/bin/env bash
# The Redis image of the CRI Redis scenario (`flatnet lab redis --runtime cri`,
# tests/cri/test_redis_cri.py), built here from Debian's packages alone (no registry), the
# way `make image` builds flatnet's: scripts/image/rootfs.sh --profile redis, then
# scripts/image/oci.py.
#
#   build/image/redis-bookworm.oci.tar   OCI image layout, named $REF (default below)
#   build/image/redis-bookworm.json      digests and sizes (what oci.py prints)
#
# Cached by a hash of every input (the recipe, the profile, its hooks, oci.py, this script,
# the name): a second run with nothing changed only prints the cached image. REBUILD=1
# forces a build (e.g. to pick up Debian security updates). The consumer imports the
# archive into its own containerd (`ctr images import`); nothing is loaded here.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=${PY:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
REF=${REDIS_IMAGE_REF:-docker.io/flatnet/redis:bookworm}
OUT=$ROOT/build/image
ARCHIVE=$OUT/redis-bookworm.oci.tar
INFO=$OUT/redis-bookworm.json
STAMP=$OUT/redis-bookworm.inputs
mkdir -p "$OUT"
exec 9>"$OUT/.redis.lock"
flock 9   # one build at a time (several test modules may ask for it)

HASH=$({
  for f in scripts/image/redis.sh scripts/image/rootfs.sh scripts/image/oci.py scripts/image/profiles/redis.sh \
           scripts/image/hooks/redis-slim.sh scripts/image/hooks/slim.sh; do sha256sum "$f"; done
  echo "$REF"
} | sha256sum | cut -c1-32)

if [ "${REBUILD:-0}" != 1 ] && [ -f "$ARCHIVE" ] && [ -f "$INFO" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$HASH" ]; then
  echo "==> redis image: $REF is up to date ($ARCHIVE, inputs $HASH)"
else
  echo "==> redis image: building $REF (inputs $HASH)"
  start=$(date +%s)
  work=$(mktemp -d "$OUT/fnm-redis.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
  nice scripts/image/rootfs.sh --profile redis "$work/rootfs.tar" > "$work/mmdebstrap.log" 2>&1 || {
    tail -n 40 "$work/mmdebstrap.log" >&2; echo "redis image: rootfs.sh failed (log above)" >&2; exit 1; }
  version=$(grep -a -m1 -o 'Redis server v=[0-9.]*' "$work/mmdebstrap.log" | cut -d= -f2 || true)
  nice "$PY" scripts/image/oci.py "$work/rootfs.tar" "$ARCHIVE" --ref "$REF" \
    --cmd '["redis-server", "/data/redis.conf"]' \
    --label org.opencontainers.image.title=redis \
    --label org.opencontainers.image.version="${version:-unknown}" \
    --label org.opencontainers.image.description="Debian's redis-server (also Sentinel: redis-server --sentinel)" \
    > "$work/info.json"
  mv "$work/info.json" "$INFO"
  echo "$HASH" > "$STAMP"
  echo "==> redis image: built in $(( $(date +%s) - start )) s (redis-server ${version:-?})"
fi
"$PY" - "$INFO" <<'PYEOF'
import json, sys
info = json.load(open(sys.argv[1]))
mib = lambda n: f"{n / 2**20:.1f} MiB"
print(f"==> redis image: {info['ref']}  rootfs {mib(info['rootfs_bytes'])} uncompressed, "
      f"{mib(info['layer_compressed'])} compressed (archive {mib(info['archive_bytes'])})")
PYEOF
