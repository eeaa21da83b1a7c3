# shellcheck shell=bash disable=SC2034  # sourced by build.sh, which uses what is defined here
# Scenarios of the real Debian host, sourced by build.sh (not run on its own).
#
# Each scenario is a copy of a finished tree (base, or another scenario) changed by real operations
# inside it: apt-get, dpkg, dkms, update-initramfs, apt-mark, the kernel's sign-file, mokutil.
# Only three kinds of files are written by hand, because no package can make them on a build host:
#   proc/sys/kernel/osrelease   which kernel "runs" (always the newest one, NEW_K)
#   sys/firmware/efi/efivars/*  SecureBoot / SetupMode variables (Secure Boot on or off)
#   MokListRT                   the copy shim makes of MokNew at boot (mokutil --import wrote MokNew)
# After each scenario the real tools run inside its tree; their outputs go to scenarios/NAME/ref/.
#
# Uses from build.sh: OUT BASE_TREE LOG NEW_K OLD_K NEW_PKG OLD_PKG HDR_PKG NEW_ABI KSERIES MOUNTED
#                     step logged die enter leave leave_proc in_tree apt_in remove_tree pin

SCENARIOS=(healthy headers_missing dkms_uninstalled initramfs_forced initramfs_dropped
           signed_sb_off signed_sb_on held half_configured)
TEST_KEY_CN="dkms-exporter realhost test key"
EFI_GLOBAL_GUID=8be4df61-93ca-11d2-aa0d-00e098032b8c
SHIM_LOCK_GUID=605dab50-e046-4300-abb6-3dd810dd8b23
# libefivar accepts a plain directory as efivarfs when this names it (mokutil reads our fixtures).
EFIVARS=/sys/firmware/efi/efivars/

# ---------------------------------------------------------------- copying trees

# Fingerprint of the hardlinked part of a tree: an in-place write through a hardlink changes it.
usr_manifest() { (cd "$1/usr" && find . -xdev -printf '%p %i %s %T@\n' | LC_ALL=C sort | sha256sum | cut -c1-16); }

# Copies tree $1 to $2: usr/ as hardlinks (the tools used here replace files by rename or unlink,
# never write into them; usr_manifest checks that), everything else as real copies.
copy_tree() {
  local from=$1 to=$2 e
  mkdir -p "$to"
  for e in "$from"/* "$from"/.[!.]*; do
    [[ -e $e || -L $e ]] || continue
    if [[ ${e##*/} == usr ]]; then cp -al "$e" "$to/"; else cp -a --reflink=auto "$e" "$to/"; fi
  done
}

new_scenario() {
  local name=$1 from=$2
  step "scenario $name (copy of ${from#"$ROOT"/})"
  remove_tree "$OUT/scenarios/$name"
  mkdir -p "$OUT/scenarios/$name"
  copy_tree "$from" "$OUT/scenarios/$name/tree"
  SRC_MANIFEST=$(usr_manifest "$from")
  SRC_TREE=$from
}

finish_scenario() {
  local name=$1 what=$2 t=$OUT/scenarios/$1/tree
  mkdir -p "$t/proc/sys/kernel"
  echo "$NEW_K" >"$t/proc/sys/kernel/osrelease"
  [[ $(usr_manifest "$SRC_TREE") == "$SRC_MANIFEST" ]] || die "scenario $name changed files of ${SRC_TREE#"$ROOT"/} through hardlinks"
  echo "$what" >"$OUT/scenarios/$name/README"
  collect_reference "$name"
}

# An EFI variable file as efivarfs shows it: 4 bytes of attributes, then the value bytes ($4...).
write_efivar() {
  local t=$1 name=$2 attrs=$3; shift 3
  mkdir -p "$t$EFIVARS"
  local b
  { printf '%b' "\\x$attrs\\x00\\x00\\x00"; for b in "$@"; do printf '%b' "\\x$b"; done; } >"$t$EFIVARS$name"
}

# ---------------------------------------------------------------- the scenarios

