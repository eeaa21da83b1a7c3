"""The persistent cache (--cache.dir): what it keeps, and that it never trusts a file it did not
write for this file identity and schema (counted by reason, then rewritten)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from example_hosts import NEW, healthy, reboot_trap

from exporter.cli import main
from exporter.collectors.module import MODULE_CODEC
from exporter.config import Config
from exporter.formats import symvers
from exporter.formats.jsoncodec import Codec
from exporter.formats.module import ModuleFileError
from exporter.host.diskcache import MISS, DiskCache
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper

CODEC = Codec("test", ())
IDENT = (1, 2, 3, 4, 5)


def cache_dir(tmp_path: Path) -> Path:
    d = tmp_path / "cache"
    d.mkdir(mode=0o700)
    return d


def scraper(root: Path, store: DiskCache) -> Scraper:
    return Scraper(HostFS(root), Config(), store=store)


def entries(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.suffix == ".json")


def test_a_second_process_reads_the_parses_back_instead_of_parsing(tmp_path):
    """Round trip through a real scrape: every persisted purpose is stored, a new Scraper (a new
    process) gets them all from disk with no parse, and the facts are equal."""
    root = tmp_path / "h"
    healthy(root)
    for kdir in (root / "lib/modules").iterdir():
        (kdir / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\nkernel/crypto/crc32c_generic.ko\n")
    d = cache_dir(tmp_path)
    first = scraper(root, DiskCache(str(d))).scrape()
    assert len(entries(d)) >= 5     # module files, export tables, modules.dep, images, dpkg facts
    purposes = {json.loads(e.read_bytes().partition(b"\n")[0])["purpose"] for e in entries(d)}
    assert {"modules.dep", "kconfig", "modules.builtin", "module", "symvers"} <= purposes, sorted(purposes)
    store = DiskCache(str(d))
    again = scraper(root, store).scrape()
    assert store.hits >= 5 and store.misses == 0 and store.stores == 0
    assert sum(store.rejected.values()) == 0
    for name in ("module", "initramfs", "kernel", "packages", "dkms"):
        assert again.facts.runs[name].facts == first.facts.runs[name].facts, name
    assert again.readiness == first.readiness


def test_an_entry_cached_before_the_parser_changed_its_answer_is_not_served(tmp_path):
    """A kconfig entry written by a cache of the previous revision (when an empty /boot/config-K
    parsed as {}) is refused as another schema and the file parsed again: the damage shows at
    once after an upgrade, not when the file next changes."""
    from exporter.formats import kconfig
    assert kconfig.CODEC.schema != Codec("kconfig").schema != Codec("kconfig", revision=3).schema
    root = tmp_path / "h"
    healthy(root)
    config = next((root / "boot").glob("config-*"))
    config.write_bytes(b"")
    d = cache_dir(tmp_path)
    old = DiskCache(str(d))
    ident = (lambda st: (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))(config.stat())
    old.put(str(config), "kconfig", ident, Codec("kconfig"), {})      # the old revision's answer
    store = DiskCache(str(d))
    s = scraper(root, store).scrape()
    assert store.rejected["schema"] >= 1 and s.readiness.verdict == "unknown"
    assert any("no CONFIG_MODULES line" in e.message for e in s.facts.runs["kernel"].errors)


def test_values_round_trip_exactly():
    table = symvers.parse_module_symvers("0x12345678\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n"
                                         "0x00000000\tfoo\tdrivers/x/y\tEXPORT_SYMBOL_GPL\tNS\n")
    back = symvers.CODEC.decode(json.loads(json.dumps(symvers.CODEC.encode(table))))
    assert back == table and type(back) is symvers.ExportTable and back.has_crcs
    err = ModuleFileError("truncated", "x.ko: 3 bytes")
    back = MODULE_CODEC.decode(json.loads(json.dumps(MODULE_CODEC.encode(err))))
    assert type(back) is ModuleFileError and (back.code, back.message) == (err.code, err.message)
    value = (b"\0\xff", frozenset({"a"}), {"k": [1, 2.5, None, True]})
    assert CODEC.decode(json.loads(json.dumps(CODEC.encode(value)))) == value


@pytest.mark.parametrize("value, tag", [
    ({"CONFIG_A": "y", "CONFIG_B": "\"q\"", "": ""}, "ds"),
    ({}, "ds"),
    ({"kernel/a.ko": ("kernel/b.ko", "kernel/c d.ko"), "x.ko": ()}, "dt"),
    (frozenset({"ext4", "", "a b"}), "ss"),
    ({"k": ("a", 1)}, "d"),              # a tuple that is not all strings: the general form
    ({"k": "a", "j": ("b",)}, "d"),      # mixed values
    (frozenset({"a", 1}), "s"),
])
def test_string_tables_take_their_compact_form_and_round_trip(value, tag):
    """Tables of strings (kernel configs, modules.dep, modules.builtin) are written in a compact
    form and read back as exactly the value, with its types (tuples, frozensets) restored."""
    encoded = json.loads(json.dumps(CODEC.encode(value)))
    assert next(iter(encoded)) == tag
    back = CODEC.decode(encoded)
    assert back == value and type(back) is type(value)
    if isinstance(value, dict):
        assert all(type(b) is type(v) for b, v in zip(back.values(), value.values()))


def test_compact_tables_share_their_strings_as_the_parsers_do():
    """Kernels share most module paths and config names: the parsers intern them, and a table
    read back from the cache must too, or a process started on a warm cache holds every
    kernel's copy (six real configs: 4.8 MiB, against 2.2 MiB shared)."""
    one, two = ({f"CONFIG_OPTION_{i}": "y", "k": f"path/{i}"} for i in (1, 1))
    a, b = (CODEC.decode(json.loads(json.dumps(CODEC.encode(t)))) for t in (one, two))
    (ka, va), (kb, vb) = (next(iter(t.items())) for t in (a, b))
    assert ka is kb and a["k"] is b["k"]
    deps = [CODEC.decode(json.loads(json.dumps(CODEC.encode({"kernel/x.ko": ("kernel/yy.ko",)})))) for _ in (1, 2)]
    assert deps[0]["kernel/x.ko"][0] is deps[1]["kernel/x.ko"][0]
    sets = [CODEC.decode(json.loads(json.dumps(CODEC.encode(frozenset({"ext4_builtin"}))))) for _ in (1, 2)]
    assert next(iter(sets[0])) is next(iter(sets[1]))


