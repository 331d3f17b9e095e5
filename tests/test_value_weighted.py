import torch

from charlens.model.hooks import run_with_cache
from charlens.analysis.measures.value_weighted import (output_weights_per_head, row_disagreement, row_normalize,
                                     transformed_values, value_weighted_attention, value_weighted_norms)
from beyond_helpers import tiny_model


def test_hand_computed_norms():
    # one layer, one head, three positions; values of norms 5, 1 and 0; W_O = 2 * identity
    pattern = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]]).view(1, 1, 1, 3, 3)
    v = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]]).view(1, 1, 1, 3, 2)
    w_o = (2 * torch.eye(2)).view(1, 1, 2, 2)
    expected = torch.tensor([[10.0, 0, 0], [5.0, 1.0, 0], [2.0, 0.6, 0.0]])
    assert torch.allclose(value_weighted_norms(pattern, v, w_o)[0, 0, 0], expected)
    # the position with a zero value gets nothing though its weight is the largest of its row
    assert torch.allclose(row_normalize(value_weighted_norms(pattern, v, w_o))[0, 0, 0, 2], torch.tensor([2 / 2.6, 0.6 / 2.6, 0.0]))
    # equal value norms: normalized value-weighted attention is the raw attention, no disagreement
    v_equal = torch.tensor([[3.0, 4.0], [0.0, 5.0], [5.0, 0.0]]).view(1, 1, 1, 3, 2)
    weighted = value_weighted_norms(pattern, v_equal, w_o)
    assert torch.allclose(row_normalize(weighted), pattern)
    assert row_disagreement(pattern, weighted).item() < 1e-6
    assert row_disagreement(pattern, value_weighted_norms(pattern, v, w_o)).item() > 0.1


def test_output_weights_slice_columns_of_c_proj():
    model = tiny_model(n_layer=1, n_head=2, n_embd=4)
    W = torch.arange(16.0).view(4, 4)
    with torch.no_grad():
        model.blocks[0].attn.c_proj.weight.copy_(W)
    w_o = output_weights_per_head(model)
    assert w_o.shape == (1, 2, 2, 4)
    assert torch.equal(w_o[0, 1], W[:, 2:4].T)


def test_decomposition_adds_up_to_each_heads_real_output():
    """sum_j alpha_ij f_h(x_j) must equal what head h alone writes through c_proj."""
    model = tiny_model(n_layer=2, n_head=2)
    idx = torch.randint(0, 12, (2, 9), generator=torch.Generator().manual_seed(0))
    cache = run_with_cache(model, idx)
    f = transformed_values(cache.stack("v"), output_weights_per_head(model))  # (B, L, nh, T, C)
    per_key = cache.stack("pattern").unsqueeze(-1) * f.unsqueeze(-3)  # (B, L, nh, T, T, C)
    z = cache.layer(1, "z")  # (B, nh, T, hs): what each head really outputs
    for head in range(2):
        only = torch.zeros_like(z)
        only[:, head] = z[:, head]
        out = model.blocks[1].attn.c_proj(only.transpose(1, 2).reshape(2, 9, 16))  # that head's share of the output
        assert torch.allclose(per_key[:, 1, head].sum(dim=-2), out, atol=1e-6)
    assert torch.allclose(value_weighted_attention(model, cache), per_key.norm(dim=-1), atol=1e-6)
