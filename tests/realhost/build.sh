#!/usr/bin/env bash
# Builds a real Debian 12 host tree from Debian's own packages, scenario trees derived from it by
# real operations (scenarios.sh), and the outputs of the real tools (dkms, modinfo, lsinitramfs,
# dpkg, apt-mark, mokutil) run inside each tree.  tests/realhost/test_differential.py judges the
# exporter against those outputs.
#
#   tests/realhost/build.sh          build, or reuse the cached build (cold: ~6 min, warm: ~0.1 s);
#                                    the last line of output is REALHOST_DIR=<the build directory>
#   tests/realhost/build.sh --print  print the cache directory and exit
#
# Layout under ${DKMS_EXPORTER_TEST_CACHE:-$HOME/.cache/dkms-exporter-tests}/realhost/:
#   bases/BASE_KEY/tree/     the pristine tree: debootstrap minbase + two kernels + headers for the
#                            newer one + dkms + v4l2loopback-dkms + acpi-call-dkms (built by DKMS)
#   builds/KEY/scenarios/NAME/{tree,ref,README}
#                            a copy of the base (usr/ hardlinked, the rest copied) changed by real
#                            operations; what the real tools print inside it; what it is
#   builds/KEY/host.env, timings.txt, build.log   kernels and versions, step times, full output
#   memo/                    cache keys per state of apt's lists (the warm check runs no apt)
# BASE_KEY hashes this script and every pinned package version; KEY hashes BASE_KEY and
# scenarios.sh.  Builds are content-addressed so checkouts with different scripts can share the
# cache; the two most recently used builds (and their bases) are kept, older ones deleted.
#
# The .debs go to the shared cache ../debs/ (debootstrap --cache-dir; hardlinked in and out of the
# tree's apt archive, never bind-mounted).  A cold build needs root (debootstrap, chroot, mount
# /proc); a warm run does not.  Environment: DKMS_EXPORTER_TEST_CACHE, DKMS_EXPORTER_DEBIAN_MIRROR
# and DKMS_EXPORTER_DEBIAN_SECURITY_MIRROR (default: the host's apt sources),
# DKMS_EXPORTER_REALHOST_KERNELS="NEW OLD" (releases, e.g. "6.1.0-56-amd64 6.1.0-55-amd64";
# default: chosen from what apt offers, see pick_kernels).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
umask 022
export LC_ALL=C.UTF-8

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${DKMS_EXPORTER_TEST_CACHE:-$HOME/.cache/dkms-exporter-tests}
DEBS=$CACHE/debs
# The generation: Debian 12 (bookworm: kernel 6.1, dkms 3.0.10) or Debian 13 (trixie: kernel
# 6.12, dkms 3.2).  Each has its own cache root (trixie's is a subdirectory, so bookworm's garbage
# collection, which only looks at bases/ and builds/, never sees it) and its kernel naming:
#   ABI_RE     a kernel ABI in package names: 6.1.0-57 (bookworm), 6.12.118+deb13 (trixie)
#   KPREFIX    what every such ABI starts with, for apt-cache pkgnames
#   kbuild_of  the linux-kbuild package headers of an ABI need (one 6.1 package; one per 6.12 ABI)
# Trixie's apt lists are our own (HOST_APT_OPTS: a sources file, lists and an empty dpkg status
# under $ROOT/apt); the machine's apt sources are never edited.
SUITE=${DKMS_EXPORTER_REALHOST_SUITE:-bookworm}
case $SUITE in
  bookworm) ROOT=$CACHE/realhost KLABEL=6.1 KPREFIX=6.1.0- ABI_RE='6\.1\.0-[0-9]+' ;;
  trixie) ROOT=$CACHE/realhost/trixie KLABEL=6.12 KPREFIX=6.12. ABI_RE='6\.12\.[0-9]+\+deb13(\.[0-9]+)?' ;;
  *) printf '[realhost] ERROR: DKMS_EXPORTER_REALHOST_SUITE=%s: bookworm or trixie\n' "$SUITE" >&2; exit 2 ;;
esac
HOST_APT_OPTS=()
if [[ $SUITE != bookworm ]]; then
  HOST_APT_OPTS=(-o "Dir::Etc=$ROOT/apt/etc" -o Dir::Etc::sourcelist=/dev/null
                 -o "Dir::Etc::sourceparts=$ROOT/apt/etc/sources.list.d" -o "Dir::State::Lists=$ROOT/apt/lists"
                 -o "Dir::Cache=$ROOT/apt/cache" -o "Dir::State::status=$ROOT/apt/status"
                 -o APT::Architecture=amd64 -o APT::Sandbox::User=root)
