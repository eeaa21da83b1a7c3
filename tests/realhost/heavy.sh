#!/usr/bin/env bash
# The heavy-weights of the real Debian 12 host: bookworm's `healthy` tree (build.sh) with Debian's
# contrib and non-free DKMS packages installed by apt inside it, for the newest kernel (the only
# one with headers, so the only one DKMS builds for):
#   zfs     + zfs-dkms, zfs-initramfs (contrib): nine .ko from one DKMS package (spl first,
#             zfs last), put into the newest kernel's initramfs by zfs-initramfs' hook
#   nvidia  zfs + nvidia-kernel-dkms (non-free; firmware-nvidia-gsp from non-free-firmware): five
#             .ko, nvidia-current.ko tens of MiB
# and the real tools' outputs inside each (scenarios.sh collect_reference, with the module names
# of these packages).  tests/realhost/test_heavy.py judges the exporter against them.
#
#   tests/realhost/heavy.sh REALHOST_DIR   build, or reuse the cached build; REALHOST_DIR is a
#                                          bookworm build of build.sh (its last output line)
# Layout: <REALHOST_DIR>/../../heavy/  (realhost/heavy: build.sh's garbage collection only looks at
# realhost/bases and realhost/builds)
#   apt/                   our own apt lists of main contrib non-free non-free-firmware (the
#                          machine's apt sources are never edited), for the cache key
#   builds/KEY/scenarios/{zfs,nvidia}/{tree,ref,README}, host.env, timings.txt, build.log, stamp
# KEY hashes this script, the real-host build's stamp and the candidate versions of the three
# packages in our lists; the two most recently used builds are kept.  The sources list inside the
# trees is its own file, /etc/apt/sources.list.d/heavy-nonfree.sources.  Everything runs under
# nice.  Cold: see docs/testing.md ("Heavy-weights"); warm: well under a second.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
umask 022
export LC_ALL=C.UTF-8

HEAVY_SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
SRC=$(cd "${1:?usage: heavy.sh REALHOST_DIR}" && pwd)
# build.sh, sourced, only defines functions (and sources scenarios.sh): enter, leave, in_tree,
# apt_in, copy_tree, usr_manifest, collect_reference, remove_tree ...
# shellcheck source=build.sh
source "$(dirname "$HEAVY_SCRIPT")/build.sh"
[[ $SUITE == bookworm ]] || die "heavy.sh builds on the bookworm generation only"
REALHOST_ROOT=$(cd "$SRC/../.." && pwd)
ROOT=$REALHOST_ROOT/heavy
LOG=$ROOT/build.log
HEAVY_SCENARIOS=(zfs nvidia)
HEAVY_PACKAGES=(zfs-dkms zfs-initramfs nvidia-kernel-dkms)
KEEP_BUILDS=2
HEAVY_SOURCES=/etc/apt/sources.list.d/heavy-nonfree.sources
HEAVY_APT=$ROOT/apt
HEAVY_APT_OPTS=(-o "Dir::Etc=$HEAVY_APT/etc" -o Dir::Etc::sourcelist=/dev/null
                -o "Dir::Etc::sourceparts=$HEAVY_APT/etc/sources.list.d" -o "Dir::State::Lists=$HEAVY_APT/lists"
                -o "Dir::Cache=$HEAVY_APT/cache" -o "Dir::State::status=$HEAVY_APT/status"
                -o APT::Architecture=amd64 -o APT::Sandbox::User=root)
step() { printf '[heavy %s] %s\n' "$(elapsed)" "$*"; printf '\n==== [%s] %s\n' "$(elapsed)" "$*" >>"$LOG"; }

