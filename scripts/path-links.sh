#!/usr/bin/env bash
# Put flatnet's commands on PATH: a symlink BINDIR/<cmd> -> ROOT/.venv/bin/<cmd> for
# flatnet and flatnet-inprocess (the no-agent entry point a network config's "inProcess"
# names, so "/usr/local/bin/flatnet-inprocess" is a path that does not depend on the tree).
# Only where nothing else has the name: an existing file, or a link to another tree, is left
# alone and reported with the full path to use instead (a dangling link, e.g. to a removed
# tree, is replaced). Idempotent.
#   usage: scripts/path-links.sh [ROOT] [BINDIR]     (defaults: this tree, /usr/local/bin)
set -euo pipefail
ROOT=${1:-$(cd "$(dirname "$0")/.." && pwd)}
BINDIR=${2:-/usr/local/bin}
mkdir -p "$BINDIR"
for cmd in flatnet flatnet-inprocess; do
  target="$ROOT/.venv/bin/$cmd" link="$BINDIR/$cmd"
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ]; then
    continue
  elif [ -L "$link" ] && [ ! -e "$link" ]; then
    ln -sfn "$target" "$link"
    echo "==> $link -> $target (was a dangling link)"
  elif [ -e "$link" ] || [ -L "$link" ]; then
    echo "==> $link exists ($(readlink "$link" 2>/dev/null || echo 'not our link')); left alone: run $target"
  else
    ln -s "$target" "$link"
    echo "==> $link -> $target"
  fi
done
