"""The golden summary: a seeded tiny run must give the committed tests/golden/summary.json (regenerate it with
`python tests/golden.py` after a deliberate change, and say why in the commit)."""
import json
import math

import torch

from golden import FIXTURE, golden_summary


def assert_same(got, want, path="summary"):
    """Equal structure, strings, integers and flags; floats to 1e-4 (absolute or relative)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{path}: keys {list(got)} != {list(want)}"
        for k in want:
            assert_same(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-4), f"{path}: {got} != {want}"
    else:
        assert got == want and type(got) is type(want), f"{path}: {got!r} != {want!r}"


def test_seeded_tiny_run_equals_the_committed_summary(tmp_path):
    torch.set_num_threads(1)
    want = json.loads(FIXTURE.read_text(encoding="utf-8"))
    got = golden_summary(tmp_path)
    assert_same(got, want)
    assert [h["behaviour"] for h in got["heads"]] == ["none", "none", "none", "previous_char", "none", "none"]


def test_the_comparison_notices_a_changed_number():
    want = json.loads(FIXTURE.read_text(encoding="utf-8"))
    changed = json.loads(json.dumps(want))
    changed["detectors"]["self"]["heldout"]["score"][0][0] += 0.01
    try:
        assert_same(changed, want)
    except AssertionError as e:
        assert "summary.detectors.self.heldout.score[0][0]" in str(e)
    else:
        raise AssertionError("a changed score went unnoticed")