fi
kbuild_of() { if [[ $SUITE == bookworm ]]; then echo linux-kbuild-6.1; else echo "linux-kbuild-$1"; fi; }
# apt-cache with the generation's lists (options after the command, as apt allows).
apt_cache() { local cmd=$1; shift; apt-cache "$cmd" "${HOST_APT_OPTS[@]}" "$@"; }
# Installed besides the kernels (pinned to the versions apt offers when the key is computed).
# openssl is installed by the initramfs_stale scenario only (DKMS then signs what it builds).
TOOL_PACKAGES=(dkms v4l2loopback-dkms acpi-call-dkms initramfs-tools kmod zstd mokutil openssl)
source "$HERE/scenarios.sh"

START=$(date +%s)
LOG=$ROOT/build.log
KEEP_BUILDS=2
MOUNTED=()

# ---------------------------------------------------------------- output helpers

elapsed() { local s=$(( $(date +%s) - START )); printf '%02d:%02d' $((s / 60)) $((s % 60)); }
step() { printf '[realhost %s] %s\n' "$(elapsed)" "$*"; printf '\n==== [%s] %s\n' "$(elapsed)" "$*" >>"$LOG"; }
die() { printf '[realhost] ERROR: %s\n' "$*" >&2; exit 1; }
# Runs a command with its output in the build log only (progress stays readable).
logged() { "$@" >>"$LOG" 2>&1; }

# ---------------------------------------------------------------- mounts (always undone)

# Lists mount points at or below $1, deepest first (from /proc/self/mountinfo, octal escapes kept).
mounts_under() {
  local dir; dir=$(readlink -f "$1")
  awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r
}

unmount_under() {
  local m
  for m in $(mounts_under "$1"); do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
  [[ -z "$(mounts_under "$1")" ]] || die "could not unmount everything under $1: $(mounts_under "$1" | tr '\n' ' ')"
}

cleanup() {
  local rc=$?
  local m
  for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  MOUNTED=()
  if [[ -d $ROOT ]]; then unmount_under "$ROOT" || true; fi
  if ((rc != 0)) && [[ -f $LOG ]]; then
    printf '[realhost] build failed (exit %s); last lines of %s:\n' "$rc" "$LOG" >&2
    tail -n 40 "$LOG" >&2
  fi
  exit "$rc"
}

