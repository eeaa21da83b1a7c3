"""Process tuning, applied once by the command line before a long-lived serve (never as a side
effect of building an object): glibc malloc options, and giving freed heap back after parsing.
"""

from __future__ import annotations

import ctypes

# glibc malloc, tuned for a long-lived process that parses big files now and then: buffers of
# MMAP_THRESHOLD and more (module files, decompressed ELF) are mmap'ed and unmapped when freed
# (glibc's default threshold grows to 32 MiB after the first big free, and then they stay in the
# heap), at most two arenas (not one per thread: request threads would each keep one), and free
# heap pages returned after a collector parsed files.  Measured in docs/performance.md: serve's
# steady RSS 60-64 -> 43 MiB on the benchmark host.  No-ops where there is no glibc (musl).
_M_ARENA_MAX, _M_MMAP_THRESHOLD = -8, -3

MMAP_THRESHOLD = 512 * 1024
"""Above the pieces a decoder reads and returns (exporter.formats.decompress CHUNK and its input
reads, 256 KiB), so those come from the heap and are reused.  At 128 KiB every piece was mapped,
faulted in and unmapped again: ~2,300 mmap/munmap pairs a cold scrape on the benchmark host, half
its system time (cold `metrics` 1.05 -> 0.83 s, peak RSS unchanged).  Buffers of 512 KiB and more
(large module files, whole decompressed modules) still go back to the kernel when freed."""
_libc = None


def tune_malloc() -> None:
    """Set glibc's malloc options once per process (see above)."""
    global _libc
    if _libc is not None:
        return
    try:
        libc = _libc_handle()
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_ARENA_MAX, 2)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        _libc = libc
    except (OSError, AttributeError):
        _libc = False


def _libc_handle() -> ctypes.CDLL:
    """glibc by its soname.  No ctypes.util.find_library fallback: it runs ldconfig (or gcc) in
    a subprocess, and a libc without this soname (musl) has no mallopt/malloc_trim to tune
    anyway; OSError here leaves the allocator as it is."""
    return ctypes.CDLL("libc.so.6")


def release_heap() -> None:
    """Return free heap pages to the kernel (glibc's malloc_trim), when tune_malloc() found glibc."""
    if _libc:
        _libc.malloc_trim(0)


