#!/usr/bin/env python3
"""The exporter against the shell checklist it replaces, on one big realistic host: one command.

    .venv/bin/python benchmarks/run.py [--quick] [--no-scaling] [--scrapes N] [--profile]

Builds (once, cached; see benchmarks/benchhost.py) a host with 6 kernels, 12 DKMS modules in
mixed states, signed compressed module files and a ~125 MB-of-cpio zstd initramfs per kernel,
then measures in this one run, with the host's files in the page cache for every contender:

- **cold**: ``dkms-exporter --no-cache.dir metrics`` in a fresh process (interpreter start,
  imports, the first scrape with an empty parse cache, rendering), wall time;
- **the floor** of a cold run: ``python -c pass`` plus every kernel's initramfs decompressed once
  by the C tool (``tail -c +OFFSET IMAGE | zstd -dcq > /dev/null`` per compressed segment);
- **textfile with a warm persistent cache**: ``dkms-exporter --cache.dir DIR textfile`` in a fresh
  process after one run filled DIR (a timer's run on an unchanged host), against the checklist
  and against interpreter start alone;
- **warm**: ``dkms-exporter serve`` on 127.0.0.1, one GET /metrics per new connection, many
  times, after its first scrape: p50 / p99 latency as a scraper sees it;
- **peak RSS** of that serve process: VmHWM from /proc/PID/status (ru_maxrss of a child would
  carry this process's own peak across exec), after the warm scrapes and again after a burst of
  50 concurrent scrapers;
- **the shell checklist** for the same facts, run against the tree: ``dkms status --dkmstree ...
  --sourcetree ... --installtree ...``, ``modinfo -F signer`` and ``modinfo -F vermagic`` per
  out-of-tree module file, ``lsinitramfs IMAGE | grep`` per kernel, ``dpkg --admindir=... -l``,
  ``apt-mark -o Dir::State::status=... showhold``;

and prints the ratios against the targets (cold >= 10x faster than the checklist and within 1.3x
of the floor, warm >= 200x, warm p99 <= 50 ms, RSS <= 45 MB, warm p50 <= 10 ms on the small host),
the textfile-with-cache ratios, and a scaling table (kernels x modules x image size).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import os
import re
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchhost  # noqa: E402
from benchhost import REPO, Shape  # noqa: E402

TARGETS = {"floor_ratio": 1.3, "cold_ratio": 10.0, "warm_ratio": 200.0, "warm_p99_ms": 50.0, "rss_mib": 45.0, "warm_small_ms": 10.0}
MAIN = Shape(6, 12, "most")
SMALL = Shape(2, 2, "most", exports=25_000)
"""The shape of a plain Debian 12 host (and of tests/realhost's tree): 2 kernels, 2 DKMS modules,
~4,000 in-tree modules and a real-sized export table per kernel.  Its warm scrape once cost
40-77 ms because every scrape walked each kernel's ~25,000 exports per module; it is measured
on every run so such a cost cannot hide behind the big host's numbers again."""
SCALING = (
    Shape(1, 12, "most"), Shape(3, 12, "most"), MAIN, Shape(12, 12, "most"),
    Shape(6, 3, "most"), Shape(6, 24, "most"), Shape(12, 30, "most"),
    Shape(6, 12, "none"), Shape(6, 12, "list"),
)
"""Kernels at 12 modules (1, 3, 6, 12), modules at 6 kernels (3, 12, 24), the 12 x 30 host the
issue names (360 module files, twelve images), and the image kinds.  report_scaling fits a
linear model on the "most" shapes but 12 x 30 and says how far 12 x 30 lies from it."""


@dataclass
class Result:
    shape: Shape
    cold: list[float]
    warm: list[float]
    first_serve_scrape: float
    checklist: list[float]
    rss_kib: int = 0
    rss_burst_kib: int = 0
    checklist_rss_kib: int = 0
    textfile_cached: list[float] | None = None
    interpreter: list[float] | None = None   # python -c pass
    floor: list[float] | None = None         # interpreter start + decompressing every image once
    cpu: dict[str, float] | None = None      # median CPU seconds by contender (see CPU)
    metrics_rss_kib: int = 0                 # VmHWM of a cold `metrics` process

    def cpu_of(self, what: str) -> float:
        return (self.cpu or {}).get(what, float("nan"))

    @property
    def floor_cpu(self) -> float:
        return self.cpu_of("interpreter") + self.cpu_of("decompress")

    @property
    def textfile_cached_s(self) -> float:
        return statistics.median(self.textfile_cached or [float("nan")])

    @property
    def interpreter_s(self) -> float:
        return statistics.median(self.interpreter or [float("nan")])

    @property
    def floor_s(self) -> float:
        return statistics.median(self.floor or [float("nan")])

    @property
    def cold_s(self) -> float:
        return statistics.median(self.cold)

    @property
    def checklist_s(self) -> float:
        return statistics.median(self.checklist)

    def warm_pct(self, q: float) -> float:
        xs = sorted(self.warm)
        return xs[min(len(xs) - 1, int(q * len(xs)))]


# ------------------------------------------------------------------------------------------------
# the contenders


PYTHON = sys.executable
"""The interpreter the exporter runs under (--python): this one (the venv) by default;
/usr/bin/python3 measures it as the .deb runs it, on Debian's python3 and python3-* libraries."""


def exporter_cmd(*args: str) -> list[str]:
    return [PYTHON, "-m", "exporter", *args]


CPU: dict[str, list[float]] = {}
"""CPU seconds (user + system, the process and its children) of every timed run, by what ran:
on a shared machine wall time stretches with other people's load, CPU time much less."""


def timed(what: str, cmd: list[str], **kw) -> float:
    """Run ``cmd``; return its wall time and note its CPU time under ``what``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, **kw)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.setdefault(what, []).append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def byte_compile() -> None:
    """Compile the exporter's modules to bytecode first, as an installed package has them (pip and
    Debian's python3 helpers byte-compile on install).  With PYTHONDONTWRITEBYTECODE set (as in
    this project's shells) every cold run would otherwise compile ~100 modules from source:
    ~1 s of CPU that no installed exporter pays."""
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(REPO / "exporter")], check=True,
                   stdout=subprocess.DEVNULL)


def cold_metrics(root: Path, key: str = "cold") -> float:
    """A fresh process with nothing cached anywhere (--no-cache.dir)."""
    return timed(key, exporter_cmd("--no-cache.dir", "metrics", "--path.rootfs", str(root)),
                 stdout=subprocess.DEVNULL, cwd=REPO)


PEAK = ("import atexit, runpy, sys\n"
        "def peak():\n"
        "    s = open('/proc/self/status').read()\n"
        "    print('VmHWM', s.split('VmHWM:')[1].split()[0], file=sys.stderr)\n"
        "atexit.register(peak)\n"
        "sys.argv = ['dkms-exporter'] + sys.argv[1:]\n"
        "runpy.run_module('exporter', run_name='__main__')\n")


def metrics_peak_kib(root: Path) -> int:
    """VmHWM of a cold ``metrics`` process, read by the process itself at exit (ru_maxrss of a
    child would carry this process's own peak across fork and exec)."""
    proc = subprocess.run([PYTHON, "-c", PEAK, "--no-cache.dir", "metrics", "--path.rootfs", str(root)],
                          check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    return int(proc.stderr.rsplit("VmHWM", 1)[1].split()[0])


def textfile_cached(root: Path, cache: Path, out: Path) -> float:
    """`textfile` from a timer on an unchanged host: a fresh process, the persistent cache warm."""
    return timed("textfile", exporter_cmd("--cache.dir", str(cache), "textfile", "--output", str(out),
                                          "--path.rootfs", str(root)), cwd=REPO)


def interpreter_start() -> float:
    """This interpreter starting and exiting (with site, as the exporter needs its packages)."""
    return timed("interpreter", [PYTHON, "-c", "pass"])


def decompress_script(root: Path) -> str:
    """The floor's other half: every kernel's initramfs image decompressed once, by the C tools,
    to /dev/null (each compressed segment from its offset; the segments are found with our own
    listing, outside the timing)."""
    from exporter.collectors.initramfs import list_image_file
    from initramfs_listing import DECOMPRESS
    lines = ["set -e"]
    for image in sorted((root / "boot").glob("initrd.img-*")):
        for seg in list_image_file(image).segments:
            if seg.compression != "none":
                lines.append(f"tail -c +{seg.offset + 1} {shlex.quote(str(image))} | {DECOMPRESS[seg.compression]} "
                             "> /dev/null 2>&1 || true")
    return "\n".join(lines) + "\n"


def run_script(script: Path) -> float:
    return timed("decompress", ["bash", str(script)])


def checklist_script(root: Path) -> str:
    """What an admin types to answer the same question, pointed at the fixture tree."""
    kernels = sorted(p.name for p in (root / "usr/lib/modules").iterdir() if (root / "boot" / f"vmlinuz-{p.name}").exists())
    names = sorted({p.name.split(".ko")[0] for k in kernels for p in (root / f"usr/lib/modules/{k}/updates").rglob("*.ko*")})
    pattern = "/(" + "|".join(re.escape(n) for n in names) + r")\.ko"
    r = shlex.quote(str(root))
    lines = ["set -u", f"R={r}",
             'dkms status --dkmstree "$R/var/lib/dkms" --sourcetree "$R/usr/src" --installtree "$R/usr/lib/modules"']
    for k in kernels:
        lines += [f'for f in $(find "$R/usr/lib/modules/{k}/updates" "$R/usr/lib/modules/{k}/extra" -name "*.ko*" 2>/dev/null); do',
                  '  modinfo -F signer "$f"; modinfo -F vermagic "$f"', "done",
                  f'lsinitramfs "$R/boot/initrd.img-{k}" 2>/dev/null | grep -E {shlex.quote(pattern)} || true'
                  if (root / f"boot/initrd.img-{k}").exists() else "true"]
    lines += ['dpkg --admindir="$R/var/lib/dpkg" -l', 'apt-mark -o Dir::State::status="$R/var/lib/dpkg/status" showhold']
    return "\n".join(lines) + "\n"


def run_checklist(script: Path, key: str = "checklist") -> float:
    return timed(key, ["bash", str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_metrics(port: int) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET /metrics: {resp.status}")
        return body
    finally:
        conn.close()


def vm_hwm_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


class Serve:
    """dkms-exporter serve on a free loopback port, for the duration of a with-block."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(exporter_cmd("--no-cache.dir", "serve", "--web.listen-address", f"127.0.0.1:{self.port}",
                                                  "--path.rootfs", str(root), "--log.level", "error"), cwd=REPO)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("serve did not start")

    def __enter__(self) -> "Serve":
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def warm_scrapes(port: int, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        get_metrics(port)
        out.append(time.perf_counter() - start)
    return out


def burst(port: int, clients: int = 50, each: int = 10) -> None:
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: [get_metrics(port) for _ in range(each)], range(clients)))


# ------------------------------------------------------------------------------------------------
# one host


def measure(shape: Shape, *, reps: int, scrapes: int, rss: bool, log) -> Result:
    root = benchhost.build(shape, log=log)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "checklist.sh"
        script.write_text(checklist_script(root))
        run_checklist(script, "warm-up")   # page cache warm for everyone; tools' own caches too
        cold_metrics(root, "warm-up")
        decompress = Path(tmp) / "decompress.sh"
        decompress.write_text(decompress_script(root))
        cache, out = Path(tmp) / "cache", Path(tmp) / "dkms.prom"
        textfile_cached(root, cache, out)   # fills the persistent cache
        cold, checklist, cached, floor, interp = [], [], [], [], []
        CPU.clear()
        for _ in range(reps):           # interleaved, so background load hits all alike
            cold.append(cold_metrics(root))
            checklist.append(run_checklist(script))
            cached.append(textfile_cached(root, cache, out))
            interp.append(interpreter_start())
            floor.append(interp[-1] + run_script(decompress))
    with Serve(root) as srv:
        start = time.perf_counter()
        get_metrics(srv.port)
        first = time.perf_counter() - start
        warm = warm_scrapes(srv.port, scrapes)
        cpu = {k: statistics.median(v) for k, v in CPU.items() if k != "warm-up"}
        result = Result(shape, cold, warm, first, checklist, textfile_cached=cached, floor=floor,
                        interpreter=interp, cpu=cpu)
        if rss:
            result.rss_kib = vm_hwm_kib(srv.proc.pid)
            burst(srv.port)
            result.rss_burst_kib = vm_hwm_kib(srv.proc.pid)
    if rss:
        result.metrics_rss_kib = metrics_peak_kib(root)
    return result


def profile_cold(root: Path, top: int = 25) -> None:
    """cProfile of one first scrape in this process (imports excluded)."""
    import cProfile
    import pstats

    from exporter.config import Config
    from exporter.host.rootfs import HostFS
    from exporter.output.metrics import families
    from exporter.scrape.scraper import Scraper

    scraper = Scraper(HostFS(root), Config())
    prof = cProfile.Profile()
    prof.enable()
    families(scraper.scrape())
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(top)
    scrape = scraper.scrape()
    print("collector durations, warm:", {n: round(r.duration * 1000, 2) for n, r in scrape.facts.runs.items()})


def import_time() -> float:
    """Seconds a fresh interpreter needs to import the exporter (part of every cold run)."""
    code = "import time; t = time.perf_counter(); import exporter.cli, exporter.web.server, exporter.output.metrics; " \
           "print(time.perf_counter() - t)"
    return min(float(subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True,
                                    cwd=REPO).stdout) for _ in range(3))


# ------------------------------------------------------------------------------------------------
# report


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report_small(r: Result) -> None:
    """The small real-Debian-like host: the same figures, and the warm target of a plain host."""
    report_main(r, None)
    p50 = r.warm_pct(0.50)
    print(f"  warm p50 <= {TARGETS['warm_small_ms']:.0f} ms (plain host)       {p50 * 1000:8.2f} ms     "
          f"{_verdict(p50 * 1000 <= TARGETS['warm_small_ms'])}")


def report_main(r: Result, imports: float | None) -> None:
    p50, p99 = r.warm_pct(0.50), r.warm_pct(0.99)
    cold_ratio = r.checklist_s / r.cold_s
    warm_ratio = r.checklist_s / p50
    rss_mib = max(r.rss_kib, r.rss_burst_kib) / 1024
    print(f"\nhost {r.shape.label}: {r.shape.kernels} kernels, {r.shape.modules} DKMS modules, "
          f"initramfs {r.shape.image}")
    print(f"  {'':44} {'wall (median)':>14} {'CPU (median)':>13}")
    rows = (("shell checklist", r.checklist_s, r.cpu_of("checklist")),
            ("exporter cold metrics (--no-cache.dir)", r.cold_s, r.cpu_of("cold")),
            ("floor: python -c pass + images through zstd -dc", r.floor_s, r.floor_cpu),
            ("  of which python -c pass", r.interpreter_s, r.cpu_of("interpreter")),
            ("textfile, persistent cache warm", r.textfile_cached_s, r.cpu_of("textfile")))
    for name, wall, cpu in rows:
        print(f"  {name:44} {wall:13.3f}s {cpu:12.3f}s")
    if imports is not None:
        print(f"  (interpreter + imports of serve, best of 3: {imports:.3f} s wall)")
    print(f"  serve first scrape            {r.first_serve_scrape:8.3f} s")
    print(f"  serve warm scrape      p50 {p50 * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms   "
          f"mean {statistics.mean(r.warm) * 1000:.2f} ms   (n={len(r.warm)})")
    print(f"  serve peak RSS (VmHWM) {r.rss_kib / 1024:6.1f} MiB after the warm scrapes, "
          f"{r.rss_burst_kib / 1024:.1f} MiB after 50 concurrent scrapers x 10; "
          f"cold metrics peak RSS {r.metrics_rss_kib / 1024:.1f} MiB")
    cold_cpu_ratio = r.cpu_of("checklist") / r.cpu_of("cold")
    floor_ratio, floor_cpu_ratio = r.cold_s / r.floor_s, r.cpu_of("cold") / r.floor_cpu
    cached_ratio, cached_cpu_ratio = r.checklist_s / r.textfile_cached_s, r.cpu_of("checklist") / r.cpu_of("textfile")
    print("\n  target                              wall       CPU    verdict (wall)")
    print(f"  cold  >= {TARGETS['cold_ratio']:.0f}x faster than checklist  {cold_ratio:7.1f}x  {cold_cpu_ratio:7.1f}x    "
          f"{_verdict(cold_ratio >= TARGETS['cold_ratio'])}")
    print(f"    (the most any tool could reach: checklist / floor = {r.checklist_s / r.floor_s:.1f}x wall, "
          f"{r.cpu_of('checklist') / r.floor_cpu:.1f}x CPU)")
    print(f"  cold within {TARGETS['floor_ratio']:.1f}x of the floor          {floor_ratio:7.2f}x  {floor_cpu_ratio:7.2f}x    "
          f"{_verdict(floor_ratio <= TARGETS['floor_ratio'])}")
    print(f"  warm  >= {TARGETS['warm_ratio']:.0f}x faster (p50)           {warm_ratio:7.0f}x              "
          f"{_verdict(warm_ratio >= TARGETS['warm_ratio'])}")
    print(f"  warm p99 <= {TARGETS['warm_p99_ms']:.0f} ms                    {p99 * 1000:7.2f} ms            "
          f"{_verdict(p99 * 1000 <= TARGETS['warm_p99_ms'])}")
    print(f"  serve peak RSS <= {TARGETS['rss_mib']:.0f} MiB             {rss_mib:7.1f} MiB           "
          f"{_verdict(rss_mib <= TARGETS['rss_mib'])}")
    print(f"  metrics peak RSS <= {TARGETS['rss_mib']:.0f} MiB           {r.metrics_rss_kib / 1024:7.1f} MiB           "
          f"{_verdict(r.metrics_rss_kib / 1024 <= TARGETS['rss_mib'])}")
    print(f"  textfile with cache vs checklist     {cached_ratio:7.1f}x  {cached_cpu_ratio:7.1f}x    (no target; "
          f"over interpreter start: {(r.textfile_cached_s - r.interpreter_s) * 1000:.0f} ms wall, "
          f"{(r.cpu_of('textfile') - r.cpu_of('interpreter')) * 1000:.0f} ms CPU)")


def report_growth(results: list[Result]) -> None:
    """Cost per kernel (the kernel series at 12 modules) and per kernel x module (the module
    series at 6 kernels), cold and warm, by least squares; and the 12 x 30 host against what
    those two slopes predict from 12 x 12 (where growth stops being linear, it shows here)."""
    most = {(r.shape.kernels, r.shape.modules): r for r in results if r.shape.image == "most" and not r.shape.exports}
    by_kernel = [most[k] for k in sorted(most) if k[1] == 12]
    by_module = [most[k] for k in sorted(most) if k[0] == 6]
    if len(by_kernel) < 2 or len(by_module) < 2:
        return
    print("\ngrowth (least-squares slopes; 12 x 30 predicted from 12 x 12 + 18 modules x 12 kernels)")
    for what, value in (("cold", lambda r: r.cold_s), ("cold CPU", lambda r: r.cpu_of("cold")),
                        ("warm p50", lambda r: r.warm_pct(0.5)), ("checklist", lambda r: r.checklist_s)):
        per_kernel = statistics.linear_regression([r.shape.kernels for r in by_kernel],
                                                  [value(r) for r in by_kernel]).slope
        per_pair = statistics.linear_regression([r.shape.modules * 6 for r in by_module],
                                                [value(r) for r in by_module]).slope
        line = f"  {what:10} per kernel (at 12 modules) {per_kernel * 1000:8.2f} ms   per kernel x module {per_pair * 1000:7.3f} ms"
        if (12, 30) in most and (12, 12) in most:
            predicted = value(most[(12, 12)]) + per_pair * 18 * 12
            measured = value(most[(12, 30)])
            line += f"   12 x 30: {measured * 1000:.1f} ms measured, {predicted * 1000:.1f} predicted " \
                    f"({measured / predicted:.2f}x)"
        print(line)


def report_scaling(results: list[Result]) -> None:
    print("\nscaling (medians; warm = serve p50)")
    print(f"  {'kernels':>7} {'modules':>7} {'image':>6} {'files':>6}  {'checklist':>10} {'cold':>8} {'warm':>9}  "
          f"{'cold x':>7} {'warm x':>7}")
    for r in results:
        root = benchhost.build(r.shape, log=lambda *_: None)
        files = sum(1 for _ in (root / "usr/lib/modules").glob("*/updates/dkms/*.ko*"))
        print(f"  {r.shape.kernels:>7} {r.shape.modules:>7} {r.shape.image:>6} {files:>6}  {r.checklist_s:>9.2f}s "
              f"{r.cold_s:>7.2f}s {r.warm_pct(0.5) * 1000:>7.2f}ms  {r.checklist_s / r.cold_s:>6.1f}x "
              f"{r.checklist_s / r.warm_pct(0.5):>6.0f}x")


LOADED_SIZES = (100, 1_000, 4_000, 10_000)


def _proc_modules(root: Path, n: int) -> str:
    """/proc/modules with n modules: the running kernel's own modules first (names from its
    modules.dep, untainted), then out-of-tree names (taint OE) past the in-tree ones."""
    running = (root / "proc/sys/kernel/osrelease").read_text().strip() if (root / "proc/sys/kernel/osrelease").exists() \
        else sorted(p.name for p in (root / "usr/lib/modules").iterdir())[0]
    dep = (root / "usr/lib/modules" / running / "modules.dep").read_text()
    names = [line.split(":", 1)[0].rsplit("/", 1)[-1].split(".ko", 1)[0].replace("-", "_") for line in dep.splitlines()]
    rows = [f"{m} 16384 0 - Live 0x0000000000000000\n" for m in names[:n]]
    rows += [f"vendor{i} 16384 0 - Live 0x0000000000000000 (OE)\n" for i in range(max(0, n - len(names)))]
    return "".join(rows)


def loaded_growth(root: Path, sizes: tuple[int, ...] = LOADED_SIZES, warm: int = 10) -> list[dict]:
    """In-process, per size: the first scrape with rendering (cold parse cache, the process
    already started), the median warm scrape + rendering, the module collector's warm time and
    the body size, with /proc/modules holding that many modules (a copy of procfs only)."""
    sys.path.insert(0, str(REPO))
    from prometheus_client.exposition import generate_latest

    from exporter.config import Config
    from exporter.host.rootfs import HostFS
    from exporter.scrape import Scraper
    from exporter.web.server import build_registry
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as proc:
            shutil.copytree(root / "proc", proc, dirs_exist_ok=True, symlinks=True) if (root / "proc").is_dir() else None
            Path(proc, "modules").write_text(_proc_modules(root, n))
            scraper = Scraper(HostFS(root, procfs=proc), Config(), store=None)
            registry, _ = build_registry(scraper, process=False)
            t = time.process_time()
            body = generate_latest(registry)
            cold = time.process_time() - t
            times, module_ms = [], []
            for _ in range(warm):
                t = time.process_time()
                generate_latest(registry)
                times.append(time.process_time() - t)
                module_ms.append(scraper.scrape().facts.runs["module"].duration)
            rows.append({"loaded": n, "cold_s": cold, "warm_s": statistics.median(times),
                         "module_s": statistics.median(module_ms), "body": len(body)})
    return rows


def report_loaded(rows: list[dict]) -> None:
    print("\nloaded modules (in-process, CPU time; warm = scrape + render, median of 10)")
    print(f"  {'loaded':>7} {'cold':>9} {'warm':>9} {'module':>9} {'body':>9}  {'warm per 1,000 more':>20}")
    prev = None
    for r in rows:
        slope = "" if prev is None else \
            f"{(r['warm_s'] - prev['warm_s']) / (r['loaded'] - prev['loaded']) * 1e6:>17.1f} ms"
        print(f"  {r['loaded']:>7,} {r['cold_s'] * 1000:>7.0f}ms {r['warm_s'] * 1000:>7.1f}ms "
              f"{r['module_s'] * 1000:>7.1f}ms {r['body'] / 1024:>7.0f}KB  {slope:>20}")
        prev = r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (for a smoke run)")
    parser.add_argument("--no-scaling", action="store_true", help="only the main host")
    parser.add_argument("--scrapes", type=int, default=None, help="warm scrapes on the main host (default 1000)")
    parser.add_argument("--profile", action="store_true", help="also cProfile one cold scrape in-process")
    parser.add_argument("--loaded", action="store_true",
                        help="only the loaded-modules growth table (small host; 100 to 10,000 loaded)")
    parser.add_argument("--host", choices=("all", "main", "small"), default="all",
                        help="which host(s) to measure: the big one, the small real-Debian-like one, or both")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter the exporter runs under (default: this one); /usr/bin/python3 "
                             "measures it as the .deb runs it, with Debian's python3-* libraries (install "
                             "deploy/debian/control's Depends first)")
    args = parser.parse_args()
    global PYTHON
    PYTHON = args.python
    if os.geteuid() != 0:
        print("run as root: building the host's initramfs images needs mkinitramfs in a mount namespace",
              file=sys.stderr)
        return 2
    reps = 3 if args.quick else 5
    scrapes = args.scrapes or (200 if args.quick else 1000)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    load0 = os.getloadavg()[0]
    if PYTHON != sys.executable:
        log(f"the exporter runs under {PYTHON} ({subprocess.run([PYTHON, '--version'], capture_output=True, text=True).stdout.strip()})")
    byte_compile()
    if args.loaded:
        report_loaded(loaded_growth(benchhost.build(SMALL, log=log)))
        return 0
    if args.host in ("all", "small"):
        report_small(measure(SMALL, reps=reps, scrapes=scrapes, rss=True, log=log))
        if args.host == "small":
            return 0
    main_result = measure(MAIN, reps=reps, scrapes=scrapes, rss=True, log=log)
    imports = import_time()
    report_main(main_result, imports)
    if args.profile:
        profile_cold(benchhost.build(MAIN, log=log))
    if not args.no_scaling:
        results = []
        for shape in SCALING:
            results.append(main_result if shape == MAIN else
                           measure(shape, reps=max(2, reps - 2), scrapes=200, rss=False, log=log))
        report_scaling(results)
        report_growth(results)
        report_loaded(loaded_growth(benchhost.build(SMALL, log=log)))
    print(f"\nload average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end, on {os.cpu_count()} CPUs; "
          f"the exporter on {subprocess.run([PYTHON, '-c', 'import sys; print(sys.version.split()[0])'], capture_output=True, text=True).stdout.strip()} ({PYTHON})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
