import torch

from charlens.analysis.measures.ablation import repeated_random_windows
from charlens.analysis.measures.induction import copy_targets, score_repeated


def planted(ids: torch.Tensor, k: int) -> torch.Tensor:
    """(B, 1, 1, T, T): attend to the character after the latest earlier occurrence of the last k characters
    (k = 1: a one-character copier), to self when there is none."""
    B, T = ids.shape
    A = torch.zeros(B, 1, 1, T, T)
    for b in range(B):
        s = ids[b].tolist()
        for i in range(T):
            hits = [p for p in range(k - 1, i - 1) if i - k + 1 >= 0 and s[p - k + 1:p + 1] == s[i - k + 1:i + 1]]
            A[b, 0, 0, i, hits[-1] + 1 if hits else i] = 1.0
    return A


def test_copy_targets():
    m = copy_targets(6, 3)
    assert m.nonzero().tolist() == [[3, 1], [4, 2], [5, 3]]


def test_repeated_sequences_separate_induction_from_one_character_copying():
    T = 64
    ids = repeated_random_windows(range(1, 27), n=16, T=T, seed=0)[:, :T]  # 26 letters: characters recur within a sequence
    half = (T + 2) // 2
    g = {}
    for k in (1, 2, 3):
        s = score_repeated(planted(ids, k), ids, half)
        score, control = s.score.mean().item(), s.control.mean().item()
        g[k] = (score - control) / (1 - control)
        if k > 1:
            assert score > 0.9  # prefix matching finds the copy almost always
    # the copier's raw score is far from 0, but no better than its own one-character matching predicts
    # (worse: the latest occurrence is never the copy once the character recurs)
    assert score_repeated(planted(ids, 1), ids, half).score.mean().item() > 0.25
    assert g[1] < 0
    assert g[2] > 0.8 and g[3] > 0.8