# Deletes a directory of ours, refusing when anything is still mounted below it.
remove_tree() {
  [[ -e $1 ]] || return 0
  case $(readlink -f "$1") in "$(readlink -f "$ROOT")"/*) ;; *) die "refusing to delete $1 (outside $ROOT)";; esac
  unmount_under "$1"
  rm -rf --one-file-system "$1"
}

# ---------------------------------------------------------------- chroot sessions

# Prepares a tree for running tools: /proc mounted, services blocked, dpkg fast, .debs seeded.
enter() {
  local t=$1
  mountpoint -q "$t/proc" || { mount -t proc proc "$t/proc"; MOUNTED+=("$t/proc"); }
  [[ -c $t/dev/null ]] || die "$t/dev/null is not a device node (debootstrap could not mknod?)"
  printf '#!/bin/sh\n# build.sh: no services start inside the test tree\nexit 101\n' >"$t/usr/sbin/policy-rc.d"
  chmod 755 "$t/usr/sbin/policy-rc.d"
  echo force-unsafe-io >"$t/etc/dpkg/dpkg.cfg.d/zz-realhost-build"
  # Shared .deb cache: hardlinked in and out (same filesystem), never bind-mounted.
  mkdir -p "$t/var/cache/apt/archives/partial"
  find "$DEBS" -maxdepth 1 -name '*.deb' -exec cp -l -n -t "$t/var/cache/apt/archives/" {} + 2>>"$LOG" || true
}

# Undoes enter: keeps new downloads in the shared cache, leaves no build-only files behind.
leave() {
  local t=$1
  find "$t/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -l -n -t "$DEBS/" {} + 2>>"$LOG" || true
  find "$t/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -delete
  rm -f "$t/usr/sbin/policy-rc.d" "$t/etc/dpkg/dpkg.cfg.d/zz-realhost-build"
  leave_proc "$t"
}

leave_proc() {
  local t=$1 keep=() m
  if mountpoint -q "$t/proc"; then umount "$t/proc"; fi
  for m in "${MOUNTED[@]}"; do [[ $m == "$t/proc" ]] || keep+=("$m"); done
  MOUNTED=("${keep[@]}")
}

# Runs a command inside a tree as root with a clean, non-interactive environment.
in_tree() {
  local t=$1; shift
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true chroot "$t" "$@"
}

apt_in() { local t=$1; shift; in_tree "$t" apt-get -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "$@"; }

# ---------------------------------------------------------------- host side: mirror, versions, key

# Prints the URI of the first apt source (deb822 or one-line format) that serves suite $1.
mirror_for_suite() {
  local suite=$1 f
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      [[ -f $f ]] || continue
      awk -v s="$suite" '
        /^[[:space:]]*$/ { if (uri != "" && hit && deb) print uri; uri=""; hit=0; deb=0; next }
        /^Types:/  { for (i = 2; i <= NF; i++) if ($i == "deb") deb=1 }
        /^URIs:/   { uri=$2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) hit=1 }
        END { if (uri != "" && hit && deb) print uri }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -f $f ]] || continue
      awk -v s="$suite" '$1 == "deb" { u=$2; su=$3; if ($2 ~ /^\[/) { u=$3; su=$4 } if (su == s) print u }' "$f"
    done
  } | awk 'NR == 1'
}

pick_mirrors() {
  # A generation the host does not run is served by the archive the host uses for its own suite.
  local host_suite
  host_suite=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
  MIRROR=${DKMS_EXPORTER_DEBIAN_MIRROR:-$(mirror_for_suite "$SUITE")}
  MIRROR=${MIRROR:-$(mirror_for_suite "$host_suite")}
  SECURITY_MIRROR=${DKMS_EXPORTER_DEBIAN_SECURITY_MIRROR:-$(mirror_for_suite "$SUITE-security")}
  SECURITY_MIRROR=${SECURITY_MIRROR:-$(mirror_for_suite "$host_suite-security")}
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
  SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
}


# Chooses the two kernels, as releases NEW_K (gets headers, so DKMS builds for it) and OLD_K.
#   NEW: the highest 6.1 ABI whose image, headers and headers-common apt offers, with a
#        linux-kbuild-6.1 at least as new as those headers (their dependency);
#   OLD: the next lower ABI with an image and installable headers whose upstream release differs
#        from NEW's (6.1.176 vs 6.1.192).  Two ABIs of one upstream release can export the same
#        CRCs (6.1.0-55 and -56, both 6.1.192, have identical Module.symvers), and then a module
#        built for one loads into the other: the stale_build scenario needs CRCs that differ.  Its
#        headers are installed only by the scenarios that build for it (built_for_both ...).
# The mirror keeps only a few ABIs, and headers for fewer, so this is read from apt (one madison
# call), not fixed here.  When no lower ABI qualifies (apt offers a single ABI, say), the second
# kernel is another flavour of NEW's ABI (their CRCs differ too): OLD the generic 6.1.0-NN-amd64,
# NEW 6.1.0-NN-cloud-amd64 (dpkg orders it higher, so the kernel with headers is still the
# newest).  DKMS_EXPORTER_REALHOST_KERNELS="NEW OLD" overrides.
pick_kernels() {
  NEW_K='' OLD_K=''
  if [[ -n ${DKMS_EXPORTER_REALHOST_KERNELS:-} ]]; then
    read -r NEW_K OLD_K <<<"$DKMS_EXPORTER_REALHOST_KERNELS"
  else
    local abis abi args=() madison
    mapfile -t abis < <(apt_cache pkgnames "linux-image-$KPREFIX" |
      sed -nE "s/^linux-image-($ABI_RE)-amd64\$/\\1/p" | sort -rV)
    for abi in "${abis[@]}"; do
      args+=("linux-image-$abi-amd64" "linux-image-$abi-cloud-amd64"
             "linux-headers-$abi-amd64" "linux-headers-$abi-cloud-amd64"
             "linux-headers-$abi-common" "$(kbuild_of "$abi")")
    done
    madison=$(apt_cache madison "${args[@]}" 2>/dev/null |
      awk -F'|' '{gsub(/ /, "", $1); gsub(/ /, "", $2); print $1, $2}' | sort -u)
    for abi in "${abis[@]}"; do
      offered "linux-image-$abi-amd64" || continue
      if [[ -z $NEW_K ]]; then
        if headers_installable "$abi-amd64" "$abi"; then NEW_K=$abi-amd64; fi
      elif headers_installable "$abi-amd64" "$abi" &&
           [[ $(upstream_of "$abi-amd64") != $(upstream_of "$NEW_K") ]] && layout_differs "$abi-amd64"; then
        OLD_K=$abi-amd64
        break
      fi
    done
    if [[ -n $NEW_K && -z $OLD_K ]]; then
      abi=${NEW_K%-amd64}
      if offered "linux-image-$abi-cloud-amd64" && headers_installable "$abi-cloud-amd64" "$abi"; then
        OLD_K=$NEW_K NEW_K=$abi-cloud-amd64
      fi
    fi
  fi
  if ! { [[ -n $NEW_K && -n $OLD_K ]] && dpkg --compare-versions "$NEW_K" gt "$OLD_K"; }; then
    die "apt offers no two $KLABEL kernels (both with headers, of two upstream releases): got '$NEW_K' '$OLD_K'; run apt-get update, or set DKMS_EXPORTER_REALHOST_KERNELS"
  fi
  NEW_ABI=${NEW_K%-amd64}; NEW_ABI=${NEW_ABI%-cloud}
  OLD_ABI=${OLD_K%-amd64}; OLD_ABI=${OLD_ABI%-cloud}
  NEW_PKG=linux-image-$NEW_K
  OLD_PKG=linux-image-$OLD_K
  HDR_PKG=linux-headers-$NEW_K
  OLD_HDR_PKG=linux-headers-$OLD_K
  HDR_COMMON_PKG=linux-headers-$NEW_ABI-common
}

# Does kernel $1's module_layout CRC differ from NEW's?  Bookworm's ABI numbers change when the
# CRCs do, so a lower ABI of another upstream release always differs there (54 vs 56).  Trixie's
# ABI is the upstream release itself (6.12.118+deb13) and its point releases keep the CRCs that
# matter: 6.12.117's module_layout and every symbol v4l2loopback uses equal 6.12.118's (843 of
# 26,772 exports differ), so a module built for one loads into the other and stale_build proves
# nothing; 6.12.113's module_layout differs.  So on trixie OLD is the next lower release whose
# Module.symvers says so (its headers .deb, ~3 MB, downloaded into the shared cache, which the
# base build uses anyway; memoised with the key).
layout_differs() {
  [[ $SUITE == bookworm ]] && return 0
  local new old
  if ! new=$(module_layout_of "$NEW_K") || ! old=$(module_layout_of "$1"); then
    die "cannot read module_layout from linux-headers-$NEW_K or linux-headers-$1 (apt-get download)"
  fi
  [[ $new != "$old" ]]
}

# module_layout's CRC in linux-headers-$1's Module.symvers (the .deb from apt, not installed).
module_layout_of() {
  local deb
  mkdir -p "$DEBS"
  deb=$(compgen -G "$DEBS/linux-headers-$1_*_amd64.deb" | sort -V | tail -n1) || true
  if [[ -z $deb ]]; then
    (cd "$DEBS" && apt-get "${HOST_APT_OPTS[@]}" download -q "linux-headers-$1" >/dev/null 2>&1) || return 1
    deb=$(compgen -G "$DEBS/linux-headers-$1_*_amd64.deb" | sort -V | tail -n1) || return 1
  fi
  dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards '*/Module.symvers' |
    awk -F'\t' '$2 == "module_layout" {print $1; found=1} END {exit !found}'
}

