#!/usr/bin/env bash
# The kernel test tier's boot files: Debian's stock kernel (linux-image-amd64) and a root
# filesystem as an initramfs, cached under .cache/vm/<hash of the inputs>/ and rebuilt only
# when an input changes (this script, the shared root-filesystem recipe scripts/image/rootfs.sh
# with its 'vm' profile and last hook, the init, the module list); the kernel is the
# linux-image-amd64 of the apt sources at build time (recorded in "kernel").
#
#   scripts/vm/build.sh          prints the cache directory holding vmlinuz + rootfs.cpio
#
# Offline once built: nothing is fetched when the cache entry exists. A missing tool or
# package is an error that names it (never a silent skip). Needs root (mmdebstrap, chroot).
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=scripts/vm
RECIPE=scripts/image  # the root filesystem recipe shared with make image (profile: vm)
CACHE=${FLATNET_VM_CACHE:-$PWD/.cache/vm}

die() { echo "vm build: $*" >&2; exit 1; }
for tool in qemu-system-x86_64 mmdebstrap cpio apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed: run scripts/setup.sh (apt-get install qemu-system-x86 mmdebstrap cpio)"
done

key=$( { cat "$0" "$HERE/init" "$HERE/modules" "$RECIPE/rootfs.sh" "$RECIPE/profiles/vm.sh" \
          "$RECIPE/hooks/slim.sh"; } | sha256sum | cut -c1-16)
out="$CACHE/$key"
if [ -s "$out/rootfs.cpio" ] && [ -s "$out/vmlinuz" ]; then
  echo "$out"; exit 0
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 1200 9 || die "another build holds $CACHE/.lock for 20 minutes"
if [ -s "$out/rootfs.cpio" ] && [ -s "$out/vmlinuz" ]; then echo "$out"; exit 0; fi  # built meanwhile

# The kernel: the package linux-image-amd64 points at (read from apt's lists, updated if empty).
kpkg() { { apt-cache depends linux-image-amd64 2>/dev/null || true; } | awk '/Depends: linux-image-[0-9]/{print $2}' | head -1; }
kpkg=$(kpkg)
if [ -z "$kpkg" ]; then
  apt-get update -qq >&2 || die "apt-get update failed (network or apt sources)"
  kpkg=$(kpkg)
fi
[ -n "$kpkg" ] || die "apt does not know linux-image-amd64 (Debian's main archive must be in the apt sources)"
work=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$work" "$out.tmp"' EXIT
echo "vm build: $kpkg + rootfs ($RECIPE/rootfs.sh --profile vm) -> $out" >&2

# 1. the kernel package, unpacked (not installed): vmlinuz and the modules the tests need
(cd "$work" && apt-get download -q "$kpkg" >/dev/null 2>&1) \
  || die "cannot fetch $kpkg (apt-get download failed: network or apt sources)"
mkdir "$work/k"
dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
kdir=$(ls -d "$work"/k/lib/modules/*)
krel=$(basename "$kdir")

# 2. the root filesystem from Debian's packages: the shared recipe, profile 'vm'
mkdir "$work/root"
bash "$RECIPE/rootfs.sh" --profile vm "$work/root" >&2 || die "$RECIPE/rootfs.sh --profile vm failed (see above)"

# 3. the modules listed in $HERE/modules and what they depend on, resolved by the rootfs's own
#    depmod/modprobe against the whole unpacked tree, then copied; nothing else
full=/tmp/kfull
mkdir -p "$work/root$full/lib/modules"
mv "$kdir" "$work/root$full/lib/modules/$krel"
chroot "$work/root" depmod -b "$full" "$krel"
names=()
while read -r entry; do
  case "$entry" in ''|'#'*) continue ;; esac
  if [ "${entry#kernel/}" != "$entry" ]; then
    [ -d "$work/root$full/lib/modules/$krel/$entry" ] || die "module directory $entry is not in $kpkg"
    while read -r ko; do names+=("$(basename "${ko%%.ko*}")"); done \
      < <(find "$work/root$full/lib/modules/$krel/$entry" -name '*.ko*')
  else
    names+=("$entry")
  fi
done < "$HERE/modules"
chroot "$work/root" modprobe -a -d "$full" -S "$krel" --show-depends "${names[@]}" \
  | awk '$1 == "insmod" {print $2}' | sort -u > "$work/ko.list" \
  || die "modprobe --show-depends failed for: ${names[*]}"
while read -r ko; do
  rel=${ko#"$full"/}
  mkdir -p "$work/root/$(dirname "$rel")"
  cp "$work/root$ko" "$work/root/$rel"
done < "$work/ko.list"
cp "$work/root$full/lib/modules/$krel"/modules.builtin* "$work/root$full/lib/modules/$krel/modules.order" \
  "$work/root/lib/modules/$krel/"
rm -rf "${work:?}/root$full"
chroot "$work/root" depmod -a "$krel"
# what the tests never use: the Python test suite, IDLE, Tk, docs, iconv modules
rm -rf "$work"/root/usr/lib/python3.*/{test,idlelib,tkinter,turtledemo,pydoc_data,ensurepip,lib2to3} \
  "$work"/root/usr/lib/x86_64-linux-gnu/gconv
install -m 0755 "$HERE/init" "$work/root/init"
rm -rf "$work/root/var/cache/apt"/* "$work/root/var/lib/apt/lists"/*

# 4. the initramfs (uncompressed: under TCG unpacking a compressed one costs more than it saves)
(cd "$work/root" && find . -print0 | cpio --null -o -H newc --quiet) > "$work/rootfs.cpio"
mkdir -p "$out.tmp"
cp "$work"/k/boot/vmlinuz-* "$out.tmp/vmlinuz"
mv "$work/rootfs.cpio" "$out.tmp/rootfs.cpio"
dpkg-deb -f "$work"/linux-image-*.deb Package Version | tr "\\n" " " > "$out.tmp/kernel"
rm -rf "$out" && mv "$out.tmp" "$out"
# older cache entries are for inputs that changed: remove them
find "$CACHE" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -name '.build.*' -exec rm -rf {} +
echo "$out"
