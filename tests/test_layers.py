"""The one-way layering is enforced: import-linter's contracts (pyproject.toml) keep on the
real tree and break on a copy with a deliberate violation, so CI would fail on one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "src", tmp_path / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def test_a_deliberate_violation_breaks_the_contracts(tmp_path):
    root = _copy(tmp_path)
    base = root / "src/rwenas/spaces/base.py"
    base.write_text(base.read_text() + "\nimport torch  # deliberate\n")
    nsga2 = root / "src/rwenas/search/nsga2.py"
    nsga2.write_text(nsga2.read_text() + "\nfrom rwenas.report import write_figures\n")
    done = _lint(root)
    assert done.returncode != 0
    assert "0 kept, 2 broken" in done.stdout
    assert "rwenas.search is not allowed to import rwenas.report" in done.stdout
    assert "rwenas.spaces is not allowed to import torch" in done.stdout
