"""Keeps the tests from racing the clock: `python -m tests.check_waits [paths...]`.

Refuses, in every tests/**/*.py except the shared helper tests/support/waiting.py:

- a fixed sleep: `asyncio.sleep(<number other than 0>)` or `time.sleep(<number>)`, the
  number also as an UPPER_CASE constant or arithmetic of such (a computed pause, a
  variable, passes: a backoff, or hold()'s own body).
  Wait for a condition with `eventually()`, yield with `settle()`, or let time pass on
  purpose with `hold()` (tests/support/waiting.py);
- an assertion that something was fast: `assert <clock difference> < bound` (or `<=`),
  where the difference involves time.monotonic()/time()/perf_counter() or a variable
  assigned from one. Wait with a generous bound instead; speed figures belong in bench/;
- a hypothesis deadline: `settings(deadline=<number or timedelta>)` fails an example that
  is slow, which a loaded machine makes any example (tests/conftest.py turns it off).

Prints one line per finding and exits with 1 when there is any; a path that is not
there, or cannot be read as Python source, is a usage error (exit 2).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ALLOWED = {TESTS / "support" / "waiting.py"}
CLOCKS = {"monotonic", "monotonic_ns", "time", "time_ns", "perf_counter", "perf_counter_ns"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _fixed(node: ast.expr) -> bool:
    """An expression whose value is fixed: literals, UPPER_CASE names, and arithmetic."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int | float) and not isinstance(node.value, bool)
    if isinstance(node, ast.Name):
        return node.id.isupper()
    if isinstance(node, ast.Attribute):  # module.CONSTANT
        return node.attr.isupper()
    if isinstance(node, ast.UnaryOp):
        return _fixed(node.operand)
    if isinstance(node, ast.BinOp):
        return _fixed(node.left) and _fixed(node.right)
    return False


def _number(node: ast.expr) -> float | None:
    """The value of a number literal (also negated), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _number(node.operand)
        return None if inner is None else -inner
    value = node.value if isinstance(node, ast.Constant) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


class _Module:
    """What a module imported from `time` and `asyncio` under its own names."""

    def __init__(self, tree: ast.Module) -> None:
        self.sleeps: dict[str, str] = {}  # local name -> "asyncio" / "time"
        self.clocks: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("asyncio", "time"):
                for alias in node.names:
                    local = alias.asname or alias.name
                    if alias.name == "sleep":
                        self.sleeps[local] = node.module
                    elif node.module == "time" and alias.name in CLOCKS:
                        self.clocks.add(local)

    def sleep_module(self, call: ast.Call) -> str | None:
        """The module ("asyncio" or "time") whose sleep() `call` calls, else None."""
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr == "sleep":
            if isinstance(func.value, ast.Name) and func.value.id in ("asyncio", "time"):
                return func.value.id
        if isinstance(func, ast.Name):
            return self.sleeps.get(func.id)
        return None

    def is_clock(self, node: ast.AST) -> bool:
        """`node` is a call such as time.monotonic()."""
        if not isinstance(node, ast.Call):
            return False
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in CLOCKS:
            return isinstance(func.value, ast.Name) and func.value.id == "time"
        return isinstance(func, ast.Name) and func.id in self.clocks


def _fixed_sleeps(module: _Module, tree: ast.Module, path: str) -> Iterator[Finding]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        kind = module.sleep_module(node)
        seconds = _number(node.args[0])
        if kind is None or (kind == "asyncio" and seconds == 0):
            continue
        # A named constant (UPPER_CASE) or an expression of literals is a fixed sleep all
        # the same (only literals were caught, found in review); a computed pause (a
        # variable: a backoff, hold()'s own body) is not.
        if seconds is None and not _fixed(node.args[0]):
            continue
        shown = f"{seconds:g}" if seconds is not None else ast.unparse(node.args[0])
        yield Finding(
            path,
            node.lineno,
            f"fixed sleep {kind}.sleep({shown}): wait for a condition with eventually(), "
            "yield with settle(), or let time pass on purpose with hold()",
        )


def _deadlines(tree: ast.Module, path: str) -> Iterator[Finding]:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in ("settings", "register_profile"):
            continue
        for keyword in node.keywords:
            value = keyword.value
            if keyword.arg == "deadline" and not (
                isinstance(value, ast.Constant) and value.value is None
            ):
                yield Finding(
                    path,
                    node.lineno,
                    "hypothesis deadline: a speed assertion per example; leave it None",
                )


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function; a nested one is seen on its own and as part of the enclosing one."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


class _Durations:
    """Which expressions of one function are clock readings and clock differences."""

    def __init__(self, module: _Module, function: ast.AST) -> None:
        self.module = module
        self.clock_names: set[str] = set()
        self.duration_names: set[str] = set()
        assignments = [n for n in ast.walk(function) if isinstance(n, ast.Assign | ast.AnnAssign)]
        for _ in range(2):  # a second pass sees names assigned from names found in the first
            for node in assignments:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                if node.value is None:
                    continue
                if self.is_clock(node.value):
                    self.clock_names |= names
                elif self.is_duration(node.value):
                    self.duration_names |= names

    def is_clock(self, node: ast.AST) -> bool:
        return self.module.is_clock(node) or (
            isinstance(node, ast.Name) and node.id in self.clock_names
        )

    def is_duration(self, node: ast.AST) -> bool:
        """`node` contains a clock difference, or a name holding one."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in self.duration_names:
                return True
            if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Sub):
                if any(self.is_clock(side) for side in ast.walk(sub)):
                    return True
        return False


