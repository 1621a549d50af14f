#!/usr/bin/env bash
# The shared root-filesystem recipe: a Debian 12 (bookworm) tree from Debian's packages alone,
# made by mmdebstrap, slimmed (no docs, man pages, locales, apt lists or caches).
# Used by `make image` (profile flatnet) and by anything else that needs a Debian root
# filesystem (a VM's root disk: add a profile).
#
#   scripts/image/rootfs.sh [--profile NAME] [--include PKG[,PKG...]] [--hook SCRIPT]... OUT
#
# OUT is what mmdebstrap makes of it: OUT.tar a tarball, an existing empty directory a tree.
# A profile is scripts/image/profiles/NAME.sh, a shell snippet that may set
#   VARIANT=minbase|essential|...   mmdebstrap variant (default minbase)
#   PACKAGES=(...)                  packages added to the variant
#   HOOKS=(...)                     customize hooks (scripts/image/hooks/*, or absolute paths),
#                                   each run as `HOOK ROOTFS` after the packages are installed,
#                                   with this script's environment (root mode: chroot works)
#   KEEP_DOCS=1                     keep /usr/share/doc, man pages and locales
# --include and --hook add to the profile's. Environment: ROOTFS_MIRROR (default
# http://deb.debian.org/debian), ROOTFS_SUITE (bookworm), SOURCE_DATE_EPOCH (when set,
# mmdebstrap clamps timestamps to it for reproducible output).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

profile=""; extra_pkgs=(); extra_hooks=()
while [ $# -gt 1 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --include) IFS=', ' read -r -a more <<<"$2"; extra_pkgs+=("${more[@]}"); shift 2 ;;
    --hook) extra_hooks+=("$2"); shift 2 ;;
    *) echo "rootfs.sh: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--profile NAME] [--include PKGS] [--hook SCRIPT]... OUT" >&2; exit 2; }
out=$1
[ "$(id -u)" = 0 ] || { echo "rootfs.sh: needs root (mmdebstrap's root mode; make image re-runs through sudo)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "rootfs.sh: mmdebstrap is missing: apt-get install mmdebstrap (scripts/setup.sh installs it)" >&2; exit 1; }

VARIANT=minbase; PACKAGES=(); HOOKS=(); KEEP_DOCS=0
if [ -n "$profile" ]; then
  [ -f "$HERE/profiles/$profile.sh" ] || { echo "rootfs.sh: no profile $HERE/profiles/$profile.sh" >&2; exit 2; }
  # shellcheck source=/dev/null
  . "$HERE/profiles/$profile.sh"
fi
PACKAGES+=("${extra_pkgs[@]}"); HOOKS+=("${extra_hooks[@]}")
export KEEP_DOCS   # read by hooks/slim.sh

mirror=${ROOTFS_MIRROR:-http://deb.debian.org/debian}
suite=${ROOTFS_SUITE:-bookworm}
security=${mirror%/debian}/debian-security

args=(--variant="$VARIANT" --mode=root --format=auto
      # merged /usr through the symlinks debootstrap makes, without the usrmerge package
      # (which would pull in perl: ~45 MB)
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
      --aptopt='Acquire::Retries "3"')
[ ${#PACKAGES[@]} -eq 0 ] || args+=(--include="$(IFS=,; echo "${PACKAGES[*]}")")
if [ "$KEEP_DOCS" != 1 ]; then
  for p in /usr/share/doc/ /usr/share/man/ /usr/share/info/ /usr/share/locale/ /usr/share/lintian/ \
           /usr/share/linda/ /usr/share/groff/ /usr/share/bash-completion/ /usr/include/; do
    args+=(--dpkgopt="path-exclude=$p*")
  done
  args+=(--dpkgopt='path-include=/usr/share/doc/*/copyright')  # licences stay
fi
for h in "${HOOKS[@]}"; do
  case "$h" in /*) ;; *) h=$HERE/hooks/$h ;; esac
  [ -x "$h" ] || { echo "rootfs.sh: hook $h is not an executable file" >&2; exit 2; }
  args+=(--customize-hook="$h \"\$1\"")
done
# last: whatever a hook or a postinst left behind that a running system does not need
args+=(--customize-hook="$HERE/hooks/slim.sh \"\$1\"")

exec mmdebstrap "${args[@]}" "$suite" "$out" \
  "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main"
