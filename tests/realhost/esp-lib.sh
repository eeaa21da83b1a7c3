# shellcheck shell=bash
# What sdboot.sh and ukiboot.sh share: their log lines, the mounts they undo on exit, running a
# command inside a tree, and the cache protocol of build.sh (KEY, locks, stamp, two kept).
# The sourcing script sets SRC (a finished trixie build of build.sh), ROOT (the cache root) and
# TAG (its name: the log prefix and the cache folder), then calls esp_init.
# shellcheck disable=SC2317  # cleanup runs from the trap

step() { printf '[%s] %s\n' "$TAG" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$TAG" "$*" >&2; exit 1; }
cleanup() { local m; for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done; }
in_tree() {
  local t=$1; shift
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 SYSTEMD_RELAX_ESP_CHECKS=1 \
    DEBIAN_FRONTEND=noninteractive chroot "$t" "$@"
}
mount_on() { mount "$@"; MOUNTED+=("${*: -1}"); }
unmount() { umount "$1"; local m kept=(); for m in "${MOUNTED[@]}"; do [[ $m == "$1" ]] || kept+=("$m"); done; MOUNTED=("${kept[@]}"); }

# esp_init SCRIPT: KEY hashes the calling script, this library and the source build's stamp;
# OUT is the cache directory for that key.
esp_init() {
  MOUNTED=()
  trap cleanup EXIT
  KEY=$( { sha256sum <"$1"; sha256sum <"${BASH_SOURCE[0]}"; cat "$SRC/stamp"; } | sha256sum | cut -c1-16)
  OUT=$ROOT/$TAG/$KEY
}

# cached_build MARKER FN: reuses OUT when its stamp is KEY, else runs FN (as root) and stamps it;
# keeps the two most recently used builds.  Prints MARKER=OUT last.
cached_build() {
  local marker=$1 fn=$2 start=$SECONDS old
  [[ -f $SRC/stamp ]] || die "$SRC is not a finished build.sh build"
  mkdir -p "$ROOT/$TAG"
  exec 8>>"$ROOT/.lock"; flock -s 8        # build.sh (exclusive) never deletes the source meanwhile
  exec 9>>"$ROOT/$TAG/.lock"; flock 9
  if [[ -f $OUT/stamp && $(cat "$OUT/stamp") == "$KEY" ]]; then
    touch "$OUT/last-used"; step "warm: reusing $TAG/$KEY"; echo "$marker=$OUT"; return
  fi
  [[ $(id -u) == 0 ]] || die "a cold build needs root (chroot, mount)"
  mkdir -p "$OUT"
  "$fn"
  echo "build: $((SECONDS - start))s" >>"$OUT/timings.txt"
  echo "$KEY" >"$OUT/stamp"; touch "$OUT/last-used"
  find "$ROOT/$TAG" -mindepth 2 -maxdepth 2 -name last-used -printf '%T@ %h\n' | sort -rn | tail -n +3 |
    while read -r _ old; do rm -rf "$old"; done
  step "done in $((SECONDS - start))s"
  echo "$marker=$OUT"
}
