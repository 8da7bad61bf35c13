"""The netdyn modules a file can import: the rerun triggers of every rule (docs/design.md "Rerun triggers").

A rule's ``code`` inputs are the static import closure of its workflow script within the ``netdyn`` package:
every module it imports, directly or through other netdyn modules, including imports inside functions (they
run when the function does), plus the ``__init__.py`` of every package on the way (importing ``netdyn.a.b``
executes ``netdyn/__init__.py`` and ``netdyn/a/__init__.py``). So editing any module reruns exactly the jobs
whose scripts can run it. Read with ``ast`` only: the Snakefile computes this at parse time without importing
torch or anything else.

One refinement keeps the closure honest rather than total: a package's lazy attributes (PEP 562
``def __getattr__(name)`` with ``if name == "x": from m import x`` branches, as ``netdyn/__init__.py`` has for
``netdyn.analyze``) are followed only where a file asks for that attribute (``from netdyn import analyze``).
"""

from __future__ import annotations

import ast
import functools
import os
from pathlib import Path

PACKAGE = "netdyn"


def module_file(module: str, root: Path) -> Path | None:
    """The file of a dotted module under ``root`` (the folder holding the package), or None if it has none."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _lazy_attributes(tree: ast.Module) -> dict[str, list[ast.AST]]:
    """``{attribute: [import nodes]}`` of a module-level ``__getattr__`` written as ``if name == "x":`` branches."""
    lazy: dict[str, list[ast.AST]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            for branch in ast.walk(node):
                test = getattr(branch, "test", None)
                if (
                    isinstance(branch, ast.If)
                    and isinstance(test, ast.Compare)
                    and len(test.comparators) == 1
                    and isinstance(test.comparators[0], ast.Constant)
                ):
                    imports = [n for n in ast.walk(ast.Module(body=branch.body, type_ignores=[])) if _is_import(n)]
                    lazy.setdefault(str(test.comparators[0].value), []).extend(imports)
    return lazy


def _is_import(node: ast.AST) -> bool:
    return isinstance(node, ast.Import | ast.ImportFrom)


@functools.cache
def _parse(path: Path) -> tuple[ast.Module, dict[str, list[ast.AST]]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return tree, _lazy_attributes(tree)


def _eager_imports(tree: ast.Module) -> list[ast.AST]:
    """Every import node of the module, in functions too, except those inside a module-level ``__getattr__``."""
    lazy = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"]
    skipped = {id(n) for node in lazy for n in ast.walk(node)}
    return [n for n in ast.walk(tree) if _is_import(n) and id(n) not in skipped]


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _requests(node: ast.AST, current: str, is_package: bool) -> list[tuple[str, str | None]]:
    """``(module, attribute or None)`` pairs an import node asks for, package-qualified (relative ones resolved)."""
    if isinstance(node, ast.Import):
        return [(alias.name, None) for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        package = current.split(".") if is_package else current.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [(base, alias.name) for alias in node.names]


def closure(path: str | os.PathLike, root: str | os.PathLike, package: str = PACKAGE) -> list[Path]:
    """Every file of ``package`` (under ``root``) that the file at ``path`` can import, sorted; ``path`` itself and
    its packages' ``__init__.py`` are included when it belongs to the package."""
    root = Path(root).resolve()
    start = Path(path).resolve()
    seen: set[Path] = set()
    asked: set[tuple[Path, str]] = set()
    pending: list[tuple[Path, str | None]] = [(start, None)]  # (file, lazy attribute asked of it)
    if start.is_relative_to(root / package):  # importing a package's module runs the package's __init__ files
        pending += [
            (found, None)
            for parent in _with_parents(_module_name(start, root))[:-1]
            if (found := module_file(parent, root)) is not None
        ]
    while pending:
        file, attribute = pending.pop()
        inside = file.is_relative_to(root / package)
        tree, lazy = _parse(file)
        if attribute is not None:
            if (file, attribute) in asked:
                continue
            asked.add((file, attribute))
            nodes = lazy.get(attribute, [])
        elif file in seen:
            continue
        else:
            seen.add(file)
            nodes = _eager_imports(tree)
        current = _module_name(file, root) if inside else ""
        for node in nodes:
            for module, name in _requests(node, current, file.name == "__init__.py"):
                if module.split(".")[0] != package:
                    continue
                for parent in _with_parents(module):
                    found = module_file(parent, root)
                    if found is not None:
                        pending.append((found, None))
                if name is None:
                    continue
                submodule = module_file(f"{module}.{name}", root)
                if submodule is not None:
                    pending.append((submodule, None))
                elif (owner := module_file(module, root)) is not None and owner.name == "__init__.py":
                    pending.append((owner, name))
    return sorted(f for f in seen if f.is_relative_to(root / package))


def script_dependencies(script: str | os.PathLike, root: str | os.PathLike, *modules: str) -> list[str]:
    """The netdyn files a workflow script can import, with those of ``modules`` (dotted names the script imports
    dynamically, e.g. ``netdyn.figures.fig3``), as paths relative to the working directory."""
    root = Path(root).resolve()
    files = set(closure(script, root))
    for module in modules:
        found = module_file(module, root)
        if found is None:
            raise ValueError(f"{script}: no module {module} under {root}")
        files.update(closure(found, root))
        files.update(f for parent in _with_parents(module) if (f := module_file(parent, root)) is not None)
    return sorted(os.path.relpath(f) for f in files)
