"""The install is one import package: the built wheel holds `charlens` and its console scripts and nothing else at
the top level, and installed into a folder of its own it imports every charlens module from inside a user's project
that has its own `data/` package (with a `tokenizer.py`) and its own `model.py`, without either side taking the
other's names (issue 21: before, charlens installed `model`, `data`, `analysis` and `training` at the top level)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

IMPORT_ALL = r"""
import importlib, pkgutil, sys
import charlens
assert charlens.__file__.startswith(sys.argv[1]), charlens.__file__
names = [m.name for m in pkgutil.walk_packages(charlens.__path__, "charlens.")]
for name in names:
    importlib.import_module(name)
from charlens.model.checkpoint import load_checkpoint
from charlens.data.tokenizer import normalize
import data.tokenizer, model
assert data.tokenizer.WHOSE == "the user's" and model.WHOSE == "the user's", (data.tokenizer.__file__, model.__file__)
assert not hasattr(data, "errors") and not hasattr(data.tokenizer, "normalize")
print(len(names), "modules")
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (the checkout is left as it is: no build/ or egg-info)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "charlens", src / "charlens", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, timeout=300)
    (found,) = out.glob("charlens-*.whl")
    return found


def test_the_wheel_holds_one_top_level_package_and_the_two_console_scripts(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = z.read(f"{info}/entry_points.txt").decode()
    assert {n.split("/")[0] for n in names} == {"charlens", info}
    assert "charlens/analysis/report/templates/report.js" in names  # the HTML report's template travels
    assert "charlens/model/transformer.py" in names and "charlens/train.py" in names
    scripts = dict(line.replace(" ", "").split("=") for line in entry_points.splitlines() if "=" in line)
    assert scripts == {"charlens-train": "charlens.cli:train", "charlens-analyze": "charlens.cli:analyze"}


def test_installed_wheel_imports_every_module_beside_a_users_data_package_and_model_py(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    project = tmp_path / "project"  # a user's project: its own data/ package and model.py
    (project / "data").mkdir(parents=True)
    (project / "data" / "__init__.py").write_text("")
    (project / "data" / "tokenizer.py").write_text('WHOSE = "the user\'s"\n')
    (project / "model.py").write_text('WHOSE = "the user\'s"\n')
    env = {**os.environ, "PYTHONPATH": str(site)}  # not the checkout: only the installed wheel provides charlens
    start = lambda *argv: subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True)
    runs = [start(sys.executable, "-c", IMPORT_ALL, str(site)),  # the three at once: each spends seconds importing torch
            start(str(site / "bin" / "charlens-train"), "--help"), start(str(site / "bin" / "charlens-analyze"), "--help")]
    (imported, e1), (train_help, e2), (analyze_help, e3) = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], (e1, e2, e3)
    assert int(imported.split()[0]) >= 70  # every module of the package, not a handful
    assert "--max-iters" in train_help and "--compare" in analyze_help  # the console scripts run the two CLIs
