"""dkms.conf, read without running bash.

dkms sources dkms.conf as bash with ``$kernelver``, ``$arch``, ``$kernel_source_dir`` set.
Almost every real file is a list of plain assignments; some assign inside ``if`` blocks
(v4l2loopback sets BUILD_EXCLUSIVE_KERNEL from the kernel config).  We evaluate plain
assignments with variable expansion and integer arithmetic (``i=$((i+1))``, the counter
lttng-modules indexes its 54 modules with), and mark every variable assigned under a condition,
in a function, or from a command substitution as *dynamic*: its value here is a best guess
and the readiness model must not build a verdict on it alone.
"""

from __future__ import annotations

import ast
import functools
import operator
import re
import shlex
from dataclasses import dataclass, field

MAX_CONF_BYTES = 256 * 1024

_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\]]*)\])?=(.*)$", re.S)
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:\[([0-9]+)\])?(?:(:?[-=+?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_ARITH = re.compile(r"\$\(\(((?:[^()]|\([^()]*\))*)\)\)")   # $(( expr )), one level of inner parentheses
_OPENERS = {"if", "case", "for", "while", "until", "select", "{"}
_CLOSERS = {"fi", "esac", "done", "}"}


class DkmsConfError(ValueError):
    """dkms.conf cannot be read as a list of assignments (unbalanced quotes, no name...)."""


@dataclass
class DkmsConf:
    """The variables of one dkms.conf for one (kernel, arch) evaluation."""
    values: dict[str, dict[int, str]] = field(default_factory=dict)
    dynamic: set[str] = field(default_factory=set)
    open_blocks: int = 0     # if/case/for/function blocks still open at the end of the file
    conditional: set[tuple[str, int]] = field(default_factory=set)   # elements last assigned dynamically

    def get(self, name: str, index: int = 0, default: str = "") -> str:
        return self.values.get(name, {}).get(index, default)

    def array(self, name: str) -> list[str]:
        arr = self.values.get(name, {})
        return [arr[i] for i in sorted(arr)]

    def size(self, name: str) -> int:
        """``${#NAME[@]}``: how many elements are set (bash arrays are sparse), what dkms's
        read_conf loops to; not the highest index + 1 (``NAME[10**12]=x`` is one element)."""
        return len(self.values.get(name, {}))

    @property
    def package_name(self) -> str:
        return self.get("PACKAGE_NAME")

    @property
    def package_version(self) -> str:
        return self.get("PACKAGE_VERSION")

    @property
    def autoinstall(self) -> bool:
        return self.get("AUTOINSTALL").lower().startswith("y")

    def dest_module_names(self) -> list[str]:
        """DEST_MODULE_NAME[i], defaulting as dkms's read_conf does (Debian 3.0.10)."""
        count = max(self.size(n) for n in ("BUILT_MODULE_NAME", "BUILT_MODULE_LOCATION",
                                            "DEST_MODULE_NAME", "DEST_MODULE_LOCATION"))
        names = []
        for i in range(count):
            built = self.get("BUILT_MODULE_NAME", i)
            if not built and self.size("DEST_MODULE_LOCATION") == 1:
                built = self.package_name
            dest = self.get("DEST_MODULE_NAME", i) or built
            if dest:
                names.append(dest)
        return names

    def conditional_module_names(self) -> set[str]:
        """The dest_module_names() whose BUILT_/DEST_MODULE_NAME element was assigned under a
        condition (lttng's modules that need a kernel option): dkms may not have built them."""
        out = set()
        for i, built in self.values.get("BUILT_MODULE_NAME", {}).items():
            if ("BUILT_MODULE_NAME", i) in self.conditional or ("DEST_MODULE_NAME", i) in self.conditional:
                out.add(self.get("DEST_MODULE_NAME", i) or built)
        return out

    def dest_module_location(self, index: int) -> str:
        return self.get("DEST_MODULE_LOCATION", index)


def parse_dkms_conf(text: str, env: dict[str, str]) -> DkmsConf:
    """Evaluate the plain assignments of a dkms.conf with ``env`` (kernelver, arch, ...) set."""
    conf = DkmsConf()
    scope: dict[str, str] = dict(env)
    depth = 0
    for lineno, line in _logical_lines_of(text):
        try:
            words, raw_words = _words(line)
        except ValueError as exc:
            raise DkmsConfError(f"line {lineno}: {exc}") from None
        if not words:
            continue
        first = words[0].rstrip(";")
        if first in _OPENERS or re.match(r"^[A-Za-z_][A-Za-z0-9_]*\(\)$", first) or (
                len(words) > 1 and words[1].startswith("()")) or first == "function":
            depth += _count_blocks(words)
            continue
        if first in _CLOSERS or first in ("then", "else", "elif", "do", "esac", ";;"):
            depth += _count_blocks(words)
            depth = max(depth, 0)
            continue
        for raw in raw_words:
            m = _ASSIGN.match(raw)
            if not m:
                break  # a command (., source, echo...): its side effects are unknown to us
            name, index, value = m.group(1), m.group(2), m.group(3)
            dynamic = depth > 0 or _needs_a_shell(value, scope, conf)
            _assign(conf, scope, name, index, _arithmetic(value, scope, conf), dynamic)
    conf.open_blocks = depth
    return conf


def _needs_a_shell(value: str, scope: dict[str, str], conf: DkmsConf) -> bool:
    """Only bash can tell this value: a command substitution, arithmetic beyond integers, or a
    variable that is itself dynamic."""
    if "`" in value or "$(" in _ARITH.sub("", value):
        return True
    if any(_arith_value(_expand(expr, scope, conf), scope) is None for expr in _ARITH.findall(value)):
        return True
    return any((v.group(1) or v.group(5)) in conf.dynamic for v in _VAR.finditer(value))


@functools.lru_cache(maxsize=2048)
def conf_refusal(text: str) -> str | None:
    """Why dkms would not take this dkms.conf as one, or None.  dkms's read_conf refuses a
    conf without PACKAGE_NAME or PACKAGE_VERSION ("Error! Bad conf file.": an empty or
    overwritten file); one that ends inside an if/case/function block is cut short (bash stops
    sourcing it at the syntax error, so dkms would see only what comes before).  Cached by the
    text: a pure function of it, asked once per registered module a scrape."""
    try:
        conf = parse_dkms_conf(text, {})
    except DkmsConfError as exc:
        return str(exc)
    missing = [n for n in ("PACKAGE_NAME", "PACKAGE_VERSION") if n not in conf.values]
    if missing:
        return f"no {' or '.join(missing)} directive: dkms refuses it (\"Bad conf file\")"
    if conf.open_blocks > 0:
        return "it ends inside an if/case/function block: cut short, bash stops reading it there"
    return None


def _assign(conf: DkmsConf, scope: dict[str, str], name: str, index: str | None, raw: str,
            dynamic: bool) -> None:
    if raw.startswith("(") and index is None:
        try:  # the line splits (a '#' ends it), its array body may not: E=(""#"
            items = _split(raw.strip("()"))
        except ValueError as exc:
            raise DkmsConfError(f"array {name}: {exc}") from None
        conf.values[name] = {i: _expand(v, scope, conf) for i, v in enumerate(items)}
    else:
        try:
            words = _split(raw) if raw else [""]
        except ValueError:
            words = [raw]
        value = _expand(" ".join(words) if words else "", scope, conf)
        try:
            i = int(_expand(index, scope, conf)) if index is not None else 0
        except ValueError:
            i, dynamic = 0, True
        if name in conf.dynamic and not dynamic and i in conf.values.get(name, {}):
            pass  # a later unconditional assignment settles it
        conf.values.setdefault(name, {})[i] = value
        if index is None:
            scope[name] = value
        (conf.conditional.add if dynamic else conf.conditional.discard)((name, i))
    if dynamic:
        conf.dynamic.add(name)
    elif index is None:
        conf.dynamic.discard(name)   # the whole variable assigned again: settled (one element is not)


# A dkms.conf is evaluated once per (kernel, arch) it was built for: a new process evaluates each
# one for every kernel (72 evaluations on the benchmark's big host, ~1.7 ms each, nearly all of it
# shlex).  The lexing does not depend on the kernel, so it is done once per text, line and value;
# only the expansion is per evaluation.  Pure functions of strings: lru_cache is safe, and an
# error is not cached (it is raised again, as it would be).

@functools.lru_cache(maxsize=256)
def _logical_lines_of(text: str) -> tuple[tuple[int, str], ...]:
    return tuple(_logical_lines(text))


@functools.lru_cache(maxsize=4096)
def _words(line: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(shlex words, raw words keeping their quotes) of one logical line."""
    return tuple(shlex.split(line, comments=True, posix=True)), tuple(_raw_words(line))


@functools.lru_cache(maxsize=4096)
def _split(raw: str) -> tuple[str, ...]:
    return tuple(shlex.split(raw, posix=True))


def _expand(value: str, scope: dict[str, str], conf: DkmsConf) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(5)
        current = scope.get(name)
        if current is None and name in conf.values:
            current = conf.get(name, int(m.group(2) or 0))
        op, word = m.group(3), m.group(4)
        if op in (":-", "-") and not current:
            return word or ""
        return current or ""
    return _VAR.sub(repl, value)


def _quotient(a: int, b: int) -> int:
    """bash's integer division: truncated toward zero (Python's // floors), exactly."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


_ARITH_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: _quotient, ast.Mod: lambda a, b: a - b * _quotient(a, b)}


def _arith_value(expr: str, scope: dict[str, str]) -> int | None:
    """bash's integer arithmetic on ``expr`` (+ - * / %, parentheses, integers, variables: unset
    is 0, as in bash), None for anything else (a string, a call, division by zero, > 64 bits,
    and ``++``/``--``, which bash reads as increments, not as two signs)."""
    if "++" in expr or "--" in expr:
        return None
    try:
        tree = ast.parse(expr.strip() or "0", mode="eval")
    except (SyntaxError, ValueError):
        return None

    def value(node: ast.AST) -> int | None:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name):
            text = scope.get(node.id, "0") or "0"
            return int(text) if re.fullmatch(r"-?[0-9]{1,18}", text) else None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = value(node.operand)
            return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH_OPS:
            a, b = value(node.left), value(node.right)
            if a is None or b is None or (b == 0 and isinstance(node.op, (ast.Div, ast.Mod))):
                return None
            result = _ARITH_OPS[type(node.op)](a, b)
            return result if abs(result) < 2 ** 63 else None
        return None

    return value(tree.body)


def _arithmetic(value: str, scope: dict[str, str], conf: DkmsConf) -> str:
    """``value`` with each $(( expr )) it can evaluate replaced by the integer."""
    if "$((" not in value:
        return value

    def repl(m: re.Match[str]) -> str:
        result = _arith_value(_expand(m.group(1), scope, conf), scope)
        return m.group(0) if result is None else str(result)
    return _ARITH.sub(repl, value)


def _count_blocks(words: list[str]) -> int:
    delta = 0
    for w in words:
        w = w.rstrip(";")
        if w in _OPENERS or w.endswith("()"):
            delta += 1
        elif w in _CLOSERS:
            delta -= 1
    return delta


def _unquoted(line: str):
    """(char, active) for each char: active when it is outside quotes and not backslash-escaped."""
    quote, escaped = None, False
    for ch in line:
        if escaped:
            escaped = False
            yield ch, False
        elif ch == "\\" and quote != "'":
            escaped = True
            yield ch, False
        elif quote:
            if ch == quote:
                quote = None
            yield ch, False
        elif ch in "\"'":
            quote = ch
            yield ch, False
        else:
            yield ch, True


def _raw_words(line: str) -> list[str]:
    """Split on unquoted blanks but keep the quotes, so assignments keep their raw values."""
    words, current, parens = [], [], 0
    for ch, active in _unquoted(line):
        if active and ch in "()":
            parens += 1 if ch == "(" else -1
        if active and ch in " \t\n" and parens <= 0:
            if current:
                words.append("".join(current))
                current = []
            continue
        if active and ch == "#" and not current:
            break
        current.append(ch)
    if current:
        words.append("".join(current))
    return words


def _logical_lines(text: str):
    """(line number, line) with backslash continuations and multi-line quotes joined."""
    pending = ""
    start = 0
    continued = False
    for number, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        pending = line if not pending else (pending + line if continued else f"{pending}\n{line}")
        continued = pending.endswith("\\")
        if continued:  # bash drops backslash-newline entirely
            pending = pending[:-1]
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:
            if number - start > 200:
                raise DkmsConfError(f"line {start}: unterminated quote") from None
            continue
        for part in _split_semicolons(pending):
            yield start, part
        pending = ""
    if pending.strip():
        raise DkmsConfError(f"line {start}: unterminated quote")


def _split_semicolons(line: str) -> list[str]:
    """Split ``a=1; b=2`` and ``if x; then`` on unquoted semicolons."""
    parts, current = [], []
    for ch, active in _unquoted(line):
        if active and ch == "#" and (not current or current[-1] in " \t"):
            break
        if active and ch == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip() and p.strip() != ";"]


SOURCE_TREE = "/usr/src"  # dkms's source_tree: where /usr/src/<module>-<version> trees live


@functools.lru_cache(maxsize=2048)
def evaluate_conf(text: str, kernel: str, arch: str, tree: str, install_tree: str,
                  module: str, version: str) -> DkmsConf:
    """dkms.conf as dkms would evaluate it for one kernel (read_conf's environment)."""
    env = {"kernelver": kernel, "arch": arch, "dkms_tree": tree, "source_tree": SOURCE_TREE,
           "install_tree": install_tree, "kernel_source_dir": f"{install_tree}/{kernel}/build",
           "module": module, "module_version": version}
    return parse_dkms_conf(text, env)
