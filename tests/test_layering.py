"""No module imports from a layer above its own (docs/architecture.md): every import of every charlens module, parsed
with ast (imports inside functions included), must point to its own layer or one below it. A failure names the file,
the line and both layers."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "charlens"
# Layers from the bottom; a module may import its own layer and any lower one. charlens.training and
# charlens.analysis.runs are peers on one level: neither may import the other.
LAYERS: list[tuple[str, ...]] = [
    ("charlens.data",),
    ("charlens.model",),
    ("charlens.analysis.measures",),
    ("charlens.training", "charlens.analysis.runs"),
    ("charlens.analysis.report",),
    ("charlens.groupjobs",),  # the analyses of those runs, as jobs for worker processes
    ("charlens.groupcli",),  # analyze.py's runs over many models
    ("charlens.train", "charlens.analyze", "charlens.cli"),
]
UNLAYERED = ("charlens", "charlens.analysis")  # the packages' own __init__ files: docstrings only


def layer_of(module: str) -> tuple[int, str]:
    """(level, layer name) of a dotted module name."""
    for level, names in enumerate(LAYERS):
        for name in names:
            if module == name or module.startswith(name + "."):
                return level, name
    raise LookupError(module)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every charlens import in a module's syntax tree."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            if name == "charlens" or name.startswith("charlens."):
                yield node.lineno, name


def violations(root: Path) -> list[str]:
    """One line per import that points upward or sideways, for every module under root/charlens."""
    found = []
    for path in sorted((root / "charlens").rglob("*.py")):
        module = module_name(path, root)
        if module in UNLAYERED:
            continue
        level, layer = layer_of(module)
        for line, target in imports(ast.parse(path.read_text(encoding="utf-8")), module, path.name == "__init__.py"):
            if target in UNLAYERED:
                found.append(f"{path.relative_to(root)}:{line}: imports {target}, which holds no layer")
                continue
            t_level, t_layer = layer_of(target)
            if t_level > level or (t_level == level and t_layer != layer):
                found.append(f"{path.relative_to(root)}:{line}: {layer} imports {target} ({t_layer}, "
                             f"{'a layer above' if t_level > level else 'a peer layer'})")
    return found


def test_no_module_imports_from_a_layer_above_its_own():
    modules = [module_name(p, ROOT) for p in PACKAGE.rglob("*.py")]
    assert len(modules) >= 70
    for m in modules:  # every module belongs to a layer (a new top-level folder must be placed in LAYERS)
        assert m in UNLAYERED or layer_of(m)
    bad = violations(ROOT)
    assert not bad, "imports against the layering (docs/architecture.md):\n" + "\n".join(bad)


@pytest.mark.parametrize("where, source, complaint", [
    ("charlens/model/bad.py", "from charlens.analysis.measures.rule import label\n", "a layer above"),
    ("charlens/training/bad.py", "def f():\n    import charlens.analysis.runs.single\n", "a peer layer"),
    ("charlens/analysis/runs/bad.py", "from charlens.training import config\n", "a peer layer"),
    ("charlens/data/bad.py", "from ..model import transformer\n", "a layer above"),
    ("charlens/analysis/measures/bad.py", "from charlens.analysis.report.render import x\n", "a layer above"),
])
def test_an_upward_or_sideways_import_is_named_with_its_file_and_line(tmp_path, where, source, complaint):
    path = tmp_path / where
    path.parent.mkdir(parents=True)
    path.write_text("import torch\nfrom charlens.data.errors import CharlensError\n" + source)
    (bad,) = violations(tmp_path)
    assert bad.startswith(f"{where}:{source.count(chr(10)) + 2}:") and complaint in bad


def test_downward_and_same_layer_imports_pass(tmp_path):
    path = tmp_path / "charlens/analysis/report/ok.py"
    path.parent.mkdir(parents=True)
    path.write_text("from charlens.analysis.runs.results import Summary\nfrom charlens.analysis.report import files\n"
                    "from charlens.model.hooks import run_with_cache\nfrom .files import x\n")
    assert violations(tmp_path) == []