# The deb822 sources of the heavy trees: the same mirrors as the base, the other components.
heavy_sources() {
  cat <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: contrib non-free non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: bookworm-security
Components: contrib non-free non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

# Our own apt lists on the host (main too: the packages' dependencies are resolved against it).
prepare_heavy_apt() {
  mkdir -p "$HEAVY_APT/etc/sources.list.d" "$HEAVY_APT/etc/preferences.d" "$HEAVY_APT/etc/apt.conf.d" \
    "$HEAVY_APT/lists/partial" "$HEAVY_APT/cache/archives/partial"
  [[ -f $HEAVY_APT/status ]] || : >"$HEAVY_APT/status"
  local want
  want="$(sources_of "$MIRROR" "$SECURITY_MIRROR")

$(heavy_sources)"
  if [[ ! -f $HEAVY_APT/etc/sources.list.d/heavy.sources || $(cat "$HEAVY_APT/etc/sources.list.d/heavy.sources") != "$want" ]]; then
    echo "$want" >"$HEAVY_APT/etc/sources.list.d/heavy.sources"
  fi
}

heavy_apt_update() { apt-get "${HEAVY_APT_OPTS[@]}" update -q >>"$LOG" 2>&1; }

# KEY: this script, the source build's stamp (its KEY) and the three packages' candidates.
compute_heavy_key() {
  local policy p v
  policy=$(apt-cache policy "${HEAVY_APT_OPTS[@]}" "${HEAVY_PACKAGES[@]}" 2>/dev/null |
    awk '/^[^ ].*:$/ {p = substr($0, 1, length($0) - 1)} /^  Candidate:/ {print p "=" $2}')
  HEAVY_PINNED=()
  for p in "${HEAVY_PACKAGES[@]}"; do
    v=$(sed -n "s/^$p=//p" <<<"$policy")
    [[ -n $v && $v != "(none)" ]] || die "apt offers no version of $p in contrib/non-free (apt lists: $HEAVY_APT)"
    HEAVY_PINNED+=("$p=$v")
  done
  HEAVY_KEY=$( { sha256sum <"$HEAVY_SCRIPT"; cat "$SRC/stamp"; echo "${HEAVY_PINNED[*]}"; } | sha256sum | cut -c1-16)
  OUT=$ROOT/builds/$HEAVY_KEY
}

heavy_pin() {
  local want p
  for want in "$@"; do
    for p in "${HEAVY_PINNED[@]}"; do [[ ${p%%=*} == "$want" ]] && echo "$p"; done
  done
}

heavy_warm() {
  stamp_is "$OUT" "$HEAVY_KEY" || return 1
  local s
  for s in "${HEAVY_SCENARIOS[@]}"; do
    [[ -f $OUT/scenarios/$s/ref/scenario.env && -d $OUT/scenarios/$s/tree/var/lib/dpkg ]] || return 1
  done
}

heavy_finish_warm() {
  touch "$OUT/last-used" 2>/dev/null || true
  printf '[heavy] warm: reusing %s in %ss\nHEAVY_DIR=%s\n' "${OUT#"$ROOT"/}" "$(( $(date +%s) - START ))" "$OUT"
  exit 0
}

# Only our own mounts are undone (build.sh's cleanup would unmount everything under realhost/,
# a concurrent trixie build's /proc included).
heavy_cleanup() {
  local rc=$? m
  for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  MOUNTED=()
  if [[ -d $ROOT/builds ]]; then unmount_under "$ROOT/builds" || true; fi
  if ((rc != 0)) && [[ -f $LOG ]]; then
    printf '[heavy] build failed (exit %s); last lines of %s:\n' "$rc" "$LOG" >&2
    tail -n 40 "$LOG" >&2
  fi
  exit "$rc"
}

# The DKMS module names under updates/dkms of every kernel in tree $1 (REF_MODULES for modprobe).
dkms_module_names() {
  (cd "$1" && find usr/lib/modules/*/updates/dkms -type f -name '*.ko*' 2>/dev/null) |
    sed -E 's|.*/||; s/\.ko(\..*)?$//; s/-/_/g' | LC_ALL=C sort -u
}

heavy_collect() {
  local name=$1 t=$OUT/scenarios/$1/tree
  mapfile -t REF_MODULES < <(dkms_module_names "$t")
  finish_scenario "$name" "$2"
}

# ---------------------------------------------------------------- the two trees

scenario_zfs() {
  local t=$OUT/scenarios/zfs/tree pkgs
  mapfile -t pkgs < <(heavy_pin zfs-dkms zfs-initramfs)
  if ! resume zfs "$SRC/scenarios/healthy/tree"; then
    new_scenario zfs "$SRC/scenarios/healthy/tree"
    heavy_sources >"$t$HEAVY_SOURCES"
    enter "$t"
    step "  apt-get update (main + contrib/non-free: $HEAVY_SOURCES)"
    logged apt_in "$t" update
    # initramfs-tools' trigger runs update-initramfs -u (the newest kernel, NEW) after
    # zfs-initramfs is configured: its hook copies the ZFS modules in; no second run needed.
    step "  apt-get install ${pkgs[*]} (zfs-dkms' postinst: DKMS builds spl, zfs ... for $NEW_K; the initramfs trigger puts them into $NEW_K's image)"
    logged apt_in "$t" install "${pkgs[@]}"
    leave "$t"
    compgen -G "$t/usr/lib/modules/$NEW_K/updates/dkms/zfs.ko*" >/dev/null || die "DKMS did not install zfs for $NEW_K"
    compgen -G "$t/usr/lib/modules/$NEW_K/updates/dkms/spl.ko*" >/dev/null || die "DKMS did not install spl for $NEW_K"
    # grep without -q reads the whole listing: -q exits at the first match, lsinitramfs then dies
    # of SIGPIPE (141) and pipefail fails the check on the very image that passes it
    in_tree "$t" lsinitramfs "/boot/initrd.img-$NEW_K" | grep '/updates/dkms/zfs\.ko' >/dev/null ||
      die "the initramfs of $NEW_K lacks zfs.ko after zfs-initramfs was installed"
    built zfs
  fi
  heavy_collect zfs "The healthy tree with contrib/non-free sources ($HEAVY_SOURCES): ${pkgs[*]} installed by apt; DKMS built ZFS's modules for $NEW_K (no headers for $OLD_K: none there); initramfs-tools' trigger (update-initramfs -u) ran zfs-initramfs' hook, which put them into $NEW_K's initramfs (the running kernel's: needed in early boot)."
}

scenario_nvidia() {
  local t=$OUT/scenarios/nvidia/tree pkgs
  mapfile -t pkgs < <(heavy_pin nvidia-kernel-dkms)
  if ! resume nvidia "$OUT/scenarios/zfs/tree"; then
    new_scenario nvidia "$OUT/scenarios/zfs/tree"
    enter "$t"
    step "  apt-get install ${pkgs[*]} (its postinst: DKMS builds nvidia-current* for $NEW_K)"
    logged apt_in "$t" install "${pkgs[@]}"
    leave "$t"
    compgen -G "$t/usr/lib/modules/$NEW_K/updates/dkms/nvidia-current.ko*" >/dev/null || die "DKMS did not install nvidia-current for $NEW_K"
    built nvidia
  fi
  heavy_collect nvidia "From zfs: ${pkgs[*]} installed by apt (with what it depends on, no recommends); DKMS built its five modules for $NEW_K."
}

# A scenario's tree is finished (before its reference): a build that fails later (the reference,
# the next scenario) resumes from it instead of compiling ZFS or NVIDIA again.
built() { echo "$HEAVY_KEY" >"$OUT/scenarios/$1/built"; }

# Reuses scenario $1's finished tree from an interrupted build of this key (made from tree $2).
resume() {
  [[ -f $OUT/scenarios/$1/built && $(cat "$OUT/scenarios/$1/built") == "$HEAVY_KEY" ]] || return 1
  step "scenario $1: its tree was finished by an interrupted build of this key; the reference only"
  SRC_TREE=$2
  SRC_MANIFEST=$(usr_manifest "$2")
}

# Deletes all but the KEEP_BUILDS most recently used heavy builds.
heavy_garbage() {
  local d n=0
  while read -r _ d; do
    n=$((n + 1))
    if ((n > KEEP_BUILDS)) && [[ $d != "$OUT" ]]; then step "deleting the old build ${d#"$ROOT"/}"; remove_tree "$d"; fi
  done < <(for d in "$ROOT"/builds/*/; do
             d=${d%/}
             [[ -d $d ]] || continue
             echo "$(stat -c %Y "$d/last-used" 2>/dev/null || echo 0) $d"
           done | sort -rn)
}

heavy_main() {
  [[ -f $SRC/stamp && -f $SRC/host.env && -d $SRC/scenarios/healthy/tree ]] || die "$SRC is not a finished build of build.sh"
  # shellcheck disable=SC1091  # written by build.sh
  source "$SRC/host.env"
  NEW_K=$NEW_KERNEL OLD_K=$OLD_KERNEL
  # what collect_reference writes into scenario.env (build.sh's names of the kernel packages)
  NEW_PKG=linux-image-$NEW_K OLD_PKG=linux-image-$OLD_K HDR_PKG=linux-headers-$NEW_K OLD_HDR_PKG=linux-headers-$OLD_K
  mkdir -p "$ROOT" 2>/dev/null || true
  pick_mirrors
  prepare_heavy_apt
  if ! compgen -G "$HEAVY_APT/lists/*Packages*" >/dev/null; then
    step "first run: apt-get update of our own lists ($HEAVY_APT)"
    heavy_apt_update || die "apt-get update of the contrib/non-free lists failed (see $LOG)"
  fi
  compute_heavy_key
  if heavy_warm; then heavy_finish_warm; fi
  [[ $(id -u) -eq 0 ]] || die "building the heavy trees needs root (chroot, mount); run: sudo $0 $SRC"
  renice -n 10 -p $$ >/dev/null   # DKMS compiles ZFS and NVIDIA here: yield to everything else
  exec 8>>"$ROOT/.lock"
  flock 8
  if heavy_warm; then heavy_finish_warm; fi
  trap heavy_cleanup EXIT
  trap 'exit 130' INT TERM
  : >"$LOG"
  step "cold build: apt-get update of our lists, to pin what the mirror serves now (log: $LOG)"
  heavy_apt_update
  compute_heavy_key
  if heavy_warm; then heavy_finish_warm; fi
  # Held shared while the source tree is copied: a build.sh rebuild may delete old builds.
  exec 7<"$REALHOST_ROOT/.lock"
  flock -s 7
  [[ -f $SRC/stamp ]] || die "$SRC was deleted before it could be copied (a concurrent rebuild?)"
  rm -f "$OUT/stamp"   # scenarios/*/built: trees an interrupted build of this key finished
  mkdir -p "$OUT"
  local times=() t0 s
  for s in "${HEAVY_SCENARIOS[@]}"; do
    t0=$(date +%s)
    "scenario_$s"
    times+=("$s $(( $(date +%s) - t0 ))s")
    flock -u 7
  done
  cat >"$OUT/host.env" <<EOF
NEW_KERNEL=$NEW_K
OLD_KERNEL=$OLD_K
SOURCE_BUILD=$SRC
VERSIONS="${HEAVY_PINNED[*]}"
SCENARIOS="${HEAVY_SCENARIOS[*]}"
EOF
  { echo "build: $(( $(date +%s) - START ))s on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at the end ($(date -u +%FT%TZ))"
    printf '%s\n' "${times[@]}"; } >"$OUT/timings.txt"
  echo "$HEAVY_KEY" >"$OUT/stamp"
  touch "$OUT/last-used"
  heavy_garbage
  cp "$LOG" "$OUT/build.log"
  step "done: $(du -sh "$OUT" | cut -f1); step times in $OUT/timings.txt"
  echo "HEAVY_DIR=$OUT"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then heavy_main "$@"; fi
