"""dkms.conf evaluation agrees with bash (what dkms really runs) for every plain assignment."""

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import modbuild
from testkit import require_tool
from exporter.formats.dkmsconf import _arith_value, conf_refusal, parse_dkms_conf

VARS = ("PACKAGE_NAME", "PACKAGE_VERSION", "BUILT_MODULE_NAME", "BUILT_MODULE_LOCATION", "DEST_MODULE_NAME",
        "DEST_MODULE_LOCATION", "AUTOINSTALL", "MAKE", "CLEAN", "BUILD_EXCLUSIVE_KERNEL", "BUILD_EXCLUSIVE_ARCH",
        "BUILD_EXCLUSIVE_CONFIG", "STRIP", "REMAKE_INITRD")
ENV = {"kernelver": "6.1.0-28-amd64", "arch": "x86_64", "dkms_tree": "/var/lib/dkms",
       "kernel_source_dir": "/nonexistent/build", "module": "m", "module_version": "1"}

CORPUS = {
    "arrays and defaults": '''PACKAGE_NAME="nvidia"
PACKAGE_VERSION=535.183.01
BUILT_MODULE_NAME[0]="nvidia"; DEST_MODULE_LOCATION[0]="/kernel/drivers/video"
BUILT_MODULE_NAME[1]="nvidia-modeset"
DEST_MODULE_LOCATION[1]="/kernel/drivers/video"
MAKE[0]="'make' -j$(nproc) NV_EXCLUDE_BUILD_MODULES='' KERNEL_UNAME=${kernelver} modules"
AUTOINSTALL="yes"   # rebuild on kernel updates
STRIP=(no no)
''',
    "continuations and multi-line": '''PACKAGE_NAME=zfs
PACKAGE_VERSION="2.1.11"
BUILT_MODULE_NAME=(zfs spl)
DEST_MODULE_LOCATION=(/extra /extra)
MAKE[0]="make -C ${kernel_source_dir} \\
  M=${dkms_tree}/${PACKAGE_NAME}/${PACKAGE_VERSION}/build"
BUILD_EXCLUSIVE_CONFIG="CONFIG_ZLIB_DEFLATE !CONFIG_PREEMPT_RT"
BUILD_EXCLUSIVE_KERNEL="^(5|6)\\.[0-9]+\\."
CLEAN='make clean; rm -f *.o'
''',
    "expansions": '''PACKAGE_NAME='r8168'
PACKAGE_VERSION="8.052.01"
BUILT_MODULE_NAME[0]=$PACKAGE_NAME
DEST_MODULE_NAME[0]="${PACKAGE_NAME}-dkms"
DEST_MODULE_LOCATION[0]="/updates/dkms"
BUILD_EXCLUSIVE_ARCH="${ARCH_RE:-x86_64|aarch64}"
AUTOINSTALL=yes
''',
}


