"""The package's shape, checked with import-linter (contracts in pyproject.toml): no stage
imports a stage above it, no import cycles, no pytest in the pipeline. And the contracts bite:
the same check on a copy of the package with one planted upward import fails, naming it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"]


def _lint(root: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("importlinter", reason="the `test` extra installs import-linter")
    return subprocess.run([*LINT, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_package_keeps_its_layers_and_has_no_cycles():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in done.stdout


@pytest.mark.parametrize("module, planted, broken", [
    ("core.py", "import harness.results  # noqa\n", "harness.core is not allowed to import harness.results"),
    ("suite.py", "import pytest  # noqa\n", "harness.suite -> pytest"),
    # the PII screen already imports pii (screen -> pii): pii -> screen closes a circle
    ("scorers/pii.py", "import harness.scorers.screen  # noqa\n", "No cycles are allowed in harness.scorers"),
])
def test_a_planted_upward_import_or_cycle_breaks_a_contract(tmp_path, module, planted, broken):
    shutil.copytree(ROOT / "harness", tmp_path / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / "harness" / module
    path.write_text(planted + path.read_text())
    done = _lint(tmp_path)
    assert done.returncode == 1, done.stdout[-3000:]
    assert broken in done.stdout, done.stdout[-3000:]
