"""The standard induction test (Olsson et al. 2022): random character sequences repeated twice.
An induction head attends from the second copy to the position after the matching character in
the first copy, and the model's loss drops on the second copy."""
from __future__ import annotations

import torch

from analysis.measures import detectors as det
from analysis.runs.inputs import AnalysisInputs, Settings


def induction_test(inputs: AnalysisInputs, settings: Settings) -> dict:
    """Random character sequences repeated twice: attention from the second copy to the position after
    the matching character in the first copy, and the loss on each copy."""
    model, T = inputs.model.eval(), inputs.model.config.block_size
    half = T // 2
    rng = torch.Generator().manual_seed(settings.seed)
    vocab = torch.arange(1, inputs.tokenizer.vocab_size)
    first = vocab[torch.randint(len(vocab), (settings.induction_windows, half), generator=rng)]
    ids = torch.cat([first, first], dim=1)  # (N, 2 * half)
    i = torch.arange(2 * half)[:, None]
    j = torch.arange(2 * half)[None, :]
    mask = ((i >= half) & (j == i - half + 1)).expand(len(ids), 1, -1, -1).clone()
    scores, base, losses = [], [], []
    with torch.no_grad():
        for chunk, m in zip(ids.split(settings.batch_size), mask.split(settings.batch_size)):
            logits, _, att = model(chunk, return_attention=True)
            ws = det.score_masks(att.float(), m)
            scores.append(ws.score[:, 0])
            base.append(ws.baseline[:, 0])
            losses.append(torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), chunk[:, 1:], reduction="none"))
    loss = torch.cat(losses)  # (N, 2 * half - 1): loss[:, p] is the loss of predicting position p + 1
    return {
        "score": torch.cat(scores).mean(0).tolist(),
        "baseline": float(torch.cat(base).mean()),
        "loss_first_copy": float(loss[:, : half - 1].mean()),
        "loss_second_copy": float(loss[:, half:].mean()),
        "n_windows": len(ids), "length": 2 * half,
    }
