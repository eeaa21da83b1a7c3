#!/usr/bin/env bash
# A clean Debian 12 tree for the package install test (tests/test_packages.py): debootstrap
# minbase plus systemd (for systemd-analyze inside it), cached; each test run gets its own copy.
#
#   tests/packages/debian_tree.sh prepare DEST   copy the cached base to DEST (cold: debootstrap,
#                                                about 2 min; warm: a copy), mount DEST/proc, block
#                                                services, seed the shared .deb cache, apt-get update
#   tests/packages/debian_tree.sh release DEST   keep new .debs in the shared cache, unmount, delete DEST
#   tests/packages/debian_tree.sh base           the cached base itself (built when cold), for
#                                                tests/test_image.py's base image: BASE=DIR; never
#                                                write to it
#
# It reuses the real-host builder's helpers (tests/realhost/build.sh: mirrors, sources, chroot
# sessions) and its shared .deb cache, and takes that builder's lock while debootstrap writes
# to the cache.  Cache: ${DKMS_EXPORTER_TEST_CACHE:-$HOME/.cache/dkms-exporter-tests}/packages/
# bases/KEY/tree (KEY: this script, the host's debootstrap, the mirrors); older bases are deleted.
# Needs root (debootstrap, chroot, mount).
set -euo pipefail
SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/debian_tree.sh
# shellcheck source=../realhost/build.sh
source "$(dirname "$SELF")/../realhost/build.sh"   # (it sets HERE to its own directory)
PKGROOT=$CACHE/packages
LOG=$PKGROOT/build.log
SUITE=bookworm

fail() { printf '[debian_tree] ERROR: %s\n' "$*" >&2; [[ -f $LOG ]] && tail -n 20 "$LOG" >&2; exit 1; }

base_key() {
  { sha256sum <"$SELF"; dpkg-query -W -f='${Version}' debootstrap; echo " $MIRROR $SECURITY_MIRROR"; } |
    sha256sum | cut -c1-16
}

build_base() {
  local dir=$1 t=$1/tree
  printf '[debian_tree] cold: debootstrap --variant=minbase %s from %s (log: %s)\n' "$SUITE" "$MIRROR" "$LOG" >&2
  rm -rf --one-file-system "$dir"
  mkdir -p "$dir"
  (
    # the real-host builder's lock: debootstrap writes into its shared .deb cache
    exec 8>>"$CACHE/realhost/.lock"
    flock 8
    debootstrap --variant=minbase --cache-dir="$DEBS" "$SUITE" "$t" "$MIRROR" >>"$LOG" 2>&1
  ) || fail "debootstrap failed"
  sources_of "$MIRROR" "$SECURITY_MIRROR" >"$t/etc/apt/sources.list.d/debian.sources"
  rm -f "$t/etc/apt/sources.list"
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$t/etc/apt/apt.conf.d/90packages-no-recommends"
  enter "$t"
  logged apt_in "$t" update || fail "apt-get update in the base failed"
  logged apt_in "$t" install systemd || fail "installing systemd in the base failed"
  leave "$t"
  rm -rf "$t/var/lib/apt/lists/"*_Packages* 2>/dev/null || true   # refreshed by every prepare
  date -u +%FT%TZ >"$dir/stamp"
}

ensure_base() {   # prints the cached base's directory, building it when cold
  local key dir
  mkdir -p "$PKGROOT/bases" "$CACHE/realhost" "$DEBS"
  pick_mirrors
  key=$(base_key)
  dir=$PKGROOT/bases/$key
  (
    exec 9>>"$PKGROOT/.lock"
    flock 9
    : >"$LOG"
    [[ -f $dir/stamp ]] || build_base "$dir"
    for old in "$PKGROOT"/bases/*/; do
      [[ ${old%/} == "$dir" ]] || rm -rf --one-file-system "${old%/}"
    done
  ) >&2
  echo "$dir"
}

prepare() {
  local dest=$1 dir
  dir=$(ensure_base)
  [[ ! -e $dest ]] || fail "$dest exists"
  cp -a "$dir/tree" "$dest"
  enter "$dest"
  logged apt_in "$dest" update || fail "apt-get update in $dest failed"
  echo "TREE=$dest"
}

release() {
  local dest=$1
  [[ -d $dest ]] || return 0
  leave "$dest"
  unmount_under "$dest"
  rm -rf --one-file-system "$dest"
}

[[ $(id -u) -eq 0 ]] || fail "needs root (debootstrap, chroot, mount)"
case ${1:-} in
  prepare) prepare "$2" ;;
  release) release "$2" ;;
  base) echo "BASE=$(ensure_base)/tree" ;;
  *) echo "usage: $0 prepare|release DEST | base" >&2; exit 2 ;;
esac