def bash_eval(text: str, env: dict[str, str]) -> dict[str, dict[int, str]]:
    # the conf's own output (ipt-netflow's pushd prints the stack) goes to stderr, not into the records
    script = "".join(f"{k}={v!r}\n" for k, v in env.items()) + "source /dev/stdin >&2 <<'__CONF__'\n" + text + \
        "\n__CONF__\n" + "".join(
            f'for i in "${{!{v}[@]}}"; do printf "%s\\t%s\\t%s\\0" {v} "$i" "${{{v}[$i]}}"; done\n' for v in VARS)
    out = subprocess.run([require_tool("bash"), "--norc", "-c", script], capture_output=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    values: dict[str, dict[int, str]] = {}
    for record in out.stdout.decode().split("\0"):
        if record:
            name, index, value = record.split("\t", 2)
            values.setdefault(name, {})[int(index)] = value
    return values


def ours(text: str, env: dict[str, str]) -> dict[str, dict[int, str]]:
    conf = parse_dkms_conf(text, env)
    return {k: v for k, v in conf.values.items() if k in VARS and k not in conf.dynamic}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_plain_assignments_equal_bash(name):
    text = CORPUS[name]
    theirs, mine = bash_eval(text, ENV), ours(text, ENV)
    assert mine == {k: v for k, v in theirs.items() if k in mine}
    # what we do not claim is exactly what needs a shell to know ($(nproc) in MAKE)
    assert set(theirs) - set(mine) == parse_dkms_conf(text, ENV).dynamic & set(theirs)


# every DKMS package of Debian 12's main (apt-cache search --names-only -- '-dkms$', less dh-dkms)
DEBIAN_DKMS_PACKAGES = (
    "acpi-call-dkms", "adv-17v35x-dkms", "apfs-dkms", "bbswitch-dkms", "dahdi-dkms", "ddcci-dkms",
    "digimend-dkms", "dm-writeboost-dkms", "dpdk-kmods-dkms", "evdi-dkms", "falcosecurity-scap-dkms",
    "gost-crypto-dkms", "iptables-netflow-dkms", "jool-dkms", "langford-dkms", "librem-ec-acpi-dkms",
    "lime-forensics-dkms", "lttng-modules-dkms", "nat-rtsp-dkms", "openafs-modules-dkms",
    "openrazer-driver-dkms", "openvpn-dco-dkms", "rapiddisk-dkms", "rtpengine-kernel-dkms",
    "tp-smapi-dkms", "v4l2loopback-dkms", "vpoll-dkms", "west-chamber-dkms", "xtables-addons-dkms",
    "xtrx-dkms",
)


@pytest.mark.slow
@pytest.mark.parametrize("package", DEBIAN_DKMS_PACKAGES)
def test_real_debian_dkms_conf(package, tmp_path):
    """The dkms.conf files Debian ships, evaluated by bash with a kernel config that has the option;
    none is one dkms would refuse (conf_refusal: the damage check must not flag a real conf)."""
    deb = modbuild.apt_download(package)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path / "x")], check=True)
    (conf,) = (tmp_path / "x/usr/src").glob("*/dkms.conf")
    (tmp_path / "build").mkdir()
    (tmp_path / "build/.config").write_text("CONFIG_VIDEO_DEV=m\nCONFIG_VIDEO_V4L2=m\nCONFIG_ACPI=y\n")
    env = dict(ENV, kernel_source_dir=str(tmp_path / "build"))
    text = conf.read_text()
    theirs, mine = bash_eval(text, env), ours(text, env)
    assert mine == {k: v for k, v in theirs.items() if k in mine}
    assert mine["PACKAGE_NAME"] and mine["PACKAGE_VERSION"]
    assert conf_refusal(text) is None
    conf_obj = parse_dkms_conf(text, env)
    # whatever bash leaves out (v4l2loopback's conditional BUILD_EXCLUSIVE_KERNEL), we flag as dynamic
    assert (set(conf_obj.values) & set(VARS)) - set(theirs) <= conf_obj.dynamic
    # every module name bash sets is one we name (lttng's 54, indexed by i=$((i+1)))
    bash_names = set(theirs.get("BUILT_MODULE_NAME", {}).values()) | set(theirs.get("DEST_MODULE_NAME", {}).values())
    assert bash_names <= set(conf_obj.dest_module_names()) | set(conf_obj.array("BUILT_MODULE_NAME"))


ARITH_SCOPE = {"i": "3", "n": "-7", "big": "4611686018427387904"}

_arith_expr = st.recursive(
    st.one_of(st.integers(-1000, 1000).map(lambda n: f"({n})" if n < 0 else str(n)),
              st.sampled_from(["i", "n", "big", "unset"])),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "%"]), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        inner.map(lambda e: f"({e})"), inner.map(lambda e: f"-{e}")),
    max_leaves=6)


@settings(max_examples=6, deadline=None)
@given(st.lists(_arith_expr, min_size=40, max_size=40))
def test_integer_arithmetic_equals_bash(exprs):
    """$(( expr )) as bash computes it, for what the evaluator claims to know (+ - * / %, unary
    minus, parentheses, set and unset variables), 40 expressions to a bash run; division by zero,
    64-bit overflow and ++/-- it leaves to bash (None), and those are not compared."""
    known = [(e, v) for e in exprs if (v := _arith_value(e, ARITH_SCOPE)) is not None]
    assert len(known) >= 10, exprs   # most are ones it claims to know
    script = "".join(f"{k}={v}\n" for k, v in ARITH_SCOPE.items()) + "".join(f"echo $(( {e} ))\n" for e, _ in known)
    out = subprocess.run([require_tool("bash"), "--norc", "-c", script], capture_output=True, text=True,
                         timeout=10, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert [int(line) for line in out.stdout.split()] == [v for _, v in known], known
