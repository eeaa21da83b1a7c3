"""make.log classification on logs shaped like real DKMS failures."""

import pytest

from exporter.formats.makelog import classify_make_log

HEAD = "DKMS make.log for nvidia-535.183.01 for kernel 6.8.0-100-generic (x86_64)\nMon Nov 16 10:00:00 UTC 2026\n"
CASES = {
    "kernel_api_mismatch": HEAD + """make -C /lib/modules/6.8.0-100-generic/build M=/var/lib/dkms/nvidia/535.183.01/build modules
  CC [M]  nvidia/nv.o
nvidia/nv.c:1612:5: error: implicit declaration of function 'acpi_bus_get_device'; did you mean 'acpi_bus_get_status'? [-Werror=implicit-function-declaration]
cc1: some warnings being treated as errors
make[2]: *** [scripts/Makefile.build:243: nvidia/nv.o] Error 1
make: *** [Makefile:234: __sub-make] Error 2
""",
    "kernel_api_mismatch/unknown type": HEAD + """  CC [M]  zfs/module/os/linux/zfs/zpl_file.o
zpl_file.c:55:1: error: unknown type name 'kiocb_t'
make: *** [Makefile:1908: zfs] Error 2
""",
    "kernel_api_mismatch/modpost": HEAD + """  MODPOST Module.symvers
ERROR: modpost: "__symbol_get_gpl_only" [acpi_call.ko] undefined!
make[2]: *** [scripts/Makefile.modpost:126: Module.symvers] Error 1
""",
    "compiler_missing": HEAD + """make -C /lib/modules/6.1.0-28-amd64/build M=/var/lib/dkms/acpi-call/1.2.2/build
make[1]: Entering directory '/usr/src/linux-headers-6.1.0-28-amd64'
/bin/sh: 1: gcc-12: not found
make[2]: *** [scripts/Makefile.build:250: acpi_call.o] Error 127
""",
    "headers_missing": HEAD + """make: *** /lib/modules/6.8.0-100-generic/build: No such file or directory.  Stop.
""",
    "other": HEAD + """make[1]: *** No space left on device
make: *** [Makefile:8: all] Error 2
""",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_causes(name):
    log = classify_make_log(CASES[name].encode())
    assert log.cause == name.split("/")[0]
    assert (log.module, log.version, log.kernel, log.arch) == ("nvidia", "535.183.01", "6.8.0-100-generic", "x86_64")
    assert log.detail


def test_detail_is_the_compiler_error_not_makes_epilogue():
    log = classify_make_log(CASES["kernel_api_mismatch"].encode())
    assert "implicit declaration of function 'acpi_bus_get_device'" in log.detail


def test_header_forms_of_newer_dkms():
    for head in ("DKMS make.log for acpi-call/1.2.2 for kernel 6.1.0-28-amd64 (x86_64)",
                 "DKMS (dkms-3.1.8) make.log for acpi-call/1.2.2 for kernel 6.1.0-28-amd64 (x86_64)"):
        log = classify_make_log((head + "\n").encode())
        assert (log.module, log.version, log.kernel) == ("acpi-call", "1.2.2", "6.1.0-28-amd64")


def test_garbage_is_other_without_kernel():
    log = classify_make_log(b"\xff\xfe binary junk \x00\x01")
    assert log.cause == "other" and log.kernel is None