# The upstream release of kernel $1's headers as apt offers them (6.1.192-2 -> 6.1.192).
upstream_of() {
  awk -v p="linux-headers-$1" '$1 == p {print $2}' <<<"$madison" | sort -V | tail -n1 | sed 's/-[^-]*$//'
}

# Is package $1 offered by apt (in $madison: "name version" lines)?
offered() { grep -q "^$1 " <<<"$madison"; }

# Can linux-headers-$1 be installed: it and headers-common of ABI $2 offered at one version, and a
# linux-kbuild (kbuild_of $2) at least that new (the headers' dependency)?
headers_installable() {
  local hv kbuild
  hv=$(awk -v p="linux-headers-$1" '$1 == p {print $2}' <<<"$madison" | sort -V | tail -n1)
  kbuild=$(awk -v p="$(kbuild_of "$2")" '$1 == p {print $2}' <<<"$madison" | sort -V | tail -n1)
  [[ -n $hv && -n $kbuild ]] && grep -qx "linux-headers-$2-common $hv" <<<"$madison" &&
    dpkg --compare-versions "$kbuild" ge "$hv"
}

# The generation's own apt (trixie on a bookworm host): a sources file naming only its suites,
# lists and an empty dpkg status under $ROOT/apt.  Nothing of the machine's apt changes.
prepare_host_apt() {
  [[ $SUITE != bookworm ]] || return 0
  mkdir -p "$ROOT/apt/etc/sources.list.d" "$ROOT/apt/etc/preferences.d" "$ROOT/apt/etc/apt.conf.d" \
    "$ROOT/apt/lists/partial" "$ROOT/apt/cache/archives/partial"
  [[ -f $ROOT/apt/status ]] || : >"$ROOT/apt/status"
  local want
  want=$(sources_of "$MIRROR" "$SECURITY_MIRROR")
  if [[ ! -f $ROOT/apt/etc/sources.list.d/debian.sources || $(cat "$ROOT/apt/etc/sources.list.d/debian.sources") != "$want" ]]; then
    echo "$want" >"$ROOT/apt/etc/sources.list.d/debian.sources"
  fi
}

