#!/usr/bin/env bash
# Unified kernel images (BLS type #2) on the Debian 13 generation: the real host's `healthy` tree
# with Debian's systemd-boot and systemd-ukify installed, an ESP made by `bootctl install`, and
# UKIs made by `kernel-install add` with `layout=uki` (60-ukify.install runs Debian's ukify on
# the tree's real kernel and initramfs; 90-uki-copy.install puts them in $ESP/EFI/Linux).
# Variants (each a hardlinked copy of the tree with its own ESP):
#   uki          both kernels as UKIs only
#   both         the same, plus a type #1 entry for NEW (kernel-install again with layout=bls)
#   order        uki's ESP plus generated type #1 entries with random sort-key/machine-id/version
#   bad_table    uki, NEW's UKI cut inside its section table
#   bad_offset   uki, the .initrd of NEW's UKI pointing past the end of the file
#   bad_vsize    uki, the .initrd of NEW's UKI with VirtualSize 0xfffff000
# References in variants/NAME/ref: `bootctl list --json=short` (systemd 257, run in the tree);
# for each UKI, `objcopy --dump-section .initrd=` and the tree's `lsinitramfs` of that section
# (NAME.lsinitramfs), `ukify inspect --json=short` (NAME.inspect.json).
#
# Usage: ukiboot.sh REALHOST_DIR   (a trixie build of build.sh)
# Cached under <REALHOST_DIR>/../../ukiboot/KEY (KEY hashes this script, esp-lib.sh and the build's stamp);
# two kept.  Prints UKIBOOT_DIR=<dir> last.
set -euo pipefail
umask 022
export LC_ALL=C.UTF-8

SRC=${1:?usage: ukiboot.sh REALHOST_DIR}
ROOT=$(cd "$SRC/../.." && pwd)
TAG=ukiboot
# shellcheck source=tests/realhost/esp-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/esp-lib.sh"
esp_init "${BASH_SOURCE[0]}"
ORDER_ENTRIES=40
ORDER_SEED=16

kernel_of() { grep -m1 "^$1_KERNEL=" "$SRC/host.env" | cut -d= -f2; }

# The tree with systemd-boot and ukify, and the two ESPs (esp-uki, esp-both) beside it.
build_tree() {
  local t=$OUT/tree new old
  new=$(kernel_of NEW); old=$(kernel_of OLD)
  step "copy of healthy; apt-get install systemd-boot systemd-boot-efi systemd-ukify (the stub)"
  cp -a "$SRC/scenarios/healthy/tree" "$t"
  mount_on -t proc proc "$t/proc"
  printf '#!/bin/sh\nexit 101\n' >"$t/usr/sbin/policy-rc.d"; chmod 755 "$t/usr/sbin/policy-rc.d"
  in_tree "$t" apt-get -y -q -o Dpkg::Use-Pty=0 --no-install-recommends install systemd-boot systemd-boot-efi systemd-ukify \
    >>"$OUT.log" 2>&1
  echo "root=/dev/vda1 ro quiet" >"$t/etc/kernel/cmdline"
  mkdir -p "$t/boot/efi"
  mount_on -t tmpfs -o size=1g,mode=0700 esp "$t/boot/efi"
  step "bootctl install; kernel-install add (layout=uki) for $old and $new"
  in_tree "$t" bootctl --esp-path=/boot/efi --no-variables install >>"$OUT.log" 2>&1
  echo "layout=uki" >"$t/etc/kernel/install.conf"
  for k in "$old" "$new"; do
    in_tree "$t" kernel-install --verbose --esp-path=/boot/efi add "$k" "/boot/vmlinuz-$k" "/boot/initrd.img-$k" \
      >>"$OUT.log" 2>&1
  done
  mkdir "$OUT/esp-uki"; cp -a "$t/boot/efi/." "$OUT/esp-uki/"
  step "kernel-install add (layout=bls) for $new: a type #1 entry beside its UKI"
  echo "layout=bls" >"$t/etc/kernel/install.conf"
  in_tree "$t" kernel-install --esp-path=/boot/efi add "$new" "/boot/vmlinuz-$new" "/boot/initrd.img-$new" \
    >>"$OUT.log" 2>&1
  mkdir "$OUT/esp-both"; cp -a "$t/boot/efi/." "$OUT/esp-both/"
  echo "layout=uki" >"$t/etc/kernel/install.conf"
  unmount "$t/boot/efi"
  rm -f "$t/usr/sbin/policy-rc.d"
  unmount "$t/proc"
}

