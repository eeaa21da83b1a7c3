"""Command line: serve | metrics | textfile | check, with node_exporter-style flags."""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__, logfmt, process
from .config import ConfigError, load_config
from .formats.duration import DurationError, parse_duration
from .collectors import collectors
from .host.diskcache import DEFAULT_MAX_BYTES, DiskCache, default_dir
from .host.rootfs import HostFS
from .scrape import Scraper
from .scrape.scheduler import DEFAULT_TIMEOUT
from .web import DEFAULT_LISTEN

log = logging.getLogger("dkms_exporter")
# collectors that were renamed: the old flag still works
RENAMED_COLLECTORS = {"dpkg": "packages"}
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


DEFAULT_CACHE_DIR: str | None = None   # None: diskcache.default_dir() ($CACHE_DIRECTORY or /var/cache/...)


def _global_flags(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    cache_default = default_dir() if DEFAULT_CACHE_DIR is None else DEFAULT_CACHE_DIR
    p.add_argument("--path.rootfs", dest="rootfs", default=d("/"), metavar="DIR",
                   help="host root filesystem: every host path is read under it (default /)")
    p.add_argument("--path.procfs", dest="procfs", default=d(None), metavar="DIR",
                   help="procfs mount point (default: ROOTFS/proc)")
    p.add_argument("--path.sysfs", dest="sysfs", default=d(None), metavar="DIR",
                   help="sysfs mount point (default: ROOTFS/sys)")
    p.add_argument("--config.file", dest="config_file", default=d(None), metavar="FILE",
                   help="YAML: required_modules, ignored_modules, early_boot_modules")
    p.add_argument("--log.level", dest="log_level", default=d("info"), choices=sorted(LOG_LEVELS))
    p.add_argument("--cache.dir", dest="cache_dir", default=d(cache_default), metavar="DIR",
                   help="keep the parse results that cost (initramfs listings, module files, export tables, "
                   "depmod indexes) here between runs, keyed by file identity (default: $CACHE_DIRECTORY, "
                   "which systemd's CacheDirectory= sets, else /var/cache/dkms-exporter); it must be owned "
                   "by this user and writable by no one else")
    p.add_argument("--no-cache.dir", dest="cache_dir", action="store_const", const="", default=d(cache_default),
                   help="keep parse results in memory only (each metrics/textfile/check run parses again)")
    p.add_argument("--cache.dir.max-bytes", dest="cache_max_bytes", type=int, default=d(DEFAULT_MAX_BYTES),
                   metavar="BYTES", help=f"the oldest entries are removed beyond this size "
                   f"(default {DEFAULT_MAX_BYTES})")
    p.add_argument("--scrape.timeout", dest="scrape_timeout", type=duration, default=d(DEFAULT_TIMEOUT),
                   metavar="DURATION", help=f"a collector still running this long after the scrape began is "
                   f"reported as failed and the scrape is served without it (default {DEFAULT_TIMEOUT:g}s)")
    for c in collectors():
        p.add_argument(f"--collector.{c.name}", dest=f"collector_{c.name}", action="store_true",
                       default=d(None), help=f"enable the {c.name} collector (default: enabled)"
                       + (f"; {_first_line(c.doc)}" if c.doc else ""))
        p.add_argument(f"--no-collector.{c.name}", dest=f"collector_{c.name}", action="store_false",
                       default=d(None), help=argparse.SUPPRESS)
    for old, new in RENAMED_COLLECTORS.items():   # still accepted, so that old units keep working
        p.add_argument(f"--collector.{old}", dest=f"collector_{new}", action="store_true", default=d(None),
                       help=argparse.SUPPRESS)
        p.add_argument(f"--no-collector.{old}", dest=f"collector_{new}", action="store_false", default=d(None),
                       help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dkms-exporter",
        description="Prometheus exporter: will every out-of-tree kernel module work on the kernel this "
                    "host boots next?")
    parser.add_argument("--version", action="version", version=f"dkms-exporter {__version__}")
    _global_flags(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="{serve,metrics,textfile,check}")

    serve = sub.add_parser("serve", help="serve /metrics over HTTP (the default)")
    _global_flags(serve, suppress=True)
    _serve_flags(serve)
    metrics = sub.add_parser("metrics", help="print one scrape in the Prometheus text format")
    _global_flags(metrics, suppress=True)
    textfile = sub.add_parser("textfile", help="write one scrape atomically for node_exporter's textfile "
                                              "collector")
    _global_flags(textfile, suppress=True)
    textfile.add_argument("--output", required=True, metavar="FILE",
                          help="e.g. /var/lib/prometheus/node-exporter/dkms.prom")
    check = sub.add_parser("check", help="reboot gate: exit 0 ready, 1 not ready, 2 undecidable")
    _global_flags(check, suppress=True)
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument("--kernel", metavar="VERSION", help="check this installed kernel instead of the "
                                                          "boot targets")
    return parser


def _serve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN, metavar="[HOST]:PORT",
                   help=f"address to listen on (default {DEFAULT_LISTEN})")
    p.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", metavar="PATH")
    p.add_argument("--web.config.file", dest="web_config_file", default=None, metavar="FILE",
                   help="exporter-toolkit web config: TLS and basic auth (re-read when it changes)")