def _speed_asserts(module: _Module, tree: ast.Module, path: str) -> Iterator[Finding]:
    for function in _functions(tree):
        durations = _Durations(module, function)
        for node in ast.walk(function):
            if not isinstance(node, ast.Assert):
                continue
            for compare in (n for n in ast.walk(node.test) if isinstance(n, ast.Compare)):
                if _bounds_from_above(compare, durations):
                    yield Finding(
                        path,
                        node.lineno,
                        "assertion on a wall-clock duration: wait with a generous bound "
                        "instead (eventually()), and measure speed in bench/",
                    )
                    break


def _bounds_from_above(compare: ast.Compare, durations: _Durations) -> bool:
    """Some `duration < x`, `duration <= x`, `x > duration` or `x >= duration` in it."""
    operands = [compare.left, *compare.comparators]
    for op, left, right in zip(compare.ops, operands, operands[1:], strict=False):
        if isinstance(op, ast.Lt | ast.LtE) and durations.is_duration(left):
            return True
        if isinstance(op, ast.Gt | ast.GtE) and durations.is_duration(right):
            return True
    return False


def check_source(source: str, path: str = "<string>") -> list[Finding]:
    """Every fixed sleep and wall-clock assertion in one module's source."""
    tree = ast.parse(source, filename=path)
    module = _Module(tree)
    found = {
        *_fixed_sleeps(module, tree, path),
        *_speed_asserts(module, tree, path),
        *_deadlines(tree, path),
    }
    return sorted(found, key=lambda f: (f.line, f.message))


class Unreadable(Exception):
    """A path given is not there, or a file cannot be read as Python source."""


def check_paths(paths: Iterable[Path]) -> list[Finding]:
    findings: list[Finding] = []
    for path in paths:
        if not path.exists():
            raise Unreadable(f"{path}: no such file or folder")
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            if file.resolve() in ALLOWED:
                continue
            try:
                findings += check_source(file.read_text(encoding="utf-8"), _shown(file))
            except (OSError, UnicodeDecodeError, SyntaxError) as exc:
                raise Unreadable(f"{_shown(file)}: {exc}") from exc
    return findings


def _shown(file: Path) -> str:
    """The path relative to the working directory when it is under it."""
    try:
        return str(file.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(file)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        findings = check_paths([Path(a) for a in args] or [TESTS])
    except Unreadable as exc:
        print(f"python -m tests.check_waits: cannot check {exc}", file=sys.stderr)
        return 2
    for finding in findings:
        print(finding)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
