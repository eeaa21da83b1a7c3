# shellcheck shell=bash disable=SC2034  # sourced by build.sh, which uses what is defined here
# Scenarios of the real Debian host, sourced by build.sh (not run on its own).
#
# Each scenario is a copy of a finished tree (base, or another scenario) changed by real operations
# inside it: apt-get, dpkg, dkms, update-initramfs, apt-mark, the kernel's sign-file, mokutil.
# Only three kinds of files are written by hand, because no package can make them on a build host:
#   proc/sys/kernel/osrelease   which kernel "runs" (NEW_K, the newest; OLD_K in early_boot_missing)
#   sys/firmware/efi/efivars/*  SecureBoot / SetupMode variables (Secure Boot on or off)
#   MokListRT                   the copy shim makes of MokNew at boot (mokutil --import wrote MokNew)
# After each scenario the real tools run inside its tree; their outputs go to scenarios/NAME/ref/.
#
# Uses from build.sh: OUT BASE_TREE LOG NEW_K OLD_K NEW_PKG OLD_PKG HDR_PKG OLD_HDR_PKG
#                     HDR_COMMON_PKG SUITE MOUNTED step logged die enter leave leave_proc in_tree apt_in
#                     remove_tree pin
# A scenario may start from an earlier one (new_scenario NAME FROM): SCENARIOS is the build order.

SCENARIOS=(healthy unregistered headers_missing dkms_uninstalled module_deleted depmod_stale initramfs_forced
           initramfs_dropped initramfs_stale signed_sb_off signed_sb_on held half_configured
           built_for_both stale_build early_boot_missing)
# The kernel module names the two DKMS packages build: modprobe is asked about each in every kernel.
REF_MODULES=(v4l2loopback acpi_call)
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

# finish_scenario NAME WHAT [RUNNING]: RUNNING (default NEW_K) is written as the running kernel.
finish_scenario() {
  local name=$1 what=$2 t=$OUT/scenarios/$1/tree
  RUNNING_K=${3:-$NEW_K}
  mkdir -p "$t/proc/sys/kernel"
  echo "$RUNNING_K" >"$t/proc/sys/kernel/osrelease"
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

scenario_unregistered() {
  local t=$OUT/scenarios/unregistered/tree
  new_scenario unregistered "$BASE_TREE"
  enter "$t"
  step "  apt-get purge $HDR_PKG and its -common package"
  logged apt_in "$t" purge "$HDR_PKG" "$HDR_COMMON_PKG"
  step "  apt-get remove $NEW_PKG (kernel prerm hook: dkms remove; the last kernel, so DKMS forgets the modules)"
  logged apt_in "$t" remove "$NEW_PKG"
  step "  apt-get install $NEW_PKG (kernel postinst hook: dkms autoinstall skipped, no headers)"
  logged apt_in "$t" install "$(pin "$NEW_PKG")"
  # dkms 3.0.10's prerm hook (dkms remove) forgets a module with its last kernel; dkms 3.2's
  # (dkms kernel_prerm) only uninstalls it and keeps it added: there DKMS is told to forget it.
  local m v
  if [[ $SUITE != bookworm ]]; then
    for m in v4l2loopback acpi-call; do
      for v in "$t"/var/lib/dkms/"$m"/*/; do
        [[ -d $v ]] || continue
        v=${v%/}; v=${v##*/}
        [[ $v != kernel-* ]] || continue
        step "  dkms remove $m/$v --all ($SUITE's prerm hook kept it added)"
        logged in_tree "$t" dkms remove "$m/$v" --all
      done
    done
  fi
  leave "$t"
  [[ ! -e $t/var/lib/dkms/v4l2loopback && ! -e $t/var/lib/dkms/acpi-call ]] || die "DKMS still knows the modules after $NEW_PKG was removed"
  finish_scenario unregistered "Headers of $NEW_K purged, $NEW_PKG removed (its prerm hook ran dkms remove: DKMS forgot both modules; on trixie the hook keeps them added and dkms remove --all is run) and installed again; v4l2loopback-dkms and acpi-call-dkms stay installed with their /usr/src trees."
}