scenario_healthy() {
  new_scenario healthy "$BASE_TREE"
  finish_scenario healthy "The base tree as built: v4l2loopback and acpi-call installed by DKMS for $NEW_K (the kernel with headers), none for $OLD_K; $OLD_PKG held; no EFI."
}

scenario_headers_missing() {
  local t=$OUT/scenarios/headers_missing/tree
  new_scenario headers_missing "$BASE_TREE"
  enter "$t"
  step "  apt-get purge $HDR_PKG and its -common package"
  logged apt_in "$t" purge "$HDR_PKG" "linux-headers-$KSERIES-$NEW_ABI-common"
  step "  apt-get remove $NEW_PKG (kernel prerm hook: dkms remove; the last kernel, so DKMS forgets the modules)"
  logged apt_in "$t" remove "$NEW_PKG"
  step "  apt-get install $NEW_PKG (kernel postinst hook: dkms autoinstall skipped, no headers)"
  logged apt_in "$t" install "$(pin "$NEW_PKG")"
  step "  apt-get install --reinstall v4l2loopback-dkms acpi-call-dkms (dkms add; build skipped, no headers)"
  logged apt_in "$t" install --reinstall v4l2loopback-dkms acpi-call-dkms
  leave "$t"
  finish_scenario headers_missing "Headers of $NEW_K purged, $NEW_PKG removed and installed again, the DKMS packages reinstalled: both modules are registered (added) but built for no kernel."
}