# apt-get update of the lists the key is computed from (the host's, or the generation's own).
host_apt_update() { logged apt-get "${HOST_APT_OPTS[@]}" update -q; }

# The deb822 sources of $SUITE: mirror $1, security mirror $2.
sources_of() {
  cat <<EOF
Types: deb
URIs: $1
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $2
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

# The cache keys.  BASE_KEY: this script, the kernels and every pinned package version (one
# apt-cache policy call).  KEY: BASE_KEY and scenarios.sh, so editing a scenario keeps the base.
compute_key() {
  pick_kernels
  local p v policy
  policy=$(apt_cache policy "$NEW_PKG" "$OLD_PKG" "$HDR_PKG" "$OLD_HDR_PKG" "${TOOL_PACKAGES[@]}" 2>/dev/null |
    awk '/^[^ ].*:$/ {p = substr($0, 1, length($0) - 1)} /^  Candidate:/ {print p "=" $2}')
  PINNED=()
  for p in "$NEW_PKG" "$OLD_PKG" "$HDR_PKG" "$OLD_HDR_PKG" "${TOOL_PACKAGES[@]}"; do
    v=$(sed -n "s/^$p=//p" <<<"$policy")
    [[ -n $v && $v != "(none)" ]] || die "apt offers no version of $p (run apt-get update?)"
    PINNED+=("$p=$v")
  done
  # debootstrap runs on the host: its version is the host's, whatever the generation's lists say.
  VERSIONS="${PINNED[*]} debootstrap=$(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || true)"
  BASE_KEY=$( { sha256sum <"$HERE/build.sh"; echo "$SUITE $VERSIONS"; } | sha256sum | cut -c1-16)
  KEY=$( { echo "$BASE_KEY"; sha256sum <"$HERE/scenarios.sh"; } | sha256sum | cut -c1-16)
}

# What the keys are computed from, cheaply: the scripts, apt's lists and sources, the overrides.
key_inputs() {
  {
    sha256sum "$HERE/build.sh" "$HERE/scenarios.sh"
    if [[ $SUITE == bookworm ]]; then
      stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* /etc/apt/sources.list /etc/apt/sources.list.d/* \
        /etc/apt/preferences /etc/apt/preferences.d/* 2>/dev/null || true
    else
      stat -c '%n %s %Y' "$ROOT"/apt/lists/*Packages* "$ROOT"/apt/etc/sources.list.d/* 2>/dev/null || true
    fi
    dpkg-query -W -f='${Version}\n' debootstrap 2>/dev/null || true
    echo "${DKMS_EXPORTER_REALHOST_KERNELS:-} $MIRROR $SECURITY_MIRROR"
  } | sha256sum | cut -c1-16
}

# compute_key, remembered in key.memo until its inputs change (apt-cache takes seconds per call).
compute_key_memo() {
  local inputs memo
  inputs=$(key_inputs)
  memo=$ROOT/memo/$inputs
  mkdir -p "$ROOT/memo" 2>/dev/null || true
  if [[ -f $memo ]] && [[ $(head -n1 "$memo") == "# inputs $inputs" ]]; then
    # shellcheck disable=SC1090  # our own declare -p output
    source "$memo"
    return
  fi
  compute_key
  if { echo "# inputs $inputs"
       declare -p NEW_ABI OLD_ABI NEW_PKG OLD_PKG HDR_PKG OLD_HDR_PKG HDR_COMMON_PKG NEW_K OLD_K PINNED VERSIONS BASE_KEY KEY |
         sed 's/^declare -/declare -g -/'
     } >"$memo.new" 2>/dev/null; then
    mv -f "$memo.new" "$memo"
  fi
  find "$ROOT/memo" -type f -mtime +30 -delete 2>/dev/null || true
}

# Where the current key's trees live (set after every compute_key_memo).
set_dirs() {
  BASE_DIR=$ROOT/bases/$BASE_KEY
  BASE_TREE=$BASE_DIR/tree
  OUT=$ROOT/builds/$KEY
}

stamp_is() { [[ -f $1/stamp && $(cat "$1/stamp") == "$2" ]]; }

warm() {
  stamp_is "$OUT" "$KEY" || return 1
  local s
  for s in "${SCENARIOS[@]}"; do
    [[ -f $OUT/scenarios/$s/ref/scenario.env && -d $OUT/scenarios/$s/tree/var/lib/dpkg ]] || return 1
  done
}

# Deletes all but the KEEP_BUILDS most recently used builds, and the bases no kept build uses.
collect_garbage() {
  local d used keep=() bases=()
  while read -r _ d; do
    if ((${#keep[@]} < KEEP_BUILDS)) || [[ $d == "$OUT" ]]; then keep+=("$d"); else
      step "deleting the old build ${d#"$ROOT"/}"
      remove_tree "$d"
    fi
  done < <(for d in "$ROOT"/builds/*/; do
             d=${d%/}; used=0
             if [[ -f $d/last-used ]]; then used=$(stat -c %Y "$d/last-used"); fi
             echo "$used $d"
           done | sort -rn)
  for d in "${keep[@]}"; do
    if [[ -f $d/base.key ]]; then bases+=("$ROOT/bases/$(cat "$d/base.key")"); fi
  done
  for d in "$ROOT"/bases/*/; do
    d=${d%/}
    [[ -d $d && " ${bases[*]} $BASE_DIR " != *" $d "* ]] || continue
    step "deleting the old base ${d#"$ROOT"/}"
    remove_tree "$d"
  done
}

# ---------------------------------------------------------------- base tree

build_base() {
  local t=$BASE_TREE pkgs
  step "debootstrap --variant=minbase $SUITE from $MIRROR (cached .debs: $DEBS)"
  logged debootstrap --variant=minbase --cache-dir="$DEBS" "$SUITE" "$t" "$MIRROR"

  step "apt sources, no recommends"
  sources_of "$MIRROR" "$SECURITY_MIRROR" >"$t/etc/apt/sources.list.d/debian.sources"
  rm -f "$t/etc/apt/sources.list"
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$t/etc/apt/apt.conf.d/90realhost-no-recommends"
  echo realhost >"$t/etc/hostname"

  enter "$t"
  step "apt-get update inside the tree"
  logged apt_in "$t" update
  step "install $NEW_PKG, $OLD_PKG, $HDR_PKG (+ initramfs-tools, zstd: the kernel hooks make both initramfs images)"
  mapfile -t pkgs < <(pin "$NEW_PKG" "$OLD_PKG" "$HDR_PKG" initramfs-tools kmod zstd)
  logged apt_in "$t" install "${pkgs[@]}"
  step "install dkms, v4l2loopback-dkms, acpi-call-dkms (their postinst has DKMS build them for $NEW_K), mokutil"
  mapfile -t pkgs < <(pin dkms v4l2loopback-dkms acpi-call-dkms mokutil)
  logged apt_in "$t" install "${pkgs[@]}"
  step "apt-mark hold $OLD_PKG"
  logged in_tree "$t" apt-mark hold "$OLD_PKG"
  leave "$t"
  [[ -f $t/boot/initrd.img-$NEW_K && -f $t/boot/initrd.img-$OLD_K ]] || die "update-initramfs made no image for both kernels"
  [[ -d $t/usr/src/linux-headers-$NEW_K && ! -d $t/usr/src/linux-headers-$OLD_K ]] || die "headers are not installed for exactly $NEW_K"
  [[ ! -e $t/var/lib/dkms/mok.key ]] || die "DKMS generated a signing key in the base tree (openssl got installed?)"
  compgen -G "$t/usr/lib/modules/$NEW_K/updates/dkms/v4l2loopback.ko*" >/dev/null || die "DKMS did not install v4l2loopback for $NEW_K"
  compgen -G "$t/usr/lib/modules/$NEW_K/updates/dkms/acpi_call.ko*" >/dev/null || die "DKMS did not install acpi_call for $NEW_K"
}

# Prints the pinned "package=version" of each named package.
pin() {
  local want p
  for want in "$@"; do
    for p in "${PINNED[@]}"; do [[ ${p%%=*} == "$want" ]] && echo "$p"; done
  done
}

# ---------------------------------------------------------------- main

finish_warm() {
  touch "$OUT/last-used" 2>/dev/null || true
  printf '[realhost] warm: reusing %s (kernels %s and %s) in %ss\nREALHOST_DIR=%s\n' \
    "${OUT#"$ROOT"/}" "$NEW_K" "$OLD_K" "$(( $(date +%s) - START ))" "$OUT"
  exit 0
}

main() {
  if [[ ${1:-} == --print ]]; then echo "$ROOT"; exit 0; fi
  mkdir -p "$ROOT" "$DEBS" 2>/dev/null || true
  pick_mirrors
  prepare_host_apt
  if [[ $SUITE != bookworm ]] && ! compgen -G "$ROOT/apt/lists/*Packages*" >/dev/null; then
    step "first run for $SUITE: apt-get update of its own lists ($ROOT/apt)"
    host_apt_update || die "apt-get update of $SUITE's lists failed (see $LOG)"
  fi
  compute_key_memo
  set_dirs
  if warm; then finish_warm; fi
  [[ $(id -u) -eq 0 ]] || die "building the real host needs root (debootstrap, chroot, mount); run: sudo $0"
  local tool
  for tool in debootstrap chroot openssl dpkg-deb flock mountpoint; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install debootstrap openssl; see .ci/apt-packages)"
  done
  exec 9>>"$ROOT/.lock"
  flock 9   # one build at a time; whoever waited may find its build made meanwhile
  if warm; then finish_warm; fi
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  : >"$LOG"
  local times=() t0 s
  if ! stamp_is "$BASE_DIR" "$BASE_KEY"; then
    step "base tree missing or stale; apt-get update on the host, to pin what the mirror serves now (log: $LOG)"
    host_apt_update
    compute_key_memo
    set_dirs
    if warm; then finish_warm; fi
  fi
  if ! stamp_is "$BASE_DIR" "$BASE_KEY"; then
    step "cold build of ${BASE_DIR#"$ROOT"/}: $NEW_PKG (with headers) and $OLD_PKG"
    t0=$(date +%s)
    remove_tree "$BASE_DIR"
    mkdir -p "$BASE_DIR"
    build_base
    echo "$BASE_KEY" >"$BASE_DIR/stamp"
    times+=("base $(( $(date +%s) - t0 ))s")
  else
    step "base tree ${BASE_DIR#"$ROOT"/} is current; building the scenarios into ${OUT#"$ROOT"/} (log: $LOG)"
  fi
  remove_tree "$OUT"
  mkdir -p "$OUT"
  echo "$BASE_KEY" >"$OUT/base.key"
  for s in "${SCENARIOS[@]}"; do
    t0=$(date +%s)
    "scenario_$s"
    times+=("$s $(( $(date +%s) - t0 ))s")
  done
  cat >"$OUT/host.env" <<EOF
NEW_KERNEL=$NEW_K
OLD_KERNEL=$OLD_K
MIRROR=$MIRROR
SECURITY_MIRROR=$SECURITY_MIRROR
VERSIONS="$VERSIONS"
SCENARIOS="${SCENARIOS[*]}"
EOF
  { echo "build: $(( $(date +%s) - START ))s on $(nproc) cores ($(date -u +%FT%TZ))"; printf '%s\n' "${times[@]}"; } >"$OUT/timings.txt"
  echo "$KEY" >"$OUT/stamp"
  touch "$OUT/last-used"
  collect_garbage
  cp "$LOG" "$OUT/build.log"
  step "done: base tree $(du -sh "$BASE_TREE" | cut -f1); step times in $OUT/timings.txt"
  echo "REALHOST_DIR=$OUT"
}

# Sourced (tests of pick_kernels), it only defines functions.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
