"""The property battery of both CLIs (tests/battery.py) on a bounded number of cases; the larger counts in
docs/benchmarks.md come from `python tests/battery.py --cases N --seed S`."""
from __future__ import annotations

import torch

from battery import make_fixtures, run_battery

torch.set_num_threads(1)


def test_random_flags_and_file_situations_keep_every_promise(tmp_path):
    counts, failures = run_battery(20, seed=0, root=tmp_path / "cases", fixtures=make_fixtures(tmp_path))
    assert failures == []
    outcomes = {key for key in counts if key[0] != "situation"}
    assert {("train", "ok"), ("train", "refused"), ("analyze", "ok"), ("analyze", "refused")} <= outcomes, counts
