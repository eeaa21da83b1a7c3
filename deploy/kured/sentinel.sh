#!/bin/sh
# kured reboot sentinel: reboot only when a reboot is required AND the kernel this node boots
# next has every out-of-tree module it needs working.
#
#   kured --reboot-sentinel-command="/usr/local/libexec/dkms-exporter/kured-sentinel.sh"
#
# kured runs the command in the host's mount namespace (nsenter -m/proc/1/ns/mnt), so this
# script and dkms-exporter must be installed on the node.  Arguments are passed to
# `dkms-exporter check` (for example --config.file /etc/dkms-exporter/config.yml).
#
# Exit codes, as kured reads them:
#   0  reboot: a reboot is required and `dkms-exporter check` says the next boot is ready
#   1  no reboot required (kured logs nothing)
#   2  a reboot is required but the next boot is NOT READY: held back (kured logs our output)
#   3  a reboot is required but readiness cannot be decided, or check could not run: held back
#
# Environment: DKMS_EXPORTER (the binary), DKMS_EXPORTER_ROOTFS (host root, default /),
# REBOOT_SENTINEL (default /run/reboot-required, read under the root).
set -u

exporter=${DKMS_EXPORTER:-/usr/local/bin/dkms-exporter}
rootfs=${DKMS_EXPORTER_ROOTFS:-/}
sentinel=${REBOOT_SENTINEL:-/run/reboot-required}

if [ ! -e "${rootfs%/}${sentinel}" ]; then
    exit 1
fi

if ! command -v "$exporter" >/dev/null 2>&1; then
    echo "dkms-exporter sentinel: reboot required, but $exporter is not installed: not rebooting" >&2
    exit 3
fi

out=$("$exporter" --path.rootfs "$rootfs" check "$@" 2>&1)
rc=$?
case $rc in
    0)
        echo "dkms-exporter sentinel: reboot required and the next boot is ready"
        exit 0
        ;;
    1)
        printf 'dkms-exporter sentinel: reboot required but the next boot is NOT READY: not rebooting\n%s\n' "$out"
        exit 2
        ;;
    2)
        printf 'dkms-exporter sentinel: reboot required but readiness is unknown: not rebooting\n%s\n' "$out"
        exit 3
        ;;
    *)
        printf 'dkms-exporter sentinel: dkms-exporter check failed (exit %s): not rebooting\n%s\n' "$rc" "$out"
        exit 3
        ;;
esac