scenario_headers_missing() {
  local t=$OUT/scenarios/headers_missing/tree
  new_scenario headers_missing "$OUT/scenarios/unregistered/tree"
  enter "$t"
  step "  apt-get install --reinstall v4l2loopback-dkms acpi-call-dkms (dkms add; build skipped, no headers)"
  logged apt_in "$t" install --reinstall v4l2loopback-dkms acpi-call-dkms
  leave "$t"
  finish_scenario headers_missing "From unregistered: the DKMS packages reinstalled (dkms add): both modules are registered (added) but built for no kernel."
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

scenario_module_deleted() {
  local t=$OUT/scenarios/module_deleted/tree
  new_scenario module_deleted "$BASE_TREE"
  # No tool leaves DKMS saying "installed" with the file gone: a cleanup script's rm does.
  step "  rm $NEW_K's v4l2loopback module file (no depmod, no dkms)"
  rm -f "$t"/usr/lib/modules/"$NEW_K"/updates/dkms/v4l2loopback.ko*
  finish_scenario module_deleted "v4l2loopback's module file for $NEW_K deleted with rm: DKMS still says installed and modules.dep still lists it."
}

# The version of the v4l2loopback source tree in tree $1.
v4l2loopback_version() {
  local src=("$1"/usr/src/v4l2loopback-*)
  [[ -d ${src[0]} ]] || die "no /usr/src/v4l2loopback-* in $1"
  echo "${src[0]##*/v4l2loopback-}"
}

scenario_depmod_stale() {
  local t=$OUT/scenarios/depmod_stale/tree ver
  new_scenario depmod_stale "$BASE_TREE"
  ver=$(v4l2loopback_version "$t")
  enter "$t"
  step "  dkms uninstall v4l2loopback for $NEW_K (file removed, depmod run); dkms install --no-depmod (file back, depmod skipped)"
  logged in_tree "$t" dkms uninstall -m v4l2loopback -v "$ver" -k "$NEW_K"
  logged in_tree "$t" dkms install --no-depmod -m v4l2loopback -v "$ver" -k "$NEW_K"
  leave "$t"
  compgen -G "$t/usr/lib/modules/$NEW_K/updates/dkms/v4l2loopback.ko*" >/dev/null || die "dkms install put no v4l2loopback file back"
  finish_scenario depmod_stale "dkms uninstall of v4l2loopback for $NEW_K (it runs depmod), then dkms install --no-depmod: DKMS says installed and the file is there, modules.dep does not list it."
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

scenario_initramfs_stale() {
  local t=$OUT/scenarios/initramfs_stale/tree ver
  new_scenario initramfs_stale "$OUT/scenarios/initramfs_forced/tree"
  ver=$(v4l2loopback_version "$t")
  enter "$t"
  # A plain rebuild is byte-identical (kbuild is reproducible): only the file's mtime would change.
  # With openssl present DKMS makes a key (/var/lib/dkms/mok.key) and signs what it builds, so the
  # rebuild is another file than the one the initramfs holds.
  step "  apt-get install openssl (DKMS signs what it builds from now on)"
  logged apt_in "$t" install "$(pin openssl)"
  step "  dkms build --force, dkms install --force of v4l2loopback for $NEW_K (newer than its initramfs)"
  logged in_tree "$t" dkms build --force -m v4l2loopback -v "$ver" -k "$NEW_K"
  logged in_tree "$t" dkms install --force -m v4l2loopback -v "$ver" -k "$NEW_K"
  leave "$t"
  [[ -f $t/var/lib/dkms/mok.pub ]] || die "DKMS made no signing key in initramfs_stale"
  finish_scenario initramfs_stale "From initramfs_forced: openssl installed, v4l2loopback rebuilt (DKMS signs it now) and reinstalled with --force for $NEW_K; its initramfs still holds the unsigned build."
}

scenario_signed_sb_off() {
  local t=$OUT/scenarios/signed_sb_off/tree hash mod sign
  new_scenario signed_sb_off "$BASE_TREE"
  # The kernel's sign-file, as the headers link it (linux-kbuild-6.1 or linux-kbuild-6.12.N+deb13).
  sign=$(readlink -f "$t/usr/src/linux-headers-$NEW_K/scripts/sign-file")
  sign=${sign#"$(readlink -f "$t")"}
  [[ -f $t$sign ]] || die "no sign-file for $NEW_K in the tree"
  step "  test key made with openssl (host); the tree's sign-file ($sign) signs v4l2loopback for $NEW_K"
  openssl req -new -x509 -nodes -days 36500 -subj "/CN=$TEST_KEY_CN" -newkey rsa:2048 \
    -keyout "$t/var/lib/dkms/mok.key" -outform DER -out "$t/var/lib/dkms/mok.pub" >>"$LOG" 2>&1
  chmod 600 "$t/var/lib/dkms/mok.key"
  # The hash DKMS itself would use: the kernel's CONFIG_MODULE_SIG_HASH.
  hash=$(sed -n 's/^CONFIG_MODULE_SIG_HASH="\(.*\)"$/\1/p' "$t/boot/config-$NEW_K")
  mod=$(cd "$t" && ls usr/lib/modules/"$NEW_K"/updates/dkms/v4l2loopback.ko*)
  enter "$t"
  case $mod in
    *.ko)
      logged in_tree "$t" "$sign" "${hash:-sha512}" /var/lib/dkms/mok.key /var/lib/dkms/mok.pub "/$mod" ;;
    *.ko.xz)
      # sign-file signs ELF only: unpack, sign, pack again with the options dkms 3.2 uses
      # (dkms.in: compress_xz_opts), as DKMS itself signs before it compresses.
      # The file is a hardlink into the base: the signed one replaces it by rename.
      # shellcheck disable=SC2016  # $1 is expanded by the sh inside the tree
      logged in_tree "$t" sh -c 'xz -dc "$1" >/tmp/signing.ko' sh "/$mod"
      logged in_tree "$t" "$sign" "${hash:-sha512}" /var/lib/dkms/mok.key /var/lib/dkms/mok.pub /tmp/signing.ko
      logged in_tree "$t" xz --check=crc32 --lzma2=dict=1MiB -f /tmp/signing.ko
      mv -f "$t/tmp/signing.ko.xz" "$t/$mod" ;;
    *) die "signed_sb_off: no way to sign $mod" ;;
  esac
  [[ -f $t/$mod ]] || die "signed_sb_off: $mod is gone after signing"
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

scenario_built_for_both() {
  local t=$OUT/scenarios/built_for_both/tree m
  new_scenario built_for_both "$BASE_TREE"
  enter "$t"
  step "  apt-get install $OLD_HDR_PKG (header_postinst.d hook: DKMS builds and installs both modules for $OLD_K)"
  logged apt_in "$t" install "$(pin "$OLD_HDR_PKG")"
  leave "$t"
  for m in "${REF_MODULES[@]}"; do
    compgen -G "$t/usr/lib/modules/$OLD_K/updates/dkms/$m.ko*" >/dev/null || die "DKMS did not install $m for $OLD_K"
  done
  finish_scenario built_for_both "Headers of $OLD_K installed too: DKMS built and installed v4l2loopback and acpi-call for both kernels."
}

scenario_stale_build() {
  local t=$OUT/scenarios/stale_build/tree from to
  new_scenario stale_build "$OUT/scenarios/built_for_both/tree"
  from=$(cd "$t" && ls usr/lib/modules/"$NEW_K"/updates/dkms/v4l2loopback.ko*)
  to=usr/lib/modules/$OLD_K/updates/dkms/${from##*/}
  step "  $NEW_K's v4l2loopback copied over $OLD_K's (built against $NEW_K's symbols); depmod -a $OLD_K"
  rm -f "${t:?}/$to"   # a hardlink into built_for_both: replaced, never written through
  cp -p "$t/$from" "$t/$to"
  logged in_tree "$t" depmod -a "$OLD_K"
  finish_scenario stale_build "From built_for_both: the v4l2loopback DKMS built for $NEW_K copied into /lib/modules/$OLD_K/updates/dkms over the one built for $OLD_K, then depmod -a $OLD_K: a module built against another kernel's symbol versions."
}

scenario_early_boot_missing() {
  local t=$OUT/scenarios/early_boot_missing/tree
  new_scenario early_boot_missing "$OUT/scenarios/built_for_both/tree"
  # NEW's initramfs is the one its kernel postinst made in the base, before DKMS built v4l2loopback
  # for it (dkms 3 never regenerates an initramfs): the classic way an early-boot module goes
  # missing.  Regenerating it once more without the module would cost ~25 s and change nothing
  # the exporter or the kernel can see but the image's mtime.
  enter "$t"
  step "  v4l2loopback into /etc/initramfs-tools/modules; update-initramfs -u -k $OLD_K (the running kernel here)"
  echo v4l2loopback >>"$t/etc/initramfs-tools/modules"
  logged in_tree "$t" update-initramfs -u -k "$OLD_K"
  leave "$t"
  finish_scenario early_boot_missing "From built_for_both, running $OLD_K: v4l2loopback named in /etc/initramfs-tools/modules and $OLD_K's initramfs regenerated with it (it loads in early boot now); $NEW_K's initramfs (the next boot) is still the one made before DKMS built v4l2loopback for $NEW_K, without it." "$OLD_K"
}

# ---------------------------------------------------------------- reference outputs

# Runs a tool in the tree: stdout to ref/$2, stderr to ref/$2.stderr, exit status to ref/$2.rc.
ref_run() {
  local t=$1 out=$2 rc=0; shift 2
  in_tree "$t" "$@" >"$REF/$out" 2>"$REF/$out.stderr" </dev/null || rc=$?
  echo "$rc" >"$REF/$out.rc"
}

# The real tools' view of scenario $1, with /proc mounted (dkms needs it) and nothing else.
collect_reference() {
  local name=$1 t=$OUT/scenarios/$1/tree f field k m
  REF=$OUT/scenarios/$name/ref
  rm -rf "$REF"
  mkdir -p "$REF/lsinitramfs" "$REF/modprobe" "$REF/depmod-e"
  step "  reference: dkms status, modinfo, modprobe, depmod -e, lsinitramfs, unmkinitramfs, dpkg --audit, apt-mark showhold, mokutil in $name"
  mountpoint -q "$t/proc" || { mount -t proc proc "$t/proc"; MOUNTED+=("$t/proc"); }
  for f in "$t"/boot/vmlinuz-*; do if [[ -f $f ]]; then echo "${f##*/vmlinuz-}"; fi; done >"$REF/kernels.txt"
  ref_run "$t" dkms-status.txt dkms status
  ref_run "$t" dpkg-audit.txt dpkg --audit
  ref_run "$t" apt-mark-showhold.txt apt-mark showhold
  ref_run "$t" mokutil-sb-state.txt env EFIVARFS_PATH="$EFIVARS" mokutil --sb-state
  ref_run "$t" mokutil-list-enrolled.txt env EFIVARFS_PATH="$EFIVARS" mokutil --list-enrolled
  # DKMS source trees: dkms.conf sourced by bash as dkms reads it, the package owning it, its state.
  # shellcheck disable=SC2016  # expanded by the bash inside the tree
  ref_run "$t" dkms-sources.tsv bash -c 'for c in /usr/src/*/dkms.conf; do
      [ -f "$c" ] || continue
      ( kernel_source_dir=/nonexistent; . "$c" >/dev/null 2>&1
        owner=$(dpkg-query -S "$c" | cut -d: -f1)
        printf "%s\t%s\t%s\t%s\t%s\n" "$c" "$PACKAGE_NAME" "$PACKAGE_VERSION" "$owner" \
          "$(dpkg-query -W -f="\${db:Status-Abbrev}" "$owner" | tr -d " ")" )
    done'
  # One line per module file and field: path, field, value (modinfo -F joins repeats with newlines);
  # and the symbol CRCs each file was built against: path, symbol, crc.
  : >"$REF/modinfo.tsv"
  : >"$REF/modversions.tsv"
  while IFS= read -r f; do
    for field in vermagic signer sig_key sig_hashalgo; do
      printf '%s\t%s\t%s\n' "$f" "$field" "$(in_tree "$t" modinfo -F "$field" "$f" </dev/null | paste -sd ' ')" >>"$REF/modinfo.tsv"
    done
    in_tree "$t" modprobe --dump-modversions "$f" </dev/null | awk -v f="$f" '{print f "\t" $2 "\t" $1}' >>"$REF/modversions.tsv"
  done < <(cd "$t" && find usr/lib/modules/*/updates/dkms -type f -name '*.ko*' 2>/dev/null | sed 's|^|/|' | LC_ALL=C sort)
  while read -r k; do
    # Where modules.dep sends each DKMS module name (or "not found").
    for m in "${REF_MODULES[@]}"; do
      ref_run "$t" "modprobe/$k-$m.txt" modprobe -S "$k" --show-depends "$m"
    done
    # depmod's own symbol check against the kernel's exports (the headers' Module.symvers): warnings.
    if [[ -f $t/usr/src/linux-headers-$k/Module.symvers ]]; then
      ref_run "$t" "depmod-e/$k.txt" sh -c "depmod -n -e -E /usr/src/linux-headers-$k/Module.symvers $k >/dev/null"
    fi
    if [[ -f $t/boot/initrd.img-$k ]]; then
      ref_run "$t" "lsinitramfs/$k.txt" lsinitramfs "/boot/initrd.img-$k"
    fi
  done <"$REF/kernels.txt"
  initramfs_copies "$t"
  leave_proc "$t"
  cat >"$REF/scenario.env" <<EOF
SCENARIO=$name
NEW_KERNEL=$NEW_K
OLD_KERNEL=$OLD_K
RUNNING_KERNEL=$RUNNING_K
NEW_IMAGE_PACKAGE=$NEW_PKG
OLD_IMAGE_PACKAGE=$OLD_PKG
NEW_HEADERS_PACKAGE=$HDR_PKG
OLD_HEADERS_PACKAGE=$OLD_HDR_PKG
TEST_KEY_CN=$TEST_KEY_CN
EOF
}

# Every DKMS module file an initramfs holds (lsinitramfs lists it under updates/dkms), compared with
# the file on disk: the image unpacked by unmkinitramfs, one row per file: kernel, path, sha256 of
# the image's copy, sha256 of the disk file ("-" when gone), mtime of the image, mtime of the file.
initramfs_copies() {
  local t=$1 k p copy unpacked=/tmp/realhost-unmkinitramfs
  : >"$REF/initramfs-copies.tsv"
  while read -r k; do
    if ! { [[ -f $REF/lsinitramfs/$k.txt ]] && grep -q '/updates/dkms/.*\.ko' "$REF/lsinitramfs/$k.txt"; }; then
      continue
    fi
    rm -rf "${t:?}$unpacked"
    logged in_tree "$t" unmkinitramfs "/boot/initrd.img-$k" "$unpacked" </dev/null
    while IFS= read -r p; do
      copy=$(find "$t$unpacked" -path "*/$p" -type f | head -n1)
      [[ -n $copy ]] || die "unmkinitramfs of $k's image has no $p, though lsinitramfs lists it"
      printf '%s\t/%s\t%s\t%s\t%s\t%s\n' "$k" "$p" "$(sha256sum <"$copy" | cut -d' ' -f1)" \
        "$(if [[ -f $t/$p ]]; then sha256sum <"$t/$p" | cut -d' ' -f1; else echo -; fi)" \
        "$(stat -c %.9Y "$t/boot/initrd.img-$k")" "$(if [[ -f $t/$p ]]; then stat -c %.9Y "$t/$p"; else echo -; fi)" \
        >>"$REF/initramfs-copies.tsv"
    done < <(grep '/updates/dkms/.*\.ko' "$REF/lsinitramfs/$k.txt")
    rm -rf "${t:?}$unpacked"
  done <"$REF/kernels.txt"
}
