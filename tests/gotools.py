"""Reference programs in Go (tests/go/NAME/main.go), built once with Debian's Go toolchain.

Some behaviour the exporter copies is defined by Go code: time.ParseDuration for durations,
go-logfmt's decoder for log lines.  The test asks that code itself rather than a Python
re-reading of it.  Binaries are cached under the test cache, keyed by the program's source and
the toolchain's version; Debian's Go packages are built in GOPATH mode (no module download).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

from conftest import require_tool

GO_SOURCES = Path(__file__).resolve().parent / "go"
DEBIAN_GOPATH = "/usr/share/gocode"          # where golang-*-dev packages put their sources


def _cache() -> Path:
    base = os.environ.get("DKMS_EXPORTER_TEST_CACHE") or str(Path.home() / ".cache" / "dkms-exporter-tests")
    return Path(base) / "go"


def go_program(name: str) -> Path:
    """The built tests/go/<name>: a path to run."""
    go = require_tool("go")
    source = GO_SOURCES / name
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": DEBIAN_GOPATH, "CGO_ENABLED": "0",
           "GOFLAGS": "", "GOCACHE": str(_cache() / "build-cache")}
    version = subprocess.run([go, "version"], capture_output=True, text=True, check=True, env=env).stdout
    digest = hashlib.sha256(version.encode())
    for f in sorted(source.glob("*.go")):
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    binary = _cache() / f"{name}-{digest.hexdigest()[:16]}"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent) as tmp:
        built = Path(tmp) / name
        r = subprocess.run([go, "build", "-o", str(built), "."], cwd=source, env=env, capture_output=True,
                           text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"go build {source} failed:\n{r.stderr}")
        os.replace(built, binary)
    return binary