def duration(text: str) -> float:
    """--scrape.timeout: a Go duration ('30s', '1m30s', '500ms'; formats/duration.py) or plain
    seconds ('2'), > 0."""
    try:
        seconds = parse_duration(text, bare_seconds=True)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration such as 30s, 1m, 500ms: "
                                         f"{exc}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration such as 30s, 1m, 500ms")
    return seconds


def _first_line(doc: str) -> str:
    """A collector's help: its module docstring's first sentence after the flag name."""
    text = " ".join(doc.split())
    text = text.split(": ", 1)[1] if text.startswith("--collector.") and ": " in text else text
    return text.split(". ", 1)[0].rstrip(".")


def _enabled(args: argparse.Namespace) -> frozenset[str]:
    return frozenset(c.name for c in collectors() if getattr(args, f"collector_{c.name}", None) is not False)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `check | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(argv + ["serve"])
    logfmt.configure(LOG_LEVELS[args.log_level])
    try:
        config = load_config(args.config_file)
    except ConfigError as exc:
        print(f"dkms-exporter: {exc}", file=sys.stderr)
        return 2
    process.tune_malloc()  # this process parses big files (module ELF, images): see exporter/process.py
    store = DiskCache(args.cache_dir, args.cache_max_bytes) if args.cache_dir else None
    scraper = Scraper(HostFS(args.rootfs, args.procfs, args.sysfs), config, _enabled(args),
                      timeout=args.scrape_timeout, store=store)
    if args.command == "check":
        from .output.check import render_json, render_text
        scrape = scraper.scrape()
        return (render_json if args.json else render_text)(scrape, sys.stdout, args.kernel)
    if args.command == "metrics":
        from prometheus_client.exposition import generate_latest

        from .output.metrics import registry_for
        registry, _ = registry_for(scraper)
        sys.stdout.buffer.write(generate_latest(registry))
        return 0
    if args.command == "textfile":
        from .output.metrics import registry_for
        from .output.textfile import write_textfile
        registry, _ = registry_for(scraper)
        try:
            write_textfile(registry, args.output)
        except OSError as exc:
            print(f"dkms-exporter: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        return 0
    from .web.server import App, build_registry, make_http_server, serve
    web_config = None
    if args.web_config_file:
        from .web.config_file import WebConfigError, WebConfigProvider
        try:
            web_config = WebConfigProvider(args.web_config_file)
        except WebConfigError as exc:
            print(f"dkms-exporter: --web.config.file: {exc}", file=sys.stderr)
            return 2
    registry, _ = build_registry(scraper)
    try:
        server = make_http_server(args.listen, App(registry, args.telemetry_path, scraper), web_config)
    except (OSError, ValueError) as exc:
        print(f"dkms-exporter: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    log.info("starting dkms-exporter", extra={"version": __version__, "rootfs": args.rootfs})
    serve(server)
    return 0