@pytest.mark.parametrize("body", [
    {"ds": {"a": 1}}, {"ds": {"a": None}}, {"ds": ["a"]},
    {"dt": {"a": "b"}}, {"dt": {"a": ["b", 2]}}, {"dt": {"a": [["b"]]}}, {"dt": ["a"]},
    {"ss": ["a", {"c": "os.system"}]}, {"ss": {"a": "b"}},
])
def test_a_compact_table_holding_anything_but_strings_is_refused(body):
    with pytest.raises(ValueError):
        CODEC.decode(body)


def _stored(d: Path, value=("x", 1)) -> tuple[DiskCache, Path]:
    store = DiskCache(str(d))
    store.put("/boot/img", "p", IDENT, CODEC, value)
    (entry,) = entries(d)
    return store, entry


@pytest.mark.parametrize("damage, reason", [
    ("truncate", "corrupt"), ("flip", "corrupt"), ("empty", "foreign"), ("foreign", "foreign"),
    ("schema", "schema"), ("other-path", "foreign"), ("body-type", "corrupt"),
])
def test_a_damaged_entry_is_refused_counted_and_rewritten(tmp_path, damage, reason):
    d = cache_dir(tmp_path)
    _, entry = _stored(d)
    raw = entry.read_bytes()
    head, _, body = raw.partition(b"\n")
    header = json.loads(head)
    if damage == "truncate":
        raw = raw[: len(raw) - 3]
    elif damage == "flip":
        raw = raw[:-2] + bytes([raw[-2] ^ 0x01]) + raw[-1:]
    elif damage == "empty":
        raw = b""
    elif damage == "foreign":
        raw = b"\x7fELF\x02\x01\x01" + b"\0" * 64
    elif damage in ("schema", "other-path"):
        header["schema" if damage == "schema" else "path"] = "something-else"
        raw = json.dumps(header).encode() + b"\n" + body
    elif damage == "body-type":   # checksummed, but holds a type this cache never writes
        body = json.dumps({"c": "os.system", "a": {"cmd": "true"}}).encode()
        header.update(length=len(body), sha256=__import__("hashlib").sha256(body).hexdigest())
        raw = json.dumps(header).encode() + b"\n" + body
    entry.write_bytes(raw)
    store = DiskCache(str(d))
    assert store.get("/boot/img", "p", IDENT, CODEC) is MISS
    assert store.rejected[reason] == 1 and sum(store.rejected.values()) == 1
    store.put("/boot/img", "p", IDENT, CODEC, ("x", 1))
    assert DiskCache(str(d)).get("/boot/img", "p", IDENT, CODEC) == ("x", 1)


