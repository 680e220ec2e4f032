"""The code's shape, measured: dependencies point one way (release -> benchmarks -> sppo), no function over 60
lines, no private name reached across modules, no test double shipped in the packages (recognised by what it is:
its name, a mocking or test library, a fake server)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sppo", "benchmarks", "release", "perf")
MAX_LINES = 60
# a package may import only the packages after it here
LAYERS = {"release": {"benchmarks", "sppo"}, "benchmarks": {"sppo"}, "sppo": set(), "perf": {"benchmarks", "sppo"}}


def modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield pkg, path, ast.parse(path.read_text(), filename=str(path))


def imported(tree: ast.Module, path: Path, pkg: str):
    """(module name, imported names) for each import in `tree`, relative imports resolved."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(parts[:-1] if parts[-1] != "__init__" else parts[:-1])
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield name, [a.name for a in node.names]


def test_dependencies_point_one_way():
    wrong = []
    for pkg, path, tree in modules():
        for name, _ in imported(tree, path, pkg):
            top = name.split(".")[0]
            if top in LAYERS and top != pkg and top not in LAYERS[pkg]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_no_function_over_60_lines():
    long = []
    for _, path, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "\n".join(long)


def test_no_private_name_imported_across_modules():
    found = []
    for pkg, path, tree in modules():
        for name, names in imported(tree, path, pkg):
            if name.split(".")[0] not in LAYERS:
                continue
            found += [f"{path.relative_to(ROOT)}: from {name} import {n}" for n in names
                      if n.startswith("_") and not n.startswith("__")]
        for node in ast.walk(tree):  # module._name on an imported project module
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in _project_aliases(tree, pkg, path)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}")
    assert not found, "\n".join(found)


def _project_aliases(tree: ast.Module, pkg: str, path: Path) -> set[str]:
    """Names bound in `tree` to a project module (`from sppo import files`, `import sppo.rank as rank`)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.asname for a in node.names if a.asname and a.name.split(".")[0] in LAYERS}
        elif isinstance(node, ast.ImportFrom):
            for name, names in imported(ast.Module(body=[node], type_ignores=[]), path, pkg):
                if name.split(".")[0] in LAYERS:
                    for a in node.names:
                        if (ROOT / Path(*name.split("."), a.name)).with_suffix(".py").exists() or \
                                (ROOT / Path(*name.split("."), a.name) / "__init__.py").exists():
                            out.add(a.asname or a.name)
    return out


# what makes a module a test double, whatever its file is called: a fake, mock, stub, dummy or spy by name, a mocking
# or test library, or a fake server (an HTTP request handler)
DOUBLE_NAME = re.compile(r"^(Fake|Mock|Stub|Dummy|Spy)([A-Z_]|$)|^(fake|mock|stub|dummy|spy)(_|$)")
TEST_LIBRARIES = {"unittest.mock", "mock", "pytest", "responses", "respx", "pytest_httpserver"}
SERVER_BASES = {"BaseHTTPRequestHandler", "SimpleHTTPRequestHandler", "BaseRequestHandler"}


def doubles(tree: ast.Module, path: Path, pkg: str) -> list[str]:
    """What in a module is a test double: its names, the libraries it imports, the handlers it defines."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and DOUBLE_NAME.match(node.name):
            found.append(f"{node.name} (a test double by name)")
        if isinstance(node, ast.ClassDef):
            bases = {b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases}
            found += [f"{node.name} (a fake server: subclasses {b})" for b in sorted(bases & SERVER_BASES)]
    for name, _ in imported(tree, path, pkg):
        if name in TEST_LIBRARIES or name.split(".")[0] in TEST_LIBRARIES - {"unittest.mock"}:
            found.append(f"imports {name}")
    return found


def test_no_test_double_in_the_packages():
    found = [f"{path.relative_to(ROOT)}: {what}" for pkg, path, tree in modules() for what in doubles(tree, path, pkg)]
    assert not found, "\n".join(found)


def test_the_double_check_recognises_the_tests_own_doubles():
    """The check above can fail: the doubles that live in tests/ are recognised by what they are."""
    for name in ("bench_fake_judge.py", "fake_hub.py"):
        path = ROOT / "tests" / name
        assert doubles(ast.parse(path.read_text()), path, "tests"), name
