"""Who copies in context (analysis.measures.copying, analysis.runs.copying): on a hand-set induction circuit made
of weights, the copy drop is large and belongs to the circuit's two heads; a model whose loss only falls with
position has no copy drop; the shares and their intervals, given only where the model copies."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from charlens.analysis.measures.ablation import repeated_random_windows
from charlens.analysis.measures.copying import CopyLosses, copy_losses, drop_shares, share, share_interval, reordered_control
from charlens.analysis.runs.copying import copying_result
from charlens.analysis.runs.inputs import Settings
from charlens.data.tokenizer import CharTokenizer
from charlens.model.transformer import TransformerLM
from live_helpers import handset_model


@pytest.fixture(scope="module")
def circuit():
    tok = CharTokenizer(list("abcdefghijklmnop"))
    model = handset_model(tok, block_size=32, n_embd=96)
    ids = repeated_random_windows(range(1, 17), n=24, T=31, seed=0)  # (24, 32): 16 letters written twice
    return model, ids, reordered_control(ids, seed=1)


def test_the_handset_circuit_copies_and_its_two_heads_carry_it(circuit):
    model, ids, control = circuit
    clean, ablated = drop_shares(model, ids, control, [[(0, 0)], [(0, 1)], [(1, 0)], [(1, 1)], [(0, 0), (1, 0)]],
                                 mode="zero")
    assert clean.drop > 1.0 and clean.drop_bound(3.0) > 1.0  # the second copy is predicted, the reordered letters cannot be
    shares = [share(clean, a) for a in ablated]
    assert shares[2] > 0.99 and shares[4] > 0.97  # the induction head, alone or with its previous-character head: all
    assert abs(shares[1]) < 0.01 and abs(shares[3]) < 0.01  # the random heads: none of it
    # Without its previous-character head, the induction head attends evenly over the window and its strong output
    # hurts every prediction (zero ablation takes the model off its usual inputs); what even attention still gives
    # (the letters of the window) the reordered control gets too, so nearly all of the drop goes
    assert 0.85 < shares[0] < 0.99 and ablated[0].first.mean() > clean.first.mean() + 1


def test_copy_positions_and_the_share_arithmetic():
    first = np.array([4.0, 4.0])  # the first copy: 1 nat above the reordered half, which position alone explains
    clean = CopyLosses(first, np.array([1.0, 2.0]), np.array([3.0, 3.0]))  # drops 2 and 1: mean 1.5
    half = CopyLosses(first, np.array([2.0, 2.5]), np.array([3.0, 3.0]))  # drops 1 and 0.5: mean 0.75
    assert clean.drop == 1.5 and clean.position_drop == 1.0 and share(clean, half) == 0.5 and share(clean, clean) == 0.0
    assert np.isnan(share(CopyLosses(first, np.array([1.0]), np.array([1.0])), clean))  # no drop: nothing to share
    low, high = share_interval(clean, half, 2.0, 200, np.random.default_rng(0))
    assert low <= 0.5 <= high


def test_copy_losses_read_each_copy_of_the_window(circuit):
    model, ids, control = circuit
    got = copy_losses(model, ids, control)
    assert torch.equal(control[:, :16], ids[:, :16]) and (control[:, 16:] != ids[:, 16:]).float().mean() > 0.8
    assert torch.equal(control[:, 16:].sort(1).values, ids[:, :16].sort(1).values)  # the same letters, another order
    with torch.no_grad():
        logits, _ = model(ids[:, :-1])
        control_logits, _ = model(control[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    reordered = torch.nn.functional.cross_entropy(control_logits.transpose(1, 2), control[:, 1:], reduction="none")
    np.testing.assert_allclose(got.first, loss[:, :15].mean(1).double().numpy(), rtol=1e-6)  # letters 1..15
    np.testing.assert_allclose(got.second, loss[:, 16:].mean(1).double().numpy(), rtol=1e-6)  # letters 17..31
    np.testing.assert_allclose(got.reordered, reordered[:, 16:].mean(1).double().numpy(), rtol=1e-6)  # the same positions


class PositionOnly(torch.nn.Module):
    """A model whose loss falls along the sequence whatever the letters: its confidence in a uniform guess over
    the 16 letters grows with position, and it reads no letter."""

    def forward(self, ids: torch.Tensor):
        T = ids.shape[1]
        logits = torch.full((*ids.shape, 17), -30.0)
        logits[..., 1:] = 0.0
        logits[..., 0] = torch.linspace(12.0, -30.0, T)  # mass on a letter no window holds, less at each position
        return logits, None


def test_a_model_whose_loss_only_falls_with_position_has_no_copy_drop(circuit):
    _, ids, control = circuit
    got = copy_losses(PositionOnly(), ids, control)
    assert got.position_drop > 0.5  # the first-copy comparison would call this copying
    assert abs(got.drop) < 1e-9 and got.drop_bound(3.0) <= 0


def test_share_intervals_are_given_only_where_the_model_copies(circuit):
    """A random model's drop is indistinguishable from none: its shares' bootstrap divides by resampled drops near 0,
    so its intervals are unbounded and turn on the CPU's last bits; they are left undefined, not printed."""
    model, _, _ = circuit
    tok = CharTokenizer(list("abcdefghijklmnop"))
    settings = Settings(induction_windows=24, n_boot=200)
    held = SimpleNamespace(windows=["abcdefghijklmnop" * 2] * 4)  # the text the heads' mean outputs are taken over
    inputs = lambda m: SimpleNamespace(model=m, tokenizer=tok, lang="en", heldout=held)
    copier = copying_result(inputs(model), settings)
    assert copier.copies and np.isfinite(copier.single_ci).all() and copier.carriers()[0] == (1, 0)
    lo, hi = copier.single_ci[1, 0]
    assert lo > 0.5 and hi > copier.single["mean"][1, 0] > lo  # the induction head: a share with an interval around it
    torch.manual_seed(1)  # a random model whose drop is above 0 (0.019) but not distinguishable from none (bound -0.049)
    random = copying_result(inputs(TransformerLM(model.config).eval()), settings)
    assert random.clean.drop > 0 and not random.copies
    assert np.isnan(random.single_ci).all() and random.carriers() == [] and random.pairs == ()
    summary = random.to_dict()
    assert summary["share_ci"] == [[[None, None]] * model.config.n_head] * model.config.n_layer
    assert "no in-context copying" in summary["sentence"]