scenario_dkms_uninstalled() {
  local t=$OUT/scenarios/dkms_uninstalled/tree src ver
  new_scenario dkms_uninstalled "$BASE_TREE"
  src=("$t"/usr/src/v4l2loopback-*)
  ver=${src[0]##*/v4l2loopback-}
  enter "$t"
  step "  dkms uninstall -m v4l2loopback -v $ver -k $NEW_K"
  logged in_tree "$t" dkms uninstall -m v4l2loopback -v "$ver" -k "$NEW_K"
  leave "$t"
  finish_scenario dkms_uninstalled "dkms uninstall of v4l2loopback for $NEW_K: built, not installed; acpi-call still installed."
}

scenario_initramfs_forced() {
  local t=$OUT/scenarios/initramfs_forced/tree
  new_scenario initramfs_forced "$BASE_TREE"
  enter "$t"
  step "  v4l2loopback into /etc/initramfs-tools/modules; update-initramfs -u -k $NEW_K"
  echo v4l2loopback >>"$t/etc/initramfs-tools/modules"
  logged in_tree "$t" update-initramfs -u -k "$NEW_K"
  leave "$t"
  finish_scenario initramfs_forced "v4l2loopback forced into the initramfs of $NEW_K through /etc/initramfs-tools/modules."
}

scenario_initramfs_dropped() {
  local t=$OUT/scenarios/initramfs_dropped/tree
  new_scenario initramfs_dropped "$OUT/scenarios/initramfs_forced/tree"
  enter "$t"
  step "  v4l2loopback out of /etc/initramfs-tools/modules; update-initramfs -u -k $NEW_K"
  sed -i '/^v4l2loopback$/d' "$t/etc/initramfs-tools/modules"
  logged in_tree "$t" update-initramfs -u -k "$NEW_K"
  leave "$t"
  finish_scenario initramfs_dropped "From initramfs_forced: v4l2loopback taken out of the modules list, the initramfs of $NEW_K regenerated without it."
}

scenario_signed_sb_off() {
  local t=$OUT/scenarios/signed_sb_off/tree hash mod
  new_scenario signed_sb_off "$BASE_TREE"
  step "  test key made with openssl (host); the tree's sign-file (linux-kbuild-6.1) signs v4l2loopback for $NEW_K"
  openssl req -new -x509 -nodes -days 36500 -subj "/CN=$TEST_KEY_CN" -newkey rsa:2048 \
    -keyout "$t/var/lib/dkms/mok.key" -outform DER -out "$t/var/lib/dkms/mok.pub" >>"$LOG" 2>&1
  chmod 600 "$t/var/lib/dkms/mok.key"
  # The hash DKMS itself would use: the kernel's CONFIG_MODULE_SIG_HASH.
  hash=$(sed -n 's/^CONFIG_MODULE_SIG_HASH="\(.*\)"$/\1/p' "$t/boot/config-$NEW_K")
  mod=$(cd "$t" && ls usr/lib/modules/"$NEW_K"/updates/dkms/v4l2loopback.ko*)
  enter "$t"
  logged in_tree "$t" /usr/lib/linux-kbuild-6.1/scripts/sign-file "${hash:-sha512}" \
    /var/lib/dkms/mok.key /var/lib/dkms/mok.pub "/$mod"
  leave "$t"
  write_efivar "$t" "SecureBoot-$EFI_GLOBAL_GUID" 06 00
  write_efivar "$t" "SetupMode-$EFI_GLOBAL_GUID" 06 00
  finish_scenario signed_sb_off "v4l2loopback for $NEW_K signed by sign-file with a test key (/var/lib/dkms/mok.pub), acpi_call unsigned; efivars: Secure Boot off."
}

scenario_signed_sb_on() {
  local t=$OUT/scenarios/signed_sb_on/tree
  new_scenario signed_sb_on "$OUT/scenarios/signed_sb_off/tree"
  write_efivar "$t" "SecureBoot-$EFI_GLOBAL_GUID" 06 01
  step "  mokutil --import /var/lib/dkms/mok.pub (writes MokNew); MokListRT = what shim enrolls from it at boot"
  in_tree "$t" env EFIVARFS_PATH="$EFIVARS" mokutil --generate-hash=realhost >"$t/tmp/mok-hash" 2>>"$LOG"
  [[ -s $t/tmp/mok-hash ]] || die "mokutil --generate-hash printed nothing"
  logged in_tree "$t" env EFIVARFS_PATH="$EFIVARS" mokutil --import /var/lib/dkms/mok.pub --hash-file /tmp/mok-hash
  rm -f "$t/tmp/mok-hash"
  local new="$t${EFIVARS}MokNew-$SHIM_LOCK_GUID"
  [[ -s $new ]] || die "mokutil --import wrote no MokNew variable"
  # MokListRT is volatile boot-service|runtime (attributes 0x06); its value is MokNew's value.
  { printf '\x06\x00\x00\x00'; tail -c +5 "$new"; } >"$t${EFIVARS}MokListRT-$SHIM_LOCK_GUID"
  rm -f "$new" "$t${EFIVARS}MokAuth-$SHIM_LOCK_GUID"
  finish_scenario signed_sb_on "From signed_sb_off: efivars say Secure Boot on (Debian's kernel then enforces module signatures) and the test key is an enrolled MOK."
}

scenario_held() {
  local t=$OUT/scenarios/held/tree
  new_scenario held "$BASE_TREE"
  enter "$t"
  step "  apt-mark unhold $OLD_PKG; apt-mark hold dkms v4l2loopback-dkms"
  logged in_tree "$t" apt-mark unhold "$OLD_PKG"
  logged in_tree "$t" apt-mark hold dkms v4l2loopback-dkms
  leave "$t"
  finish_scenario held "Holds changed with apt-mark: $OLD_PKG released, dkms and v4l2loopback-dkms held."
}

# A minimal binary package built with dpkg-deb; $3 is its postinst body.
make_deb() {
  local name=$1 out=$2 postinst=$3 d
  d=$(mktemp -d)
  mkdir -p "$d/DEBIAN" "$d/usr/share/doc/$name"
  cat >"$d/DEBIAN/control" <<EOF
Package: $name
Version: 1.0
Architecture: all
Maintainer: dkms-exporter tests <tests@example.invalid>
Section: misc
Priority: optional
Description: dkms-exporter test package
 Built by tests/realhost/scenarios.sh to leave the dpkg database unfinished.
EOF
  printf '#!/bin/sh\n%s\n' "$postinst" >"$d/DEBIAN/postinst"
  chmod 755 "$d/DEBIAN/postinst"
  echo "test package" >"$d/usr/share/doc/$name/README"
  dpkg-deb --root-owner-group --build "$d" "$out" >>"$LOG" 2>&1
  rm -rf "$d"
}

scenario_half_configured() {
  local t=$OUT/scenarios/half_configured/tree
  new_scenario half_configured "$BASE_TREE"
  step "  dpkg -i a package whose postinst fails; dpkg --unpack another one"
  make_deb dkms-exporter-test-failing-postinst "$t/tmp/failing.deb" 'echo "postinst fails on purpose" >&2; exit 1'
  make_deb dkms-exporter-test-unpacked "$t/tmp/unpacked.deb" 'exit 0'
  enter "$t"
  if in_tree "$t" dpkg -i /tmp/failing.deb >>"$LOG" 2>&1; then die "dpkg -i of the failing package succeeded"; fi
  logged in_tree "$t" dpkg --unpack /tmp/unpacked.deb
  leave "$t"
  rm -f "$t/tmp/failing.deb" "$t/tmp/unpacked.deb"
  finish_scenario half_configured "dkms-exporter-test-failing-postinst half-configured (its postinst failed), dkms-exporter-test-unpacked unpacked and never configured."
}

# ---------------------------------------------------------------- reference outputs

# Runs a tool in the tree: stdout to ref/$2, stderr to ref/$2.stderr, exit status to ref/$2.rc.
ref_run() {
  local t=$1 out=$2 rc=0; shift 2
  in_tree "$t" "$@" >"$REF/$out" 2>"$REF/$out.stderr" || rc=$?
  echo "$rc" >"$REF/$out.rc"
}

# The real tools' view of scenario $1, with /proc mounted (dkms needs it) and nothing else.
collect_reference() {
  local name=$1 t=$OUT/scenarios/$1/tree f field k
  REF=$OUT/scenarios/$name/ref
  rm -rf "$REF"
  mkdir -p "$REF/lsinitramfs"
  step "  reference: dkms status, modinfo, lsinitramfs, dpkg --audit, apt-mark showhold, mokutil in $name"
  mountpoint -q "$t/proc" || { mount -t proc proc "$t/proc"; MOUNTED+=("$t/proc"); }
  ref_run "$t" dkms-status.txt dkms status
  ref_run "$t" dpkg-audit.txt dpkg --audit
  ref_run "$t" apt-mark-showhold.txt apt-mark showhold
  ref_run "$t" mokutil-sb-state.txt env EFIVARFS_PATH="$EFIVARS" mokutil --sb-state
  ref_run "$t" mokutil-list-enrolled.txt env EFIVARFS_PATH="$EFIVARS" mokutil --list-enrolled
  # One line per module file and field: path, field, value (modinfo -F joins repeats with newlines).
  : >"$REF/modinfo.tsv"
  while IFS= read -r f; do
    for field in vermagic signer sig_key sig_hashalgo; do
      printf '%s\t%s\t%s\n' "$f" "$field" "$(in_tree "$t" modinfo -F "$field" "$f" | paste -sd ' ')" >>"$REF/modinfo.tsv"
    done
  done < <(cd "$t" && find usr/lib/modules/*/updates/dkms -type f -name '*.ko*' 2>/dev/null | sed 's|^|/|' | LC_ALL=C sort)
  for f in "$t"/boot/initrd.img-*; do
    [[ -f $f ]] || continue
    k=${f##*/initrd.img-}
    ref_run "$t" "lsinitramfs/$k.txt" lsinitramfs "/boot/initrd.img-$k"
  done
  for f in "$t"/boot/vmlinuz-*; do if [[ -f $f ]]; then echo "${f##*/vmlinuz-}"; fi; done >"$REF/kernels.txt"
  leave_proc "$t"
  cat >"$REF/scenario.env" <<EOF
SCENARIO=$name
NEW_KERNEL=$NEW_K
OLD_KERNEL=$OLD_K
NEW_IMAGE_PACKAGE=$NEW_PKG
OLD_IMAGE_PACKAGE=$OLD_PKG
NEW_HEADERS_PACKAGE=$HDR_PKG
TEST_KEY_CN=$TEST_KEY_CN
EOF
}