def test_a_symlink_or_another_users_file_is_never_read(tmp_path):
    d = cache_dir(tmp_path)
    _, entry = _stored(d)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(entry.read_bytes())
    entry.unlink()
    entry.symlink_to(elsewhere)
    store = DiskCache(str(d))
    assert store.get("/boot/img", "p", IDENT, CODEC) is MISS and store.rejected["unsafe"] == 1
    entry.unlink()
    _stored(d)
    os.chmod(entry, 0o666)       # writable by anyone: whoever could have written it, it is not trusted
    store = DiskCache(str(d))
    assert store.get("/boot/img", "p", IDENT, CODEC) is MISS and store.rejected["unsafe"] == 1
    os.chmod(entry, 0o600)
    os.chown(entry, 65534, 65534)   # tests run as root (as the suite does): another user's file
    store = DiskCache(str(d))
    assert store.get("/boot/img", "p", IDENT, CODEC) is MISS and store.rejected["unsafe"] == 1


def test_an_unsafe_directory_turns_the_cache_off(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o777)
    store = DiskCache(str(d))
    assert not store.usable and "writable" in store.problem
    store.put("/x", "p", IDENT, CODEC, 1)
    assert list(d.iterdir()) == [] and store.get("/x", "p", IDENT, CODEC) is MISS
    link = tmp_path / "link"          # a link to a directory others may write: still refused
    link.symlink_to(d)
    assert not DiskCache(str(link)).usable
    good = tmp_path / "good"          # systemd's DynamicUser= layout: a root-owned link to private/NAME
    good.symlink_to(cache_dir(tmp_path))
    store = DiskCache(str(good))
    assert store.usable and store.directory == str((tmp_path / "cache").resolve())


def test_a_changed_identity_is_a_miss_and_the_rewrite_is_read_again(tmp_path):
    """The persistent cache keys on (dev, ino, size, mtime_ns, ctime_ns) like the in-memory one:
    a module rewritten in place with its size and mtime put back is parsed again by the next
    process, not served from the cache."""
    root = tmp_path / "h"
    healthy(root)
    d = cache_dir(tmp_path)
    assert scraper(root, DiskCache(str(d))).scrape().readiness.verdict == "ready"
    module = next(root.glob("usr/lib/modules/*/updates/dkms/acpi_call.ko*"))
    st = module.stat()
    with open(module, "r+b") as f:
        f.write(b"\0" * st.st_size)
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
    store = DiskCache(str(d))
    readiness = scraper(root, store).scrape().readiness
    assert store.stores >= 1
    assert "module_unreadable" in {p.reason for k in readiness.kernels for m in k.modules for p in m.problems}
    assert store.get("/nothing", "p", IDENT, CODEC) is MISS


