import pytest
import torch

from charlens.analysis.measures.rollout import attention_rollout


def test_two_layer_case_by_hand():
    # layer 0: head a attends to position 0, head b attends to itself; layer 1: both to position 0
    a0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    l1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    attention = torch.stack([torch.stack([a0, b0]), torch.stack([l1, l1])])  # (L=2, nh=2, 2, 2)
    # layer 0: mean = [[1,0],[.5,.5]] -> 0.5 I + 0.5 mean = [[1,0],[.25,.75]]
    # layer 1: mean = [[1,0],[1,0]]   -> [[1,0],[.5,.5]]
    # rollout = [[1,0],[.5,.5]] @ [[1,0],[.25,.75]] = [[1,0],[.625,.375]]
    expected = torch.tensor([[1.0, 0.0], [0.625, 0.375]])
    assert torch.allclose(attention_rollout(attention), expected)
    steps = attention_rollout(attention, per_layer=True)
    assert torch.allclose(steps[0], torch.tensor([[1.0, 0.0], [0.25, 0.75]]))
    assert torch.allclose(steps[1], expected)


def test_batched_rows_sum_to_one_and_match_per_window():
    g = torch.Generator().manual_seed(0)
    att = torch.softmax(torch.randn(3, 4, 2, 6, 6, generator=g).masked_fill(~torch.tril(torch.ones(6, 6, dtype=torch.bool)), -1e9), -1)
    rolled = attention_rollout(att)
    assert rolled.shape == (3, 6, 6)
    assert torch.allclose(rolled.sum(-1), torch.ones(3, 6))
    assert torch.allclose(rolled[1], attention_rollout(att[1]))
    assert torch.all(rolled.triu(1) == 0)  # causal in, causal out


def test_pure_residual_is_identity():
    att = torch.softmax(torch.randn(2, 2, 4, 4), -1)
    assert torch.allclose(attention_rollout(att, residual_weight=1.0), torch.eye(4))
    with pytest.raises(ValueError):
        attention_rollout(att, residual_weight=1.5)
