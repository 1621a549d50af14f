#!/usr/bin/env bash
# make image: flatnet's OCI image, built here from Debian's packages and PyPI alone (no registry).
#
#   rootfs   scripts/image/rootfs.sh --profile flatnet (mmdebstrap minbase + python3, nftables,
#            iproute2; flatnet and its dependencies from wheels; the CNI forwarder)
#   archive  build/image/flatnet-VERSION.oci.tar (OCI image layout; scripts/image/oci.py)
#   loaded   into podman, and into containerd when one answers at $CONTAINERD_ADDRESS
#            (default /run/containerd/containerd.sock; namespace $CONTAINERD_NAMESPACE, k8s.io)
#
# The image is named REPOSITORY:VERSION: the repository is the chart's image.repository
# (charts/flatnet/values.yaml), the version is pyproject.toml's (IMAGE_TAG overrides the tag).
# Cached by a hash of every input (sources, recipe, forwarder, name): a second run with
# nothing changed only checks that podman/containerd hold it. REBUILD=1 forces a build
# (e.g. to pick up Debian security updates). Prints the image's size.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=${PY:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || { echo "image: $PY is missing: run scripts/setup.sh (make setup) first" >&2; exit 1; }

VERSION=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
DIST=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["name"])')
REPOSITORY=$("$PY" -c 'import yaml; print(yaml.safe_load(open("charts/flatnet/values.yaml"))["image"]["repository"])')
TAG=${IMAGE_TAG:-$VERSION}
REF=$REPOSITORY:$TAG
OUT=$ROOT/build/image
ARCHIVE=$OUT/flatnet-$TAG.oci.tar
mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9   # one build at a time (make image while the tests build it)

# --- the native forwarder (built on the host; the image has no compiler) -----------------
make -s -C native/forwarder
FORWARDER=$ROOT/native/forwarder/build/flatnet
[ -x "$FORWARDER" ] || { echo "image: make -C native/forwarder did not produce $FORWARDER" >&2; exit 1; }

# --- cache key: every input's content ------------------------------------------------------
inputs_hash() {
  {
    git ls-files -co --exclude-standard -- pyproject.toml src scripts/image native/forwarder \
      | grep -v -e '__pycache__' -e '/build/' | LC_ALL=C sort | while read -r f; do
        [ -f "$f" ] && sha256sum "$f"
      done
    sha256sum "$FORWARDER"
    echo "$REF"
  } | sha256sum | cut -c1-32
}
HASH=$(inputs_hash)
STAMP=$OUT/flatnet-$TAG.inputs

if [ "${REBUILD:-0}" != 1 ] && [ -f "$ARCHIVE" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$HASH" ]; then
  echo "==> image: $REF is up to date ($ARCHIVE, inputs $HASH)"
else
  echo "==> image: building $REF (inputs $HASH)"
  start=$(date +%s)
  work=$(mktemp -d "$OUT/fnm-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  # flatnet's wheel and its runtime dependencies' wheels (PyPI), and pip's own wheel to
  # install them with inside the rootfs
  "$PY" -m pip wheel -q --disable-pip-version-check --wheel-dir "$work/wheels" "$ROOT" 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
  "$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps \
    --dest "$work/wheels" pip 2>&1 | { grep -v "^WARNING: Location" || true; }
  ls "$work"/wheels/"${DIST//-/_}"-*.whl >/dev/null   # the wheel's name: flatnet_cni-VERSION-...
  export FLATNET_WHEELS=$work/wheels FLATNET_FORWARDER=$FORWARDER FLATNET_DIST=$DIST
  export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
  scripts/image/rootfs.sh --profile flatnet "$work/rootfs.tar" > "$work/mmdebstrap.log" 2>&1 || {
    tail -n 40 "$work/mmdebstrap.log" >&2; echo "image: rootfs.sh failed (log above)" >&2; exit 1; }
  "$PY" scripts/image/oci.py "$work/rootfs.tar" "$ARCHIVE" --ref "$REF" \
    --cmd '["flatnet", "agent"]' --env PYTHONUNBUFFERED=1 \
    --label org.opencontainers.image.title=flatnet \
    --label org.opencontainers.image.version="$VERSION" \
    --label org.opencontainers.image.description="flatnet CNI agent and forwarder" \
    > "$work/info.json"
  mv "$work/info.json" "$OUT/flatnet-$TAG.json"
  tar -tf "$work/rootfs.tar" > "$OUT/flatnet-$TAG.files"
  echo "$HASH" > "$STAMP"
  echo "==> image: built in $(( $(date +%s) - start )) s"
fi

# --- size -----------------------------------------------------------------------------------
"$PY" - "$OUT/flatnet-$TAG.json" <<'EOF'
import json, sys
info = json.load(open(sys.argv[1]))
mib = lambda n: f"{n / 2**20:.1f} MiB"
print(f"==> image: {info['ref']}  rootfs {mib(info['rootfs_bytes'])} uncompressed, "
      f"{mib(info['layer_compressed'])} compressed (archive {mib(info['archive_bytes'])})")
print(f"    manifest {info['manifest']}")
EOF

# --- load ----------------------------------------------------------------------------------
CONFIG=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["config"].split(":")[1])' "$OUT/flatnet-$TAG.json")
MANIFEST=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifest"])' "$OUT/flatnet-$TAG.json")
if command -v podman >/dev/null; then
  if [ "$(podman image inspect --format '{{.Id}}' "$REF" 2>/dev/null)" = "$CONFIG" ]; then
    echo "==> podman: $REF already loaded"
  else
    podman load -q -i "$ARCHIVE" >/dev/null
    echo "==> podman: loaded $REF"
  fi
fi
CTR_ADDR=${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}
CTR_NS=${CONTAINERD_NAMESPACE:-k8s.io}
if command -v ctr >/dev/null && [ -S "$CTR_ADDR" ] && ctr -a "$CTR_ADDR" version >/dev/null 2>&1; then
  if ctr -a "$CTR_ADDR" -n "$CTR_NS" images ls -q "name==$REF" 2>/dev/null | grep -qx "$REF" &&
     [ "$(ctr -a "$CTR_ADDR" -n "$CTR_NS" images ls "name==$REF" | awk 'NR==2 {print $3}')" = "$MANIFEST" ]; then
    echo "==> containerd ($CTR_ADDR, namespace $CTR_NS): $REF already imported"
  else
    ctr -a "$CTR_ADDR" -n "$CTR_NS" images import "$ARCHIVE" >/dev/null
    echo "==> containerd ($CTR_ADDR, namespace $CTR_NS): imported $REF"
  fi
else
  echo "==> containerd: none answers at $CTR_ADDR; import later with:"
  echo "    ctr -n $CTR_NS images import $ARCHIVE"
fi
echo "==> push to a registry: see docs/KUBERNETES.md (skopeo copy oci-archive:$ARCHIVE docker://REGISTRY/flatnet:$TAG)"