def test_the_directory_stays_within_its_bound(tmp_path):
    d = cache_dir(tmp_path)
    store = DiskCache(str(d), max_bytes=4000)
    for i in range(20):
        store.put(f"/f{i}", "p", IDENT, CODEC, "x" * 500)
    store.enforce_bound()
    total = sum(p.stat().st_size for p in entries(d))
    assert total <= 4000 and store.evicted >= 10
    assert store.get("/f19", "p", IDENT, CODEC) == "x" * 500   # the newest survive


def _writer(directory: str, n: int) -> None:
    store = DiskCache(directory, max_bytes=20_000)
    for i in range(n):
        store.put(f"/f{i % 7}", "p", IDENT, CODEC, [os.getpid(), i, "y" * 300])
        store.get(f"/f{(i + 3) % 7}", "p", IDENT, CODEC)
        if i % 10 == 0:
            store.enforce_bound()
    assert sum(store.rejected.values()) == 0, store.rejected


def test_two_processes_writing_at_once_never_see_half_a_file(tmp_path):
    """A serve and a textfile run share the directory: every read sees a whole file (or none)."""
    d = cache_dir(tmp_path)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(d), 300)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    store = DiskCache(str(d))
    for i in range(7):
        value = store.get(f"/f{i}", "p", IDENT, CODEC)
        assert value is MISS or value[2] == "y" * 300
    assert sum(store.rejected.values()) == 0
    assert not [p for p in d.iterdir() if p.name.startswith(".tmp-")]


def test_textfile_with_cache_dir_and_no_cache_dir(tmp_path):
    root = tmp_path / "h"
    healthy(root)
    d = tmp_path / "cache"
    out = tmp_path / "dkms.prom"
    assert main(["textfile", "--cache.dir", str(d), "--output", str(out), "--path.rootfs", str(root)]) == 0
    assert oct(d.stat().st_mode & 0o777) == "0o700" and entries(d)
    text = out.read_text()
    assert 'dkms_exporter_cache_rejected_total{reason="corrupt"} 0' in text
    assert main(["textfile", "--cache.dir", str(d), "--output", str(out), "--path.rootfs", str(root)]) == 0
    assert "dkms_exporter_cache_hits_total" in out.read_text()
    other = tmp_path / "unused"
    assert main(["textfile", "--no-cache.dir", "--output", str(out), "--path.rootfs", str(root)]) == 0
    assert not other.exists() and "dkms_exporter_cache_rejected_total" not in out.read_text()


@pytest.mark.parametrize("host, warm, verifies, asn1", [(reboot_trap, False, False, True), (healthy, False, True, True),
                                                        (reboot_trap, True, False, False), (healthy, True, False, False)])
