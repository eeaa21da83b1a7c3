"""Parse results <-> plain JSON values, for the persistent cache (exporter/host/diskcache.py).

Why not pickle: the cache directory outlives the process and is a file on disk, and unpickling
runs whatever the file says.  This codec only ever builds the types it was given: frozen
dataclasses and exception classes named in its allowlist, plus None, bool, int, float, str,
bytes, tuple, list, frozenset and str-keyed dicts.  Anything else in a file is a ValueError, so a
damaged or foreign file can at worst be refused, never run.

Tables of strings (a kernel config, modules.dep's paths and dependencies, modules.builtin) have
compact forms: a str -> str dict ("ds"), a str -> tuple-of-str dict ("dt") and a frozenset of
str ("ss").  They decode in C (sys.intern checks each string) instead of a call per element: a
real kernel's modules.dep was ~17,000 such calls, most of a timer run's kernel collector.  The
strings are interned as the parsers intern them, so that kernels share their module paths and
config option names however the table was obtained (six kernel configs: 4.8 MiB as plain
strings, 2.2 MiB interned).

``schema`` is a fingerprint of the allowlisted types' fields: when a dataclass gains, loses or
retypes a field, files written before no longer match and are ignored (then rewritten).  When a
parser's answer for the same bytes changes (it refuses what it accepted, or names an error
otherwise), its codec's ``revision`` is raised, for the same effect: a damaged file cached as
parsed before the upgrade must not keep its old answer until it changes.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import sys
from typing import Any, Callable

VERSION = 2   # the tagging below; bump when it changes
_intern = sys.intern


class Codec:
    """Encodes values built from ``types`` (dataclasses), ``errors`` (exception class -> the
    names of its constructor arguments, read back from its attributes) and ``custom`` (class ->
    (to_json, from_json), for containers such as a dict subclass that is not a dataclass:
    to_json returns plain JSON values, and from_json must check what it is given, because it
    gets the file's JSON as it is (no tagging, so that a 25,000-row table decodes quickly))."""

    def __init__(self, name: str, types: tuple[type, ...] = (),
                 errors: dict[type, tuple[str, ...]] | None = None,
                 custom: dict[type, tuple[Callable[[Any], Any], Callable[[Any], Any]]] | None = None,
                 revision: int = 1) -> None:
        self.name = name
        self._types = {t.__qualname__: t for t in types}
        # each type's init fields, looked up once here, not per value (dataclasses.fields()
        # per object was a third of decoding a cached table back)
        self._fields = {q: tuple(f.name for f in dataclasses.fields(t) if f.init) for q, t in self._types.items()}
        self._field_sets = {q: frozenset(names) for q, names in self._fields.items()}
        self._errors = {t.__qualname__: (t, args) for t, args in (errors or {}).items()}
        self._custom = {t.__qualname__: (t, fns) for t, fns in (custom or {}).items()}
        for t in types:
            if not dataclasses.is_dataclass(t):
                raise TypeError(f"{t.__qualname__} is not a dataclass")
        shape = [VERSION, name] + ([revision] if revision != 1 else [])
        shape += [(q, [(f.name, str(f.type)) for f in dataclasses.fields(t)]) for q, t in sorted(self._types.items())]
        shape += [(q, list(args)) for q, (_, args) in sorted(self._errors.items())]
        shape += [(q, fns[0].__qualname__) for q, (_, fns) in sorted(self._custom.items())]
        self.schema = f"{name}-{hashlib.sha256(repr(shape).encode()).hexdigest()[:16]}"

    # -- encode ------------------------------------------------------------------------------
    def encode(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        kind = type(value).__qualname__
        if kind in self._custom and type(value) is self._custom[kind][0]:
            return {"c": kind, "v": self._custom[kind][1][0](value)}
        if kind in self._types and type(value) is self._types[kind]:
            return {"c": kind, "f": {name: self.encode(getattr(value, name)) for name in self._fields[kind]}}
        if kind in self._errors and type(value) is self._errors[kind][0]:
            return {"c": kind, "a": {a: self.encode(getattr(value, a)) for a in self._errors[kind][1]}}
        if isinstance(value, bytes):
            return {"b": base64.b64encode(value).decode("ascii")}
        if isinstance(value, tuple):
            return {"t": [self.encode(v) for v in value]}
        if isinstance(value, frozenset):
            if all(type(v) is str for v in value):
                return {"ss": sorted(value)}
            return {"s": [self.encode(v) for v in value]}
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if type(value) is dict and all(isinstance(k, str) for k in value):
            if all(type(v) is str for v in value.values()):
                return {"ds": value}
            if value and all(type(v) is tuple and all(type(x) is str for x in v) for v in value.values()):
                return {"dt": {k: list(v) for k, v in value.items()}}
            return {"d": {k: self.encode(v) for k, v in value.items()}}
        raise TypeError(f"{self.name}: cannot encode a {kind}")

    # -- decode ------------------------------------------------------------------------------
    def decode(self, data: Any) -> Any:
        """The value ``encode`` was given; ValueError for anything it would not have written."""
        if data is None or isinstance(data, (bool, int, float, str)):
            return data
        if isinstance(data, list):
            return [self.decode(v) for v in data]
        if not isinstance(data, dict) or len(data) not in (1, 2):
            raise ValueError(f"{self.name}: unexpected {type(data).__name__}")
        if "c" in data:
            return self._decode_class(data)
        (tag, body), = data.items()
        if tag == "b" and isinstance(body, str):
            return base64.b64decode(body.encode("ascii"), validate=True)
        if tag == "t" and isinstance(body, list):
            return tuple(self.decode(v) for v in body)
        if tag == "s" and isinstance(body, list):
            return frozenset(self.decode(v) for v in body)
        if tag == "d" and isinstance(body, dict):
            return {k: self.decode(v) for k, v in body.items()}
        try:
            if tag == "ds" and isinstance(body, dict):
                return dict(zip(map(_intern, body), map(_intern, body.values())))
            if tag == "dt" and isinstance(body, dict):
                if all(type(v) is list for v in body.values()):
                    return {_intern(k): tuple(map(_intern, v)) for k, v in body.items()}
                raise ValueError(f"{self.name}: a 'dt' value is not a list")
            if tag == "ss" and isinstance(body, list):
                return frozenset(map(_intern, body))
        except TypeError:   # sys.intern takes nothing but a str
            raise ValueError(f"{self.name}: a {tag!r} table holds something other than strings") from None
        raise ValueError(f"{self.name}: unknown tag {tag!r}")

    def _decode_class(self, data: dict) -> Any:
        kind = data["c"]
        if len(data) != 2:
            raise ValueError(f"{self.name}: {kind!r} without a body")
        (tag, body), = ((k, v) for k, v in data.items() if k != "c")
        if tag == "v" and kind in self._custom:
            return self._custom[kind][1][1](body)
        if tag == "f" and kind in self._types and isinstance(body, dict):
            cls = self._types[kind]
            names = self._field_sets[kind]
            if body.keys() != names:
                raise ValueError(f"{self.name}: {kind} fields {sorted(body)} are not {sorted(names)}")
            return cls(**{k: self.decode(v) for k, v in body.items()})
        if tag == "a" and kind in self._errors and isinstance(body, dict):
            cls, args = self._errors[kind]
            if set(body) != set(args):
                raise ValueError(f"{self.name}: {kind} arguments {sorted(body)} are not {sorted(args)}")
            return cls(**{k: self.decode(v) for k, v in body.items()})
        raise ValueError(f"{self.name}: {kind!r} is not a type this cache holds")

