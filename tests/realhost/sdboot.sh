#!/usr/bin/env bash
# The systemd-boot trees of the Debian 13 generation: the real host's `healthy` tree with
# Debian's systemd-boot installed by `bootctl install` into an ESP at /boot/efi, both kernels
# added by `kernel-install add` (type #1 BLS entries, 90-loaderentry.install), and one variant
# per way systemd-boot picks its default entry (loader.conf `default`, the LoaderEntryDefault and
# LoaderEntryOneShot EFI variables).  Each variant's reference is the tree's own
# `bootctl list --json=short` (systemd 257), run inside it.
#
# Usage: sdboot.sh REALHOST_DIR   (a trixie build of build.sh: REALHOST_DIR/scenarios/healthy)
# Cached like build.sh: <REALHOST_DIR>/../../sdboot/KEY (KEY hashes this script, esp-lib.sh and the
# build's stamp); the two most recently used kept.  Prints SDBOOT_DIR=<dir> last.  Cold: about 2 minutes.
set -euo pipefail
umask 022
export LC_ALL=C.UTF-8

SRC=${1:?usage: sdboot.sh REALHOST_DIR}
ROOT=$(cd "$SRC/../.." && pwd)
TAG=sdboot
# shellcheck source=tests/realhost/esp-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/esp-lib.sh"
esp_init "${BASH_SOURCE[0]}"
LOADER_GUID=4a67b082-0a4c-41cf-b6c7-440b29bb8c4f
# Variants: name, loader.conf default (or -), LoaderEntryDefault (or -), LoaderEntryOneShot (or -).
# NEW/OLD stand for the two kernels' entry ids (MACHINE_ID-KERNEL.conf, as kernel-install names
# them); a glob is kept as written.
VARIANTS=(
  "plain - - -"
  "conf_default OLDGLOB - -"
  "var_default OLDGLOB NEW -"
  "oneshot - NEW OLD"
  "oneshot_nomatch OLDGLOB - nosuch.conf"
)


# An EFI variable as efivarfs shows it: 4 bytes of attributes (NV|BS|RT), then UTF-16LE + NUL.
write_efivar() {
  local file=$1 value=$2
  { printf '\x07\x00\x00\x00'; printf '%s\0' "$value" | iconv -f UTF-8 -t UTF-16LE; } >"$file"
}

# The tree with systemd-boot and both kernels' entries (one copy, all variants hardlink it).
build_esp_tree() {
  local t=$1 k
  step "copy of healthy; apt-get install systemd-boot"
  cp -a "$SRC/scenarios/healthy/tree" "$t"
  mount_on -t proc proc "$t/proc"
  printf '#!/bin/sh\nexit 101\n' >"$t/usr/sbin/policy-rc.d"; chmod 755 "$t/usr/sbin/policy-rc.d"
  in_tree "$t" apt-get -y -q -o Dpkg::Use-Pty=0 --no-install-recommends install systemd-boot >>"$OUT.log" 2>&1
  # The installer's kernel command line; without it kernel-install copies the build host's /proc/cmdline.
  echo "root=/dev/vda1 ro quiet" >"$t/etc/kernel/cmdline"
  # A tmpfs ESP: 90-loaderentry names files relative to the mount point (stat -c %m), which a bind
  # mount of the same file system would not be.
  mkdir -p "$t/boot/efi"
  mount_on -t tmpfs -o size=512m,mode=0700 esp "$t/boot/efi"
  step "bootctl install --esp-path=/boot/efi --no-variables; kernel-install add for each kernel"
  in_tree "$t" bootctl --esp-path=/boot/efi --no-variables install >>"$OUT.log" 2>&1
  for k in $(in_tree "$t" linux-version list | sort -rV); do
    in_tree "$t" kernel-install --esp-path=/boot/efi add "$k" "/boot/vmlinuz-$k" "/boot/initrd.img-$k" >>"$OUT.log" 2>&1
  done
  mkdir "$t/boot/efi.copy"
  cp -a "$t/boot/efi/." "$t/boot/efi.copy/"
  unmount "$t/boot/efi"
  rmdir "$t/boot/efi" && mv "$t/boot/efi.copy" "$t/boot/efi"
  rm -f "$t/usr/sbin/policy-rc.d"
  unmount "$t/proc"
}

# Variant $2 of tree $1: loader.conf default $3, LoaderEntryDefault $4, LoaderEntryOneShot $5.
make_variant() {
  local base=$1 name=$2 conf=$3 def=$4 one=$5 v=$OUT/variants/$2 t mid new old
  t=$v/tree
  mkdir -p "$v/ref"
  cp -al "$base" "$t"
  mid=$(cat "$t/etc/machine-id")
  new=$mid-$(grep -m1 ^NEW_KERNEL= "$SRC/host.env" | cut -d= -f2).conf
  old=$mid-$(grep -m1 ^OLD_KERNEL= "$SRC/host.env" | cut -d= -f2).conf
  subst() { case $1 in NEW) echo "$new" ;; OLD) echo "$old" ;; OLDGLOB) echo "${old%.conf}*" ;; *) echo "$1" ;; esac; }
  # New files, never writes through the hardlinks into the shared copy.
  rm -f "$t/boot/efi/loader/loader.conf"
  { echo "timeout 3"; [[ $conf == - ]] || echo "default $(subst "$conf")"; } >"$t/boot/efi/loader/loader.conf"
  mkdir -p "$t/sys/firmware/efi/efivars"
  [[ $def == - ]] || write_efivar "$t/sys/firmware/efi/efivars/LoaderEntryDefault-$LOADER_GUID" "$(subst "$def")"
  [[ $one == - ]] || write_efivar "$t/sys/firmware/efi/efivars/LoaderEntryOneShot-$LOADER_GUID" "$(subst "$one")"
  mount_on -t proc proc "$t/proc"
  mount_on --bind "$t/boot/efi" "$t/boot/efi"   # bootctl wants the ESP to be a mount point
  in_tree "$t" bootctl --esp-path=/boot/efi list --json=short >"$v/ref/bootctl-list.json" 2>"$v/ref/bootctl-list.stderr" ||
    die "bootctl list failed in $name: $(cat "$v/ref/bootctl-list.stderr")"
  unmount "$t/boot/efi"
  unmount "$t/proc"
  printf 'NEW_ENTRY=%s\nOLD_ENTRY=%s\n' "$new" "$old" >"$v/ref/entries.env"
}

# Everything one build makes (cached_build stamps and prunes).
build_all() {
  local spec
  rm -rf "$OUT/variants"; mkdir -p "$OUT/variants"
  # An ESP tree finished by an interrupted run is kept (the variants are remade).
  if [[ ! -f $OUT/esp-tree.done ]]; then
    rm -rf "$OUT/esp-tree"; build_esp_tree "$OUT/esp-tree"; touch "$OUT/esp-tree.done"
  fi
  for spec in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2086  # the spec's words
    make_variant "$OUT/esp-tree" $spec
  done
  : >"$OUT/timings.txt"
}

cached_build SDBOOT_DIR build_all
