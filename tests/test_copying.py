"""Who copies in context (analysis.measures.copying, analysis.runs.copying): on a hand-set induction circuit made
of weights, the copy drop is large and belongs to the circuit's two heads; the shares and their intervals."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from charlens.analysis.measures.ablation import repeated_random_windows
from charlens.analysis.measures.copying import CopyLosses, copy_losses, drop_shares, share, share_interval
from charlens.data.tokenizer import CharTokenizer
from live_helpers import handset_model


@pytest.fixture(scope="module")
def circuit():
    tok = CharTokenizer(list("abcdefghijklmnop"))
    model = handset_model(tok, block_size=32, n_embd=96)
    ids = repeated_random_windows(range(1, 17), n=24, T=31, seed=0)  # (24, 32): 16 letters written twice
    return model, ids


def test_the_handset_circuit_copies_and_its_two_heads_carry_it(circuit):
    model, ids = circuit
    clean, ablated = drop_shares(model, ids, [[(0, 0)], [(0, 1)], [(1, 0)], [(1, 1)], [(0, 0), (1, 0)]], mode="zero")
    assert clean.drop > 1.0 and clean.drop_bound(3.0) > 1.0  # the second copy is predicted, the first cannot be
    shares = [share(clean, a) for a in ablated]
    assert shares[2] > 0.99 and shares[4] > 0.99  # the induction head, alone or with its previous-character head: all
    assert abs(shares[1]) < 0.01 and abs(shares[3]) < 0.01  # the random heads: none of it
    # Without its previous-character head, the induction head attends evenly over the window and its strong output
    # hurts both copies: a share, not all, of the drop goes (zero ablation takes the model off its usual inputs)
    assert 0.3 < shares[0] < 0.6 and ablated[0].first.mean() > clean.first.mean() + 1


def test_copy_positions_and_the_share_arithmetic():
    clean = CopyLosses(np.array([3.0, 3.0]), np.array([1.0, 2.0]))  # drops 2 and 1: mean 1.5
    half = CopyLosses(np.array([3.0, 3.0]), np.array([2.0, 2.5]))  # drops 1 and 0.5: mean 0.75
    assert clean.drop == 1.5 and share(clean, half) == 0.5 and share(clean, clean) == 0.0
    assert np.isnan(share(CopyLosses(np.array([1.0]), np.array([1.0])), clean))  # no drop: nothing to share
    low, high = share_interval(clean, half, 2.0, 200, np.random.default_rng(0))
    assert low <= 0.5 <= high


def test_copy_losses_read_each_copy_of_the_window(circuit):
    model, ids = circuit
    got = copy_losses(model, ids)
    with torch.no_grad():
        logits, _ = model(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    np.testing.assert_allclose(got.first, loss[:, :15].mean(1).double().numpy(), rtol=1e-6)  # letters 1..15
    np.testing.assert_allclose(got.second, loss[:, 16:].mean(1).double().numpy(), rtol=1e-6)  # letters 17..31
