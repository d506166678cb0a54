"""The layers hold: core <- export <- runtime <- apps (ARCHITECTURE.md), and no private
name crosses a package.

The contract is ``.importlinter`` at the repository root, checked by import-linter.
pyproject.toml maps the source folders (sdk/, export/, runtime/, jetson/) onto one import
namespace, which import-linter's graph builder cannot follow, so the test lays the
sources out under their import paths in a temporary folder and runs it there.
"""
import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"sdk": "edgevos", "export": "edgevos/export", "runtime": "edgevos/runtime", "jetson": "edgevos/jetson"}


def _sources():
    """(import name, path) of every module of the package."""
    for folder, target in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = target.split("/") + [p for p in rel.parts if p != "__init__"]
            yield ".".join(parts), path


def test_import_linter_contract_holds(tmp_path):
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra: pip install -e '.[dev]'")
    for name, path in _sources():
        dest = tmp_path.joinpath(*name.split("."))
        dest = dest / "__init__.py" if path.name == "__init__.py" else dest.with_suffix(".py")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())", "--config", str(ROOT / ".importlinter"),
                           "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "3 kept, 0 broken" in proc.stdout


def _package(module: str) -> str:
    return module.rsplit(".", 1)[0]


def test_no_private_name_crosses_a_package():
    modules = dict(_sources())
    crossing = []
    for name, path in modules.items():
        own = name if path.name == "__init__.py" else _package(name)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgevos"):
                target = node.module
                if target == own or target in modules and _package(target) == own:
                    continue  # same package
                for alias in node.names:
                    if alias.name.startswith("_") and alias.name != "__version__":
                        crossing.append(f"{name} imports {target}.{alias.name}")
    assert not crossing, sorted(set(crossing))