# Generated type #1 entries: random sort-key (or none), machine-id (or none), version; the file
# names are what the exporter must order like bootctl.  Deterministic (seeded).
order_entries() {
  local dir=$1
  python3 - "$dir" "$ORDER_ENTRIES" "$ORDER_SEED" <<'EOF'
import random, sys
d, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
keys = [None, "debian", "fedora", "arch", "Debian"]
mids = [None, "0" * 32, "f" * 32, "1234567890abcdef1234567890abcdef"]
vers = ["6.12.118+deb13-amd64", "6.12.113+deb13-amd64", "6.1.0-27-amd64", "6.12.9", "6.12.10", "6.12~rc1",
        "6.12-1", "6.12^post1", "6.12.a", "13", "5", "6.12.118+deb13-cloud-amd64", None]
for i in range(n):
    name = f"gen-{rnd.choice(['a', 'b', 'c'])}{rnd.randint(0, 20)}-{rnd.choice(vers) or 'x'}-{i}"
    if rnd.random() < 0.15:
        name += f"+{rnd.randint(0, 3)}" + (f"-{rnd.randint(0, 3)}" if rnd.random() < 0.5 else "")
    lines = [f"title Generated {i}"]
    for field, pool in (("sort-key", keys), ("machine-id", mids), ("version", vers)):
        v = rnd.choice(pool)
        if v is not None:
            lines.append(f"{field} {v}")
    lines.append(f"linux /gen/{i}/linux")
    with open(f"{d}/{name}.conf", "w") as f:
        f.write("\n".join(lines) + "\n")
EOF
}

# Damage NEW's UKI in place (a new file, never through the hardlinks): $2 = table | offset | vsize.
damage_uki() {
  local file=$1 how=$2 tmp
  tmp=$(mktemp "$file.XXXX"); cp "$file" "$tmp"
  python3 - "$tmp" "$how" <<'EOF'
import struct, sys
path, how = sys.argv[1], sys.argv[2]
b = bytearray(open(path, "rb").read())
lfanew = struct.unpack_from("<I", b, 0x3C)[0]
n = struct.unpack_from("<H", b, lfanew + 6)[0]
table = lfanew + 24 + struct.unpack_from("<H", b, lfanew + 20)[0]
names = [bytes(b[table + 40 * i: table + 40 * i + 8]).rstrip(b"\0") for i in range(n)]
at = table + 40 * names.index(b".initrd")
if how == "table":
    b = b[: table + 40 * n - 20]
elif how == "offset":
    struct.pack_into("<I", b, at + 20, len(b) - 4096)
elif how == "vsize":
    struct.pack_into("<I", b, at + 8, 0xFFFFF000)
open(path, "wb").write(b)
EOF
  mv "$tmp" "$file"
}

make_variant() {
  local name=$1 esp=$2 v=$OUT/variants/$1 t f mid new
  t=$v/tree
  mkdir -p "$v/ref"
  cp -al "$OUT/tree" "$t"
  rm -rf "$t/boot/efi"; mkdir "$t/boot/efi"; cp -a "$esp/." "$t/boot/efi/"
  mid=$(cat "$t/etc/machine-id"); new=$(kernel_of NEW)
  case $name in
    order) order_entries "$t/boot/efi/loader/entries" ;;
    bad_*) damage_uki "$t/boot/efi/EFI/Linux/$mid-$new.efi" "${name#bad_}" ;;
  esac
  mount_on -t proc proc "$t/proc"
  mount_on --bind "$t/boot/efi" "$t/boot/efi"
  in_tree "$t" bootctl --esp-path=/boot/efi list --json=short >"$v/ref/bootctl-list.json" 2>"$v/ref/bootctl-list.stderr" ||
    die "bootctl list failed in $name: $(cat "$v/ref/bootctl-list.stderr")"
  if [[ $name == uki || $name == both ]]; then
    for f in "$t"/boot/efi/EFI/Linux/*.efi; do
      f=${f##*/}
      in_tree "$t" ukify --json=short --all inspect "/boot/efi/EFI/Linux/$f" >"$v/ref/$f.inspect.json" 2>>"$OUT.log"
      objcopy --dump-section ".initrd=$t/tmp/$f.initrd" "$t/boot/efi/EFI/Linux/$f" "$t/tmp/$f.objcopy-out"
      in_tree "$t" lsinitramfs "/tmp/$f.initrd" >"$v/ref/$f.lsinitramfs"
      rm -f "$t/tmp/$f.initrd" "$t/tmp/$f.objcopy-out"
    done
  fi
  unmount "$t/boot/efi"
  unmount "$t/proc"
  printf 'NEW_KERNEL=%s\nOLD_KERNEL=%s\nMACHINE_ID=%s\n' "$new" "$(kernel_of OLD)" "$mid" >"$v/ref/entries.env"
}

# Everything one build makes (cached_build stamps and prunes).
build_all() {
  local start=$SECONDS
  command -v objcopy >/dev/null || die "objcopy (binutils) is needed for the .initrd references"
  rm -rf "$OUT/variants"; mkdir -p "$OUT/variants"
  if [[ ! -f $OUT/tree.done ]]; then
    rm -rf "$OUT/tree" "$OUT/esp-uki" "$OUT/esp-both"; build_tree; touch "$OUT/tree.done"
  fi
  echo "tree: $((SECONDS - start))s" >"$OUT/timings.txt"
  make_variant uki "$OUT/esp-uki"
  make_variant both "$OUT/esp-both"
  make_variant order "$OUT/esp-uki"
  make_variant bad_table "$OUT/esp-uki"
  make_variant bad_offset "$OUT/esp-uki"
  make_variant bad_vsize "$OUT/esp-uki"
}

cached_build UKIBOOT_DIR build_all
