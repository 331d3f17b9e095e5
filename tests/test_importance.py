import math

import torch

from charlens.analysis.measures.importance import EntropyAccumulator, attention_entropy, attention_received, token_importance
from beyond_helpers import previous_char_pattern


def uniform_causal(T):
    return torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1).view(T, 1)


def test_attention_received_by_hand():
    A = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0.0, 1.0, 0.0]])
    # key 0: (1 + .5 + 0) / 3; key 1: (.5 + 1) / 2; key 2: 0 / 1
    assert torch.allclose(attention_received(A), torch.tensor([0.5, 0.75, 0.0]))
    # a previous-char head: every key but the last gets a full unit from its one follower
    assert torch.allclose(attention_received(previous_char_pattern(4)), torch.tensor([2 / 4, 1 / 3, 1 / 2, 0.0]))


def test_token_importance_singles_out_the_attended_character():
    T = 6
    A = torch.zeros(T, T)
    A[:, 0] = 1.0  # rows 0..1 forced to key 0
    A[2:, :] = 0
    A[2:, 2] = 1.0  # every later query attends to position 2
    attention = A.expand(1, 2, 2, T, T)
    imp = token_importance(attention)
    assert imp["raw"].shape == imp["rollout"].shape == (1, T)
    assert imp["raw"][0].argmax().item() == 2 and imp["rollout"][0].argmax().item() == 2


def test_entropy_known_values():
    T = 5
    ent = attention_entropy(uniform_causal(T), normalized=False)
    assert torch.allclose(ent, torch.log(torch.arange(1, T + 1).float()))
    norm = attention_entropy(uniform_causal(T))
    assert math.isnan(norm[0].item()) and torch.allclose(norm[1:], torch.ones(T - 1))
    assert torch.allclose(attention_entropy(previous_char_pattern(T))[1:], torch.zeros(T - 1))


def test_entropy_accumulator_streams_per_head_and_layer():
    T = 5
    acc = EntropyAccumulator(n_layer=2, n_head=2, T=T)
    att = torch.stack([torch.stack([uniform_causal(T), previous_char_pattern(T)])] * 2)  # (L, nh, T, T)
    for _ in range(3):
        acc.add(att.expand(4, 2, 2, T, T))
    out = acc.result()
    assert torch.allclose(out["per_head"], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    assert torch.allclose(out["per_layer"], torch.tensor([0.5, 0.5]))
    assert out["samples"].shape == (2, 2, 3 * 4 * (T - 1))
