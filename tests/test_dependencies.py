"""A needed module's own dependencies for the target kernel (dependency_missing), and modules
loaded now that the target kernel lacks (loaded_module_missing).

Quick tier: host trees whose modules.dep and Module.symvers are written in depmod's and
modpost's formats.  What kmod's modprobe and depmod make of the same situation on a real Debian
kernel tree is tests/realhost/test_dependencies.py.
"""

from __future__ import annotations

from hostbuilder import SYMBOLS, kernel_crc, module_elf
from testkit import K1, K2, scrape

from exporter.config import Config
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper
from exporter.formats.depmod import Need, module_needs, parse_modules_builtin, parse_modules_dep
from exporter.formats.symvers import parse_module_symvers

VIDEODEV = "kernel/drivers/media/v4l2-core/videodev.ko"
MC = "kernel/drivers/media/mc/mc.ko"


def _host(host, *, videodev: bool = True, symbol_owner: str = "vmlinux", dep_line: bool = True,
          builtin: tuple[str, ...] = (), loaded=(), packages: tuple[str, ...] = ()):
    """acpi_call installed by DKMS for both kernels; for K2 its modules.dep line names videodev
    and mc (as depmod writes a module that imports a videodev symbol), and K2's Module.symvers
    says ``symbol_owner`` exports pci_register_driver."""
    host.kernel(K1, running=True)
    host.kernel(K2)
    host.dkms("acpi-call", "1.2.2", dest=["acpi_call"])
    for k in (K1, K2):
        host.dkms_build("acpi-call", "1.2.2", k, dest=["acpi_call"])
    for rel in (VIDEODEV, MC) if videodev else (MC,):
        host.write(f"usr/lib/modules/{K2}/{rel}", module_elf(rel.rsplit("/", 1)[1][:-3], K2, intree=True,
                                                             key="kernel-build"))
    for name in packages:
        host.package(name, "6.1.0-1")
    if loaded:
        host.loaded(*loaded)
    host.grub()
    host.finish()
    lines = ["kernel/drivers/misc/e1000e.ko:", f"{MC}:"]
    lines += [f"{VIDEODEV}: {MC}"] if videodev or dep_line else []     # depmod rerun: it forgets the gone file
    lines += [f"updates/dkms/acpi_call.ko: {VIDEODEV} {MC}" if dep_line else "updates/dkms/acpi_call.ko:"]
    host.write(f"usr/lib/modules/{K2}/modules.dep", "\n".join(lines) + "\n")
    host.write(f"usr/lib/modules/{K2}/modules.builtin", "".join(f"kernel/{b}.ko\n" for b in builtin))
    host.write(f"usr/src/linux-headers-{K2}/Module.symvers", "".join(
        f"0x{kernel_crc(K2, s):08x}\t{s}\t{symbol_owner if s == 'pci_register_driver' else 'vmlinux'}"
        f"\tEXPORT_SYMBOL\t\n" for s in SYMBOLS))
    return scrape(host.root)


def problems(s, kernel=K2):
    return [p for m in s.readiness.kernel(kernel).modules for p in m.problems]


def test_dependencies_present_is_ready(host):
    s = _host(host)
    assert problems(s) == [] and s.readiness.verdict == "ready"


def test_dependency_file_deleted_after_depmod(host):
    """modules.dep still names videodev.ko, the file is gone: modprobe fails to insert it."""
    s = _host(host, videodev=False)
    (p,) = problems(s)
    assert p.reason == "dependency_missing" and p.severity == "error"
    assert p.detail == (f"acpi_call needs videodev (modules.dep): modules.dep lists {VIDEODEV} but the file is gone")
    assert p.fix == f"apt-get install --reinstall linux-image-{K2}"
    assert s.readiness.verdict == "not_ready"


def test_symbol_exporter_absent_on_ubuntu_names_modules_extra(host):
    """depmod ran without the exporter (Ubuntu without linux-modules-extra-K): modules.dep has no
    dependency at all, but K's Module.symvers says videodev exports a symbol the module imports."""
    s = _host(host, videodev=False, dep_line=False, symbol_owner="drivers/media/v4l2-core/videodev",
              packages=(f"linux-modules-{K2}",))
    (p,) = problems(s)
    assert p.reason == "dependency_missing"
    assert "videodev (symbol pci_register_driver): " in p.detail and "has no videodev" in p.detail
    assert p.fix == f"apt-get install linux-modules-extra-{K2}"


def test_symbol_exporter_built_in_is_met(host):
    s = _host(host, videodev=False, dep_line=False, symbol_owner="drivers/media/v4l2-core/videodev",
              builtin=("drivers/media/v4l2-core/videodev",))
    assert problems(s) == []


