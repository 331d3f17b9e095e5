import math

import pytest
import torch

from charlens.analysis.measures.ablation import (ablated, ablation_study, head_output_means, position_losses,
                               repeated_random_windows)
from beyond_helpers import previous_char_pattern, tiny_model
from charlens.model.hooks import add_hook

T = 16


def period_two_windows(n: int, seed: int) -> torch.Tensor:
    """Windows "abab..." of a random pair a != b from tokens 1..8: the next character is the
    one before the current one, so only a previous-character head can predict it."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(1, 9, (n, 1), generator=g)
    b = 1 + (a - 1 + torch.randint(1, 8, (n, 1), generator=g)) % 8
    return torch.cat([a, b], dim=1).repeat(1, (T + 2) // 2)[:, : T + 1]


@pytest.fixture(scope="module")
def trained():
    """One layer; head 0 hand-set to attend to the previous character, head 1 to itself;
    the rest trained briefly to use them."""
    model = tiny_model(n_layer=1, n_head=2, n_embd=32, vocab_size=10, block_size=T)
    add_hook(model, "blocks.0.attn.hook_pattern", lambda att: torch.stack(
        [previous_char_pattern(att.size(-1)), torch.eye(att.size(-1))]).expand_as(att))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(150):
        w = period_two_windows(32, seed=step)
        _, loss = model(w[:, :-1], w[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    held_out = period_two_windows(64, seed=10_000)
    assert position_losses(model, held_out)[:, 1:].mean() < 0.3  # it learned to use head 0
    return model, held_out


def classes_for(windows):
    return torch.ones_like(windows)  # every character a "consonant": no class-based detector used here


def test_zero_output_projection_changes_nothing():
    model = tiny_model(n_layer=2, n_head=2)
    with torch.no_grad():
        model.blocks[1].attn.c_proj.weight[:, 8:16] = 0.0  # head 1 of layer 1 writes nothing
    windows = torch.randint(0, 12, (6, 11), generator=torch.Generator().manual_seed(0))
    means = head_output_means(model, windows[:, :-1])
    clean = position_losses(model, windows)
    for mode in ("zero", "mean"):
        with ablated(model, [(1, 1)], mode, means):
            assert torch.equal(position_losses(model, windows), clean)
    res = ablation_study(model, windows, classes_for(windows), {(1, 1): "previous_char", (0, 0): "none"},
                         validated={(1, 1)}, tol=1e-9)
    assert res[(1, 1)].delta_loss == 0.0 and res[(1, 1)].visible_but_unused
    assert not res[(0, 0)].visible_but_unused  # not validated: nothing visible to be unused
    assert math.isnan(res[(0, 0)].delta_loss_targeted) and res[(0, 0)].n_targeted == 0
    # an induction head is judged on the second copy of repeated random sequences
    rep = repeated_random_windows(range(1, 12), n=5, T=10)
    res = ablation_study(model, windows, classes_for(windows), {(1, 1): "induction", (0, 1): "induction"},
                         induction_windows=rep)
    assert res[(1, 1)].n_targeted == 5 * (10 - 6) and res[(1, 1)].delta_loss_targeted == 0.0
    assert res[(0, 1)].delta_loss_targeted != 0.0


def test_crucial_head_changes_the_loss_and_is_not_flagged(trained):
    model, held_out = trained
    res = ablation_study(model, held_out, classes_for(held_out), {(0, 0): "previous_char", (0, 1): "self"},
                         validated={(0, 0), (0, 1)}, tol=0.05)
    crucial = res[(0, 0)]
    assert crucial.delta_loss > 1.0 and crucial.delta_loss_targeted > 1.0
    assert crucial.n_targeted == 64 * (T - 1)  # every row but the first puts all its weight on i-1
    assert not crucial.visible_but_unused
    assert res[(0, 0)].delta_loss > res[(0, 1)].delta_loss
    mean_res = ablation_study(model, held_out, classes_for(held_out), {(0, 0): "previous_char"}, mode="mean")
    assert mean_res[(0, 0)].delta_loss > 0.5


def test_ablated_hook_restores_and_chains(trained):
    model, held_out = trained
    attn = model.blocks[0].attn
    clean = position_losses(model, held_out)
    with ablated(model, [(0, 0), (0, 1)]):
        assert attn.hook_z.observed
        both = position_losses(model, held_out)
    assert not attn.hook_z.observed
    assert torch.equal(position_losses(model, held_out), clean)
    assert both.mean() > clean.mean() + 1.0
    with pytest.raises(ValueError, match="mean ablation"):
        with ablated(model, [(0, 0)], mode="mean"):
            pass


def test_repeated_random_windows():
    w = repeated_random_windows(range(1, 9), n=3, T=10, seed=0)
    assert w.shape == (3, 11)
    assert torch.equal(w[:, 6:11], w[:, :5])  # second copy from index 6 = (T + 2) // 2
    assert not torch.equal(w[:, 1:6], w[:, :5])
