"""The package's layering holds: import-linter contracts (pyproject.toml), no imports from tests/, thin entry points."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "bottomup"
ROLE_FOLDERS = ("core", "models", "data", "codec", "engine", "vis", "deploy", "bench")
ENTRY_POINTS = ("train.py", "evaluate.py", "infer.py", "export.py", "zoo.py")


def _lint_imports() -> list[str]:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    return [exe]


def test_import_linter_contracts_are_kept() -> None:
    if not Path(_lint_imports()[0]).exists():
        pytest.fail("lint-imports not found: pip install -e '.[dev]' installs import-linter")
    proc = subprocess.run(_lint_imports(), cwd=REPO, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "BROKEN" not in out and "4 kept, 0 broken" in out, out[-2000:]


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_imports_from_tests_or_edits_sys_path() -> None:
    offenders = []
    for path in _modules():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("tests", "conftest"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} imports {node.module}")
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] in ("tests", "conftest") for a in node.names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} imports tests")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Attribute)
                and node.func.value.attr == "path"
                and getattr(node.func.value.value, "id", "") == "sys"
            ):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} changes sys.path")
    assert not offenders, offenders


def test_tree_shows_the_roles() -> None:
    top = sorted(p.name for p in PACKAGE.iterdir() if not p.name.startswith(("_", ".")) or p.name == "__init__.py")
    for folder in ROLE_FOLDERS:
        assert (PACKAGE / folder / "__init__.py").is_file(), folder
    modules = {p for p in top if p.endswith(".py")}
    assert modules == {"__init__.py", "api.py", *ENTRY_POINTS}, top
    assert (PACKAGE / "build" / "__init__.py").is_file(), "bottomup.build (config -> objects) is a package"


def test_entry_points_are_thin() -> None:
    """Entry points parse arguments and call the library: no classes, and no function over 100 lines."""
    for name in (*ENTRY_POINTS, "bench/__main__.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        assert not [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name != "UsageError"], name
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                length = node.end_lineno - node.lineno + 1
                assert length <= 100, f"{name}:{node.name} has {length} lines"


def test_tests_mirror_the_package() -> None:
    """Tests sit in the folder of the package they test (``tests/codec/`` for ``bottomup/codec/``, ...), the command
    lines' in ``tests/cli/``, every GPU test in ``tests/gpu/``; only the API and the layout are tested at the top."""
    tests = REPO / "tests"
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders - {"cli", "gpu", "fixtures"} <= packages, sorted(folders - packages)
    assert {p.name for p in tests.glob("test_*.py")} == {"test_api.py", "test_layout.py"}
    marker = "pytest.mark." + "cuda"  # (this file names it only in pieces)
    cuda = [p.relative_to(tests) for p in tests.rglob("test_*.py") if marker in p.read_text()]
    assert cuda and all(p.parts[0] == "gpu" for p in cuda), cuda
    names = [p.name for p in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), "test file names must be unique across folders (pytest rootdir imports)"


def test_api_is_the_facade() -> None:
    """``api.py`` holds the estimator's constructors, re-exports and the glue of ``train`` / ``evaluate`` (config ->
    ``build`` -> ``engine``): no function body over 25 lines; the training and evaluation orchestration lives in
    ``bottomup.engine.training`` / ``bottomup.engine.evaluator``."""
    tree = ast.parse((PACKAGE / "api.py").read_text())
    long = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            body = node.body
            has_doc = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and len(body) > 1
            length = node.end_lineno - (body[1] if has_doc else body[0]).lineno + 1
            if length > 25:
                long.append(f"{node.name}: {length} lines")
    assert not long, long
