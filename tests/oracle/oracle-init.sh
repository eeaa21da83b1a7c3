#!/oracle/bin/busybox sh
# The oracle's init: the kernel runs it instead of the initramfs' /init (rdinit=/oracle-init).
# It comes in a small cpio appended to kernel K's real initramfs (tests/oracle/harness.py), so the
# root it sees is that initramfs, plus /oracle: busybox, loadmod, the plan, and under
# /oracle/root/lib/modules/K the host tree's module index files and module files.
#
# What it does, and prints as "ORACLE <what> ..." lines on the console (ttyS0):
#   1. what initramfs-tools' init does with modules (scripts/functions load_modules): modprobe
#      every line of /conf/modules with the initramfs' own modprobe;
#   2. for each module of the plan: can the initramfs' modprobe find it (and the sha256 of the file
#      it would load), is it loaded already;
#   3. for each module of the plan: resolve it in the host tree's modules.dep (modprobe -d), the
#      sha256 of its file, and load the files in order with finit_module (loadmod prints the errno);
#   4. the kernel's view of trust (sig_enforce, lockdown, Secure Boot, the system keyrings' sizes,
#      what it decompresses itself) and, with CAPTURE=1, the
#      EFI variables, mokvar table, /proc/keys... base64-encoded;
#   5. the kernel's log (dmesg), then power off.
# Nothing here may stop the script early: a failed step is a result, printed and judged on the host.
B=/oracle/bin/busybox
$B mkdir -p /oracle/sbin /proc /sys /dev /tmp
$B --install -s /oracle/sbin
export PATH=/oracle/sbin:/oracle/bin
say() { echo "ORACLE $*"; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null

EXTRA=
# shellcheck source=/dev/null
. /oracle/plan   # RELEASE, MODULES (space-separated names), CAPTURE (0/1), EXTRA (file paths)
K=$(uname -r)
say begin "release=$K" "uptime=$(cut -d' ' -f1 /proc/uptime)"
say fact "plan_release=$RELEASE"

# The initramfs' own modprobe (kmod), as initramfs-tools' init runs it.
MODPROBE=
for m in /sbin/modprobe /usr/sbin/modprobe; do [ -x "$m" ] && { MODPROBE=$m; break; }; done
say fact "initramfs_modprobe=${MODPROBE:-none}"
if [ -e /init ]; then say fact initramfs_init=present; else say fact initramfs_init=absent; fi

loaded() { [ "$(cat "/sys/module/$1/initstate" 2>/dev/null)" = live ]; }
# The module's own file in `modprobe --show-depends` output ($1): its last insmod line.
own_file() { sed -n 's/^insmod \([^ ]*\).*/\1/p' "$1" | tail -n 1; }
digest() { if [ -f "$1" ]; then sha256sum "$1" | cut -d' ' -f1; else echo none; fi; }

# 1. /conf/modules, exactly as load_modules does (comments and empty lines skipped).
if [ -e /conf/modules ] && [ -n "$MODPROBE" ]; then
    while read -r m; do
        [ -z "$m" ] && continue
        [ "$(printf '%.1s' "$m")" = "#" ] && continue
        # shellcheck disable=SC2086
        $MODPROBE $m >/tmp/err 2>&1
        say conf_modules "rc=$?" "$m"
        sed 's/^/ORACLE conf_modules_out /' /tmp/err
    done </conf/modules
fi

# 2. The initramfs' view of each module of the plan (MODULES is split on purpose).
# shellcheck disable=SC2086
for n in $MODULES; do
    if [ -n "$MODPROBE" ] && $MODPROBE --show-depends "$n" >/tmp/ideps 2>&1; then
        say initramfs "$n" found
        say initramfs_file "$n" "$(digest "$(own_file /tmp/ideps)")"
    else
        say initramfs "$n" notfound
    fi
    if loaded "$n"; then say early "$n" loaded; else say early "$n" notloaded; fi
done

# 3. The host tree's view: modprobe -d resolves, loadmod loads and prints the kernel's errno.
# shellcheck disable=SC2086
for n in $MODULES; do
    if [ -z "$MODPROBE" ]; then say resolve "$n" nomodprobe; continue; fi
    if ! $MODPROBE -d /oracle/root --show-depends "$n" >/tmp/deps 2>/tmp/err; then
        say resolve "$n" notfound
        sed 's/^/ORACLE resolve_out /' /tmp/err
        continue
    fi
    say resolve "$n" found
    say tree_file "$n" "$(digest "$(own_file /tmp/deps)")"
    while read -r verb path rest; do
        case $verb in
            insmod) say dep "$n" "$path"; loadmod "$path" ;;
            builtin) say builtin "$n" "$path" ;;
            *) say resolve_out "$verb" "$path" "$rest" ;;
        esac
    done </tmp/deps
    if loaded "$n"; then say state "$n" loaded; else say state "$n" notloaded; fi
done

# 3b. Module files loaded as they are (EXTRA): another kernel's kmod, to ask this kernel whether its
# symbol versions fit (what weak-modules decides before it links one into weak-updates/).
# shellcheck disable=SC2086
for f in $EXTRA; do
    loadmod "$f"
done

# 4. The kernel's trust facts.
say fact "sig_enforce=$(cat /sys/module/module/parameters/sig_enforce 2>/dev/null || echo absent)"
say fact "lockdown=$(sed 's/ /,/g' /sys/kernel/security/lockdown 2>/dev/null || echo absent)"
if [ -d /sys/firmware/efi ]; then say fact efi=yes; else say fact efi=no; fi
# What the kernel decompresses itself (CONFIG_MODULE_DECOMPRESS: Debian 13's xz, for .ko.xz).
say fact "module_compression=$(cat /sys/module/compression 2>/dev/null || echo absent)"
# The system keyrings and how many keys each holds ("keyring .machine: 1" or ": empty"): where
# the MOKs went (.machine on 6.12 when shim sets MokListTrustedRT, else .platform).
sed -n 's/.* keyring *\(\.[a-z_]*\): *\(.*\)$/ORACLE keyring \1 \2/p' /proc/keys 2>/dev/null
say fact "tainted=$(cat /proc/sys/kernel/tainted)"
capture() { [ -f "$1" ] && say file "$1" "$(base64 -w 0 <"$1")"; }
if [ "$CAPTURE" = 1 ]; then
    # efivarfs is a module on Debian (CONFIG_EFIVAR_FS=m), not in the initramfs: from the tree.
    [ -n "$MODPROBE" ] && $MODPROBE -d /oracle/root efivarfs 2>&1 | sed 's/^/ORACLE efivarfs_out /'
    mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>&1 | sed 's/^/ORACLE efivarfs_out /'
    for f in /sys/firmware/efi/efivars/*; do
        case $f in
        */SecureBoot-* | */SetupMode-* | */AuditMode-* | */DeployedMode-* | */PK-* | */KEK-* | \
        */db-* | */dbx-* | */Mok*-605dab50-e046-4300-abb6-3dd810dd8b23 | \
        */SbatLevelRT-605dab50-e046-4300-abb6-3dd810dd8b23) capture "$f" ;;
        esac
    done
    for f in /sys/firmware/efi/mok-variables/*; do capture "$f"; done
    capture /proc/keys
    capture /sys/kernel/security/lockdown
    capture /sys/module/module/parameters/sig_enforce
    capture /sys/kernel/boot_params/data
fi

# 5. The kernel's own words.
dmesg | sed 's/^/ORACLE dmesg /'
say end "uptime=$(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