def test_a_scrape_imports_only_what_it_uses(tmp_path, host, warm, verifies, asn1):
    """`textfile` without --config.file imports no YAML, no HTTP server, TLS or basic-auth code of
    ours, no bcrypt and no pyelftools (module files are read with struct); cryptography only on a
    host where Secure Boot makes it verify module signatures; asn1crypto (~9 MiB) only where a
    signature or certificate is parsed, so not in a run that finds every parse in its persistent
    cache (a timer's run on an unchanged host); never cryptography's X.509 layer; and on
    Debian none of the other families' backends, parsers and libraries (sqlite3 for rpmdb.sqlite,
    tomllib for dnf5, lz4 for legacy images).  Checked in a fresh interpreter: sys.modules after
    the run.  ssl and http.server still come in with prometheus_client's own package import,
    which the exposition needs."""
    root = tmp_path / "h"
    host(root)
    cache = ["--cache.dir", str(cache_dir(tmp_path))] if warm else ["--no-cache.dir"]
    if warm:
        assert main([*cache, "textfile", "--output", str(tmp_path / "first.prom"), "--path.rootfs", str(root)]) == 0
    code = ("import sys, runpy\n"
            f"sys.argv = ['dkms-exporter', *{cache!r}, 'textfile', '--output', {str(tmp_path / 'x.prom')!r},"
            f" '--path.rootfs', {str(root)!r}]\n"
            "try:\n    runpy.run_module('exporter', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(' '.join(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout.split()
    assert (tmp_path / "x.prom").exists()
    loaded = set(out)
    assert ("cryptography" in loaded) == verifies
    assert "cryptography.x509" not in loaded   # a signature needs the key only (~1.7 MiB less)
    assert ("asn1crypto" in loaded) == asn1
    unwanted = {"yaml", "bcrypt", "exporter.web.server", "exporter.web.tls",
                "exporter.web.basic_auth", "exporter.web.config_file", "ctypes.util",
                "sqlite3", "tomllib", "lz4", "exporter.distro.rhel", "exporter.distro.suse",
                "exporter.distro.arch", "exporter.formats.rpmdb", "exporter.formats.pacman",
                "exporter.formats.zypplocks"}
    assert loaded & unwanted == set()
    assert not [m for m in loaded if m.split(".")[0] == "elftools"]


def test_builtin_keys_read_once_per_image(tmp_path, monkeypatch):
    """K's built-in certificates come from decompressing its whole vmlinuz (seconds, and liblzma's
    32 MiB dictionary): with --cache.dir the second process takes them from the disk cache and
    does not open the image; a rewritten image (new identity) is read again.  The DKMS key is
    not enrolled here: an enrolled signer spares the image (the next test)."""
    from test_vmlinux import CERTS, bzimage, vmlinux

    import exporter.collectors.module as collector
    root = tmp_path / "h"
    healthy(root)
    for var in (root / "sys/firmware/efi/efivars").glob("MokListRT-*"):
        var.unlink()
    images = sorted((root / "boot").glob("vmlinuz-*"))
    assert images
    for image in images:
        image.write_bytes(bzimage(vmlinux(CERTS[:1])))
    reads: list[int] = []
    real = collector.builtin_certificates

    def counting(fh, size, extra=0):
        reads.append(size)
        return real(fh, size, extra)

    monkeypatch.setattr(collector, "builtin_certificates", counting)
    d, out = tmp_path / "cache", tmp_path / "dkms.prom"
    args = ["textfile", "--cache.dir", str(d), "--output", str(out), "--path.rootfs", str(root)]
    assert main(args) == 0
    def answers() -> list[str]:   # the verdict's lines, without timings and cache counters
        return [line for line in out.read_text().splitlines()
                if line.startswith(("dkms_module", "dkms_kernel", "dkms_host")) and "duration" not in line]

    first, text = len(reads), answers()
    assert first >= 1 and text
    assert main(args) == 0
    assert len(reads) == first and answers() == text
    images[-1].write_bytes(bzimage(vmlinux(CERTS[:1])) + b"\0")   # another identity: read again
    assert main(args) == 0
    assert len(reads) == first + 1



def test_an_enrolled_signer_spares_the_image_and_changes_no_answer(tmp_path, monkeypatch):
    """Every DKMS module is signed with the enrolled key, which the kernel verifies modules
    with: K's image is not decompressed (on Debian that was ~0.7 s and 32 MiB after each
    kernel install), and the answers are those of a run that did read it.  A module signed
    with a key that is not enrolled makes its kernel's image read again."""
    from test_vmlinux import CERTS, bzimage, vmlinux

    import exporter.collectors.module as collector
    root = tmp_path / "h"
    h = healthy(root)
    for image in sorted((root / "boot").glob("vmlinuz-*")):
        image.write_bytes(bzimage(vmlinux(CERTS[:1])))
    reads: list[int] = []
    real = collector.builtin_certificates
    monkeypatch.setattr(collector, "builtin_certificates",
                        lambda fh, size, extra=0: reads.append(size) or real(fh, size, extra))
    out = tmp_path / "dkms.prom"
    args = ["textfile", "--no-cache.dir", "--output", str(out), "--path.rootfs", str(root)]

    def answers() -> list[str]:
        assert main(args) == 0
        return [line for line in out.read_text().splitlines()
                if line.startswith(("dkms_module", "dkms_kernel", "dkms_host")) and "duration" not in line]

    real_enrolled = collector.enrolled_signers
    spared = answers()
    assert reads == [] and any(line.startswith("dkms_module_working{") for line in spared)
    monkeypatch.setattr(collector, "enrolled_signers", lambda ctx, k, files: None)   # as before: always read
    assert answers() == spared and len(reads) >= 1
    monkeypatch.setattr(collector, "enrolled_signers", real_enrolled)
    reads.clear()
    h.dkms_build("acpi-call", "1.2.2", NEW, dest=["acpi_call"], key="foreign")
    h.finish()
    assert any("untrusted_key" in line for line in answers())
    assert len(reads) == 1    # that kernel's image only


_COLD_RUN = r"""
import json, sys
from exporter.config import Config
from exporter.host.diskcache import DiskCache
from exporter.host.rootfs import HostFS
from exporter.scrape.scraper import Scraper
s = Scraper(HostFS(sys.argv[1]), Config(), store=DiskCache(sys.argv[2])).scrape()
mods = s.facts.runs["module"].facts.kernels
print(json.dumps({"crypto": "cryptography" in sys.modules,
                  "checks": sum(len(k.sigchecks) for k in mods.values()),
                  "reasons": sorted({p.reason for k in s.readiness.kernels for m in k.modules for p in m.problems})}))
"""


def _cold_run(root: Path, d: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _COLD_RUN, str(root), str(d)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow   # three fresh interpreters: over the quick tier's 5 s at CI load
def test_signature_verdicts_are_kept_and_a_rewritten_module_is_verified_again(tmp_path):
    """A cold process on an unchanged host takes every signature verification from --cache.dir
    (it never even imports cryptography); a module rewritten in place with its size and mtime
    restored (cp -p, a restore: only the ctime tells) is verified again and found changed."""
    root = tmp_path / "h"
    healthy(root)
    d = cache_dir(tmp_path)
    first = _cold_run(root, d)
    assert first["crypto"] and first["checks"] >= 1 and first["reasons"] == []
    again = _cold_run(root, d)
    assert again == {**first, "crypto": False}
    module = next(root.glob("usr/lib/modules/*/updates/dkms/acpi_call.ko"))
    st = module.stat()
    with open(module, "r+b") as f:            # one bit of .text (the first section), trailer intact
        f.seek(64)
        byte = f.read(1)
        f.seek(64)
        f.write(bytes([byte[0] ^ 0x01]))
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert module.stat().st_size == st.st_size and module.stat().st_mtime_ns == st.st_mtime_ns
    changed = _cold_run(root, d)
    assert changed["crypto"] and "signature_invalid" in changed["reasons"]


def _reasons(scrape, kernel: str, module: str) -> set[str]:
    kv = next(kv for kv in scrape.readiness.kernels if kv.kernel == kernel)
    return {p.reason for m in kv.modules if m.module == module for p in m.problems}


def test_a_rebuilt_module_using_a_new_symbol_is_judged_against_the_whole_file(tmp_path):
    """Export tables are kept as slices: only the symbols the kernel's modules use.  A module
    rebuilt to use a symbol the slice lacks must have the file read again, in a running process
    (in-memory cache) and in a new one (the persistent cache): here the new symbol's CRC is wrong,
    so the loader's answer is "disagrees about version of symbol", never "Unknown symbol" or
    nothing, and both caches must say so."""
    import modbuild
    from hostbuilder import FIXED_MTIME, kernel_crc, vermagic

    root = tmp_path / "h"
    healthy(root)
    k = "6.1.0-28-amd64"
    symvers_file = next(root.glob(f"usr/src/linux-headers-{k}/Module.symvers"))
    with symvers_file.open("a") as fh:   # an export no module uses yet: not in any slice
        fh.write(f"0x{kernel_crc(k, 'rebuilt_new_sym'):08x}\trebuilt_new_sym\tvmlinux\tEXPORT_SYMBOL\t\n")
    os.utime(symvers_file, (FIXED_MTIME, FIXED_MTIME))
    d = cache_dir(tmp_path)
    running = scraper(root, DiskCache(str(d)))
    assert "symbol_version_mismatch" not in _reasons(running.scrape(), k, "acpi_call")

    syms = ("_printk", "__fentry__", "pci_register_driver", "rebuilt_new_sym")
    spec = modbuild.ModSpec(name="acpi_call", vermagic=vermagic(k), undefined=syms,
                            versions=(("module_layout", kernel_crc(k, "module_layout")),
                                      *((s, kernel_crc(k, s) ^ (s == "rebuilt_new_sym")) for s in syms)))
    module = root / f"usr/lib/modules/{k}/updates/dkms/acpi_call.ko"
    module.write_bytes(modbuild.build_module(spec, tmp_path / "acpi_call.ko").read_bytes())
    os.utime(module, (FIXED_MTIME, FIXED_MTIME))   # nothing else changes: the symvers file's identity holds

    for label, scrape in (("running", running.scrape()), ("new process", scraper(root, DiskCache(str(d))).scrape())):
        reasons = _reasons(scrape, k, "acpi_call")
        assert "symbol_version_mismatch" in reasons and "unknown_symbol" not in reasons, (label, reasons)
        problem = next(p for kv in scrape.readiness.kernels if kv.kernel == k for m in kv.modules
                       if m.module == "acpi_call" for p in m.problems if p.reason == "symbol_version_mismatch")
        assert "rebuilt_new_sym" in problem.detail, (label, problem.detail)


def test_values_of_identityless_files_are_kept_by_their_bytes(tmp_path):
    """FileCache.by_content (efivarfs certificates): the same bytes are derived once, in memory
    and across processes through the store; other bytes (a newly enrolled key) are derived
    again; a derivation that fails is remembered in memory only, never written to disk."""
    from exporter.host.cache import FileCache
    d = cache_dir(tmp_path)
    calls: list[bytes] = []

    def derive(data: bytes):
        def fn():
            calls.append(data)
            if data == b"bad":
                raise ValueError("not a certificate")
            return ("parsed", data.decode())
        return fn

    first = FileCache(DiskCache(str(d)))
    assert first.by_content(b"key-1", "efi-cert", derive(b"key-1"), CODEC) == ("parsed", "key-1")
    assert first.by_content(b"key-1", "efi-cert", derive(b"key-1"), CODEC) == ("parsed", "key-1")
    assert calls == [b"key-1"]
    second = FileCache(DiskCache(str(d)))          # a new process: from disk, not derived
    assert second.by_content(b"key-1", "efi-cert", derive(b"key-1"), CODEC) == ("parsed", "key-1")
    assert calls == [b"key-1"] and second.store.hits == 1
    assert second.by_content(b"key-2", "efi-cert", derive(b"key-2"), CODEC) == ("parsed", "key-2")
    assert calls == [b"key-1", b"key-2"]
    for cache in (second, second):                 # the error once, then from memory
        with pytest.raises(ValueError):
            cache.by_content(b"bad", "efi-cert", derive(b"bad"), CODEC)
    assert calls.count(b"bad") == 1
    with pytest.raises(ValueError):
        FileCache(DiskCache(str(d))).by_content(b"bad", "efi-cert", derive(b"bad"), CODEC)
    assert calls.count(b"bad") == 2
