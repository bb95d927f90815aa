"""The shape of the package: longest files and functions, import cycles, and imports against the layers.

Usage::

    python scripts/code_shape.py [--top 5] [--root xmr]

Layers, from the top (a module may import its own layer's package and anything below it)::

    3  xmr.app, xmr.cli, xmr.__main__
    2  xmr.index, xmr.models, xmr.eval, xmr.labels, xmr.viz, xmr.train
    1  xmr.media, xmr.data
    0  xmr (the package root), xmr.errors, xmr.paths, xmr.config

Imports inside layer 2 are listed (``xmr.train`` -> ``xmr.models`` is the designed one) and must
not make the packages a circle; the package root's ``xmr.load_model`` may reach ``xmr.models`` on
call (importing ``xmr`` stays light); nothing below ``xmr.app`` imports gradio. An import counts
where it is written: at module level (run when the module is imported; cycles there break
imports) or inside a function (run on call).
Imports under ``if TYPE_CHECKING:`` are for annotations only and never create a cycle.

:func:`analyse` returns the same facts as data; ``tests/test_layering.py`` asserts on it.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYERS: dict[str, int] = {
    "xmr.app": 3, "xmr.cli": 3, "xmr.__main__": 3,
    "xmr.index": 2, "xmr.models": 2, "xmr.eval": 2, "xmr.labels": 2, "xmr.viz": 2, "xmr.train": 2,
    "xmr.media": 1, "xmr.data": 1,
    "xmr": 0, "xmr.errors": 0, "xmr.paths": 0, "xmr.config": 0,
}
# sideways imports inside one layer that the design names: (importer package, imported package)
ALLOWED_SIDEWAYS = {("xmr.train", "xmr.models")}
# upward imports that run only on call: the root's public ``xmr.load_model`` facade
ALLOWED_LAZY_UPWARD = {("xmr", "xmr.models")}
UI_PACKAGES = ("gradio",)

MODULE, FUNCTION, TYPING = "module", "function", "typing"


@dataclass(frozen=True)
class Import:
    """``importer`` imports ``target`` (an xmr module, or a third-party top-level name) at ``line``."""

    importer: str
    target: str
    line: int
    where: str  # MODULE, FUNCTION or TYPING


@dataclass
class Shape:
    files: list[tuple[str, int]]  # (path, lines), longest first
    functions: list[tuple[str, int]]  # ("path:qualified.name", lines), longest first
    imports: list[Import]
    cycles: dict[str, list[list[str]]] = field(default_factory=dict)  # where -> strongly connected sets
    package_cycles: list[list[str]] = field(default_factory=list)  # among xmr.<package>, any import
    back_edges: list[Import] = field(default_factory=list)  # a lower layer importing a higher one
    sideways: list[Import] = field(default_factory=list)  # layer-2 packages importing each other
    ui_imports: list[Import] = field(default_factory=list)  # gradio below xmr.app


def package_of(module: str) -> str:
    """The unit the layers speak of: ``xmr.models.checkpoint`` -> ``xmr.models``; ``xmr`` -> ``xmr``."""
    parts = module.split(".")
    return ".".join(parts[:2])


def layer_of(module: str) -> int | None:
    return LAYERS.get(package_of(module))


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    """Imports with where they run, and function lengths with qualified names."""

    def __init__(self, module: str, is_package: bool, known: set[str]):
        self.module, self.is_package, self.known = module, is_package, known
        self.imports: list[tuple[str, int, str]] = []
        self.functions: list[tuple[str, int]] = []
        self._scope: list[str] = []
        self._in_function = 0
        self._typing = 0

    def _where(self) -> str:
        if self._typing:
            return TYPING
        return FUNCTION if self._in_function else MODULE

    def _add(self, target: str, line: int) -> None:
        self.imports.append((target, line, self._where()))

    def _resolve(self, name: str) -> str:
        """The longest known xmr module that ``name`` starts with (``xmr.a.b.func`` -> ``xmr.a.b``)."""
        parts = name.split(".")
        for n in range(len(parts), 0, -1):
            candidate = ".".join(parts[:n])
            if candidate in self.known:
                return candidate
        return name

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            name = alias.name
            self._add(self._resolve(name) if name.split(".")[0] == "xmr" else name.split(".")[0], node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base_parts = self.module.split(".")
            if not self.is_package:
                base_parts = base_parts[:-1]
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        if base.split(".")[0] != "xmr":
            self._add(base.split(".")[0], node.lineno)
            return
        for alias in node.names:
            full = f"{base}.{alias.name}"
            self._add(full if full in self.known else self._resolve(base), node.lineno)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._typing += 1
            for child in node.body:
                self.visit(child)
            self._typing -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._scope.append(node.name)
        self.functions.append((".".join(self._scope), node.end_lineno - node.lineno + 1))
        self._in_function += 1
        self.generic_visit(node)
        self._in_function -= 1
        self._scope.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scope.append(node.name)
        self.generic_visit(node)
        self._scope.pop()


def _cycles(modules: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of more than one module (Tarjan), each sorted, sorted by first name."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for m in modules:
        if m not in index:
            visit(m)
    return sorted(out)


def analyse(root: Path = ROOT / "xmr") -> Shape:
    """Every fact the report prints, for the package at ``root``."""
    paths = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    names = {p: _module_name(p, root) for p in paths}
    known = set(names.values())
    files, functions, imports = [], [], []
    for path, module in names.items():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(root.parent).as_posix()
        files.append((rel, len(text.splitlines())))
        collector = _Collector(module, path.name == "__init__.py", known)
        collector.visit(ast.parse(text, filename=str(path)))
        functions += [(f"{rel}:{q}", n) for q, n in collector.functions]
        found = {Import(module, t, line, where) for t, line, where in collector.imports if t != module}
        imports += sorted(found, key=lambda i: (i.line, i.target))
    files.sort(key=lambda x: (-x[1], x[0]))
    functions.sort(key=lambda x: (-x[1], x[0]))
    shape = Shape(files=files, functions=functions, imports=imports)

    modules = sorted(known)
    internal = [i for i in imports if i.target in known]
    for label, kinds in (("module level", {MODULE}), ("module level + in functions", {MODULE, FUNCTION})):
        edges: dict[str, set[str]] = {}
        for i in internal:
            if i.where in kinds:
                edges.setdefault(i.importer, set()).add(i.target)
        shape.cycles[label] = _cycles(modules, edges)
    packages: dict[str, set[str]] = {}
    for i in internal:
        a, b = layer_of(i.importer), layer_of(i.target)
        pa, pb = package_of(i.importer), package_of(i.target)
        if pa != pb and i.where != TYPING:
            packages.setdefault(pa, set()).add(pb)
        if a is None or b is None or pa == pb:
            continue
        if a < b and not (i.where == FUNCTION and (pa, pb) in ALLOWED_LAZY_UPWARD):
            shape.back_edges.append(i)
        elif a == b and a == 2 and (pa, pb) not in ALLOWED_SIDEWAYS:
            shape.sideways.append(i)
    shape.package_cycles = _cycles(sorted({package_of(m) for m in modules}), packages)
    shape.ui_imports = [i for i in imports if i.target in UI_PACKAGES and package_of(i.importer) != "xmr.app"]
    return shape


def _edge(i: Import) -> str:
    return f"{i.importer} -> {i.target}  (line {i.line}, {i.where})"


def report(shape: Shape, top: int = 5) -> str:
    """The shape as plain text."""
    lines = [f"Longest files (of {len(shape.files)}):"]
    lines += [f"  {n:5d}  {p}" for p, n in shape.files[:top]]
    lines += [f"Longest functions (of {len(shape.functions)}):"]
    lines += [f"  {n:5d}  {q}" for q, n in shape.functions[:top]]
    for label, groups in shape.cycles.items():
        lines.append(f"Import cycles, {label}: {len(groups) or 'none'}")
        lines += ["  " + " <-> ".join(g) for g in groups]
    lines.append(f"Package cycles (any import but typing-only): {len(shape.package_cycles) or 'none'}")
    lines += ["  " + " <-> ".join(g) for g in shape.package_cycles]
    lines.append(f"Back-edges (a lower layer importing a higher one): {len(shape.back_edges) or 'none'}")
    lines += ["  " + _edge(i) for i in shape.back_edges]
    lines.append("Other imports inside layer 2 (besides xmr.train -> xmr.models): "
                 f"{len(shape.sideways) or 'none'}")
    lines += ["  " + _edge(i) for i in shape.sideways]
    lines.append(f"gradio below xmr.app: {len(shape.ui_imports) or 'none'}")
    lines += ["  " + _edge(i) for i in shape.ui_imports]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=5, help="how many files and functions to list")
    parser.add_argument("--root", type=Path, default=ROOT / "xmr", help="the package folder")
    args = parser.parse_args(argv)
    print(report(analyse(args.root), top=args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