def test_module_needs_orders_depends_symbols_and_closure():
    dep = parse_modules_dep(f"{MC}:\n{VIDEODEV}: {MC}\nupdates/dkms/x.ko: {VIDEODEV} {MC}\n".encode())
    exports = parse_module_symvers("0x1\tvideo_ioctl2\tdrivers/media/v4l2-core/videodev\tEXPORT_SYMBOL\t\n"
                                   "0x2\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n"
                                   "0x3\tsnd_foo\tsound/core/snd\tEXPORT_SYMBOL_GPL\t\n")
    needs = module_needs("x", "updates/dkms/x.ko", ("videodev",), ("video_ioctl2", "_printk", "snd_foo"),
                         dep, exports, parse_modules_builtin(b""))
    assert needs == (Need("videodev", VIDEODEV, "depends="), Need("mc", MC, "needed by videodev"),
                     Need("snd", None, "symbol snd_foo"))


def kernel_problems(s, kernel=K2):
    return [p for p in s.readiness.kernel(kernel).kernel_problems if p.reason == "loaded_module_missing"]


def test_loaded_module_the_kernel_lacks_is_a_warning(host):
    s = _host(host, videodev=False, loaded=(("videodev", ""), ("acpi_call", "OE")))
    (p,) = kernel_problems(s)
    assert p.severity == "warning" and p.detail == (
        f"videodev is loaded now, but modules.dep lists {VIDEODEV} but the file is gone")
    assert p.fix == f"apt-get install --reinstall linux-image-{K2}"
    assert s.readiness.kernel(K2).loaded_missing == (("videodev", "warning"),)


def test_loaded_module_listed_in_modules_load_d_is_an_error(host):
    host.write("etc/modules-load.d/cam.conf", "# webcam\nvideodev  # the v4l2 core\n")
    s = _host(host, videodev=False, dep_line=False, loaded=(("videodev", ""),),
              packages=(f"linux-modules-{K2}",))
    (p,) = kernel_problems(s)
    assert p.severity == "error" and p.detail == (f"videodev is loaded now, but {K2} has no videodev.ko; "
                                                  "the host loads it at boot")
    assert p.fix == f"apt-get install linux-modules-extra-{K2}"
    assert s.readiness.kernel(K2).verdict == "not_ready"


def test_loaded_module_present_or_built_in_is_no_problem(host):
    s = _host(host, loaded=(("videodev", ""), ("mc", "")), builtin=("drivers/media/mc/mc",))
    assert kernel_problems(s) == []


def test_depends_on_a_module_dkms_renamed_is_met_by_its_file():
    """nvidia-kernel-dkms installs nvidia-modeset as nvidia-current-modeset.ko (DEST_MODULE_NAME):
    the drm module's depends= says nvidia-modeset, depmod indexes nvidia_current_modeset; the need
    is that file, present in the index, not a module K lacks (Debian 12's real nvidia tree)."""
    modeset, drm = "updates/dkms/nvidia-current-modeset.ko", "updates/dkms/nvidia-current-drm.ko"
    dep = parse_modules_dep(f"{modeset}:\n{drm}: {modeset}\n".encode())
    needs = module_needs("nvidia_current_drm", drm, ("nvidia-modeset",), (), dep, None, frozenset(),
                         {"nvidia_modeset": modeset})
    assert needs == (Need("nvidia_current_modeset", modeset, "depends="),)
    assert module_needs("nvidia_current_drm", drm, ("nvidia-modeset",), (), dep, None, frozenset()) == (
        Need("nvidia_modeset", None, "depends="), Need("nvidia_current_modeset", modeset, "modules.dep"))


def test_a_running_scraper_sees_a_loaded_modules_file_go_and_come_back(host):
    """The presence check is one cached listing per directory (keyed by the directory's
    identity), not a stat per file: deleting videodev.ko must still show on the next warm
    scrape, a dangling link in its place counts as absent (modprobe would fail on it), and a
    file put back makes the problem go away."""
    _host(host, loaded=(("videodev", ""), ("acpi_call", "OE")))
    scraper = Scraper(HostFS(host.root), Config())
    assert kernel_problems(scraper.scrape()) == []
    f = host.root / f"usr/lib/modules/{K2}/{VIDEODEV}"
    body = f.read_bytes()
    f.unlink()
    (p,) = kernel_problems(scraper.scrape())
    assert p.detail.startswith("videodev is loaded now") and "the file is gone" in p.detail
    f.symlink_to("/nonexistent/videodev.ko")
    assert len(kernel_problems(scraper.scrape())) == 1
    f.unlink()
    f.write_bytes(body)
    assert kernel_problems(scraper.scrape()) == []
