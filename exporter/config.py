"""--config.file: which modules the operator requires, ignores, or needs in early boot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """The configuration file is unusable; the exporter refuses to start with it."""


def modname(name: str) -> str:
    """Kernel module name as depmod/lsmod spell it: '-' and '_' are the same."""
    return name.replace("-", "_")


@dataclass(frozen=True)
class Config:
    required_modules: frozenset[str] = field(default_factory=frozenset)
    ignored_modules: frozenset[str] = field(default_factory=frozenset)
    early_boot_modules: frozenset[str] = field(default_factory=frozenset)


_KEYS = {"required_modules", "ignored_modules", "early_boot_modules"}


def load_config(path: str | Path | None) -> Config:
    if path is None:
        return Config()
    import yaml   # only with --config.file: PyYAML is ~40 ms of a cold run's imports

    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {sorted(_KEYS)}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)} (known: {sorted(_KEYS)})")
    values = {}
    for key in _KEYS:
        items = raw.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise ConfigError(f"{path}: {key} must be a list of module names")
        values[key] = frozenset(modname(i) for i in items)
    return Config(**values)
