"""The golden analysis: a seeded tiny run whose summary.json is committed as tests/golden/summary.json.

    python tests/golden.py        # regenerate the fixture after a deliberate change of the summary

The model is freshly initialized (seed 0, 2 layers x 3 heads over the ENGLISH test text) with one head
planted by hand through its hook point (L1H0 attends to the previous character), so the fixture holds
a validated head as well as the scores of every other head. tests/test_golden.py recomputes it and
compares: the same keys, strings, integers and flags, and floats to 1e-4 (CPUs with other vector
units round float32 sums differently in the last bits).
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from charlens.analysis.report.files import write_json  # noqa: E402
from charlens.analysis.runs.inputs import Settings, load_inputs  # noqa: E402
from charlens.analysis.runs.results import Summary  # noqa: E402
from charlens.analysis.runs.single import run_analysis  # noqa: E402
from analyzer_helpers import make_checkpoint  # noqa: E402
from charlens.model.hooks import add_hook  # noqa: E402

FIXTURE = Path(__file__).resolve().parent / "golden" / "summary.json"
SETTINGS = Settings(n_windows=48, n_boot=200, induction_windows=8, min_windows=10, seed=0)


def previous_character(att: torch.Tensor) -> torch.Tensor:
    """Head 0 of the layer attends to i - 1 (position 0 to itself)."""
    T = att.size(-1)
    att = att.clone()
    att[:, 0] = torch.diag(torch.ones(T - 1), -1) + torch.diag(torch.tensor([1.0] + [0.0] * (T - 1)))
    return att


def golden_summary(folder: Path) -> dict:
    """The summary.json of the golden run (the checkpoint path reduced to its file name)."""
    ckpt, _ = make_checkpoint(folder, seed=0, n_layer=2, n_head=3, n_embd=24)
    inputs = load_inputs(ckpt, SETTINGS)
    add_hook(inputs.model, "blocks.1.attn.hook_pattern", previous_character)
    write_json(Summary(run_analysis(inputs, SETTINGS)).to_dict(), folder / "summary.json")
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))  # as written to disk
    summary["checkpoint"] = Path(summary["checkpoint"]).name
    return summary


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        summary = golden_summary(Path(tmp))
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {FIXTURE}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
