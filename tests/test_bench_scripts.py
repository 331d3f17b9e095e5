"""The benchmark scripts are not imported by the package or the other tests, so nothing else would notice one that
this Python cannot even parse (bench/induction_formation.py once nested same-quote f-strings, valid only from
Python 3.12 on while the project supports 3.10+): every bench/*.py must compile with the running interpreter."""
from __future__ import annotations

from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_bench_script_compiles(script: Path):
    compile(script.read_text(encoding="utf-8"), str(script), "exec")

