"""The rule's calibration numbers (docs/analysis.md): false positives on untrained models, the
planted heads' labels and margins, and label stability across window seeds.

    python tests/calibrate_rule.py [--seeds 20] [--preset small]

1. Untrained: `--seeds` freshly initialized models of the preset over the English Bible, 64 windows per split,
   every English detector and the repeated-sequence test: validated tests (must be 0) and the highest lower
   bound of any selectivity (how far from the cut the noise reaches).
2. Planted: the known heads of tests/planted.py in a 2 x 6 model (block 64, 96 windows per split, the whole
   analysis): each head's label, selectivity and margin; precision and recall of the planted set.
3. Hebrew word starts: a head on the first letter of each word, and one with 0.45 of its mass there and the
   rest uniform: their vowel mass against uniform attention and against their positional control.
4. Stability: a head at the cut (previous character from a third of the characters) analysed on 40 other
   window draws: how often each label comes out, at the cut and 0.1 below it.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from charlens.analysis.measures.ablation import repeated_random_windows  # noqa: E402
from charlens.analysis.measures.detectors import detectors_for  # noqa: E402
from charlens.analysis.measures.induction import score_repeated  # noqa: E402
from charlens.analysis.measures.positional import StratumCounts  # noqa: E402
from charlens.analysis.measures.scoring import score_windows  # noqa: E402
from charlens.analysis.measures.stats import per_test_alpha, split_stats, validated  # noqa: E402
from charlens.analysis.runs.extract import char_batch  # noqa: E402
from charlens.analysis.runs.inputs import Settings, load_inputs, sample_windows  # noqa: E402
from charlens.analysis.runs.results import Summary  # noqa: E402
from charlens.analysis.runs.single import run_analysis  # noqa: E402
from analyzer_helpers import make_checkpoint  # noqa: E402
from charlens.data.corpora import bible_corpus  # noqa: E402
from charlens.data.tokenizer import CharTokenizer  # noqa: E402
from charlens.model.hooks import attention_patterns  # noqa: E402
from charlens.model.transformer import PRESETS, ModelConfig, TransformerLM  # noqa: E402
from planted import KNOWN, latest, mix, picky_pools, plant, targets, uniform  # noqa: E402

CUT = Settings().min_selectivity


def untrained(seeds: int, preset: str, n_windows: int = 64) -> None:
    corpus = bible_corpus("en")
    tok = CharTokenizer.from_text(corpus.train + corpus.heldout)
    cfg = {**PRESETS[preset], "vocab_size": tok.vocab_size}
    T, L, H = cfg["block_size"], cfg["n_layer"], cfg["n_head"]
    names = detectors_for("en")
    rng = np.random.default_rng(0)
    splits = [[char_batch(tok, w[k:k + 32], "en") for k in range(0, n_windows, 32)]
              for w in (sample_windows(text, T, n_windows, rng) for text in (corpus.train, corpus.heldout))]
    freqs = []
    for batches in splits:
        counts = StratumCounts(names)
        for c in batches:
            counts.add(c)
        freqs.append(counts.frequencies())
    alpha = per_test_alpha(0.05, (len(names) + 1) * L * H)
    n_valid, n_tests, highest = 0, 0, (-1.0, "")
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = TransformerLM(ModelConfig(**cfg)).eval()
        stats = []
        with torch.no_grad():
            for batches, f, rep_seed in zip(splits, freqs, (2 * seed, 2 * seed + 1)):
                parts = [score_windows(attention_patterns(model, c.ids), c, names, f) for c in batches]
                stats.append(split_stats(*(torch.cat([getattr(p, x) for p in parts]).numpy() for x in ("score", "control", "baseline")),
                                         CUT, alpha, 300, rng))
                ids = repeated_random_windows(range(1, tok.vocab_size), 32, T, seed=rep_seed)[:, :T]
                ws = score_repeated(attention_patterns(model, ids), ids, (T + 2) // 2)
                stats.append(split_stats(ws.score.numpy(), ws.control.numpy(), ws.baseline.numpy(), CUT, alpha, 300, rng))
        flags = np.concatenate([validated(stats[0], stats[2], CUT, 10), validated(stats[1], stats[3], CUT, 10)])
        n_valid, n_tests = n_valid + int(flags.sum()), n_tests + flags.size
        for s, labels in ((stats[0], names), (stats[2], names), (stats[1], ["repeated"]), (stats[3], ["repeated"])):
            d = int(np.nanargmax(np.nanmax(s.bound[..., 0], axis=(1, 2))))
            highest = max(highest, (float(np.nanmax(s.bound[d, ..., 0])), labels[d]))
    print(f"untrained {preset} models: {seeds} seeds x {L * H} heads x {len(names) + 1} tests = {n_tests} tests, "
          f"{n_valid} validated; highest lower bound of any selectivity {highest[0]:.4f} ({highest[1]}), cut {CUT}")


def planted() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, _ = make_checkpoint(Path(tmp), n_layer=2, n_head=6, n_embd=24, block_size=64, bible=True)
        settings = Settings(n_windows=96, n_boot=300, induction_windows=16, decompose_windows=32)
        inputs = load_inputs(ckpt, settings)
        where = {(k // 6, k % 6): name for k, name in enumerate(KNOWN)}
        plant(inputs.model, inputs.tokenizer, "en", {lh: KNOWN[name][0] for lh, name in where.items()})
        summary = Summary(run_analysis(inputs, settings)).to_dict()
    right = 0
    for h in summary["heads"]:
        name = where.get((h["layer"], h["head"]), "(untouched)")
        want = KNOWN[name][1] if name in KNOWN else None
        got = h["behaviour"] if h["validated"] else None
        right += got == want
        print(f"  L{h['layer']}H{h['head']} {name:14s} -> {got or 'none':15s} ({h['candidate']}: selectivity "
              f"{h['selectivity']:.3f}, held-out {h['heldout_selectivity']:.3f}, margin {h['margin']:+.3f}; {h['components']})")
    found = [h for h in summary["heads"] if h["validated"]]
    tp = sum(h["behaviour"] == KNOWN[where[(h["layer"], h["head"])]][1] for h in found if (h["layer"], h["head"]) in where)
    print(f"planted: {right} of {len(summary['heads'])} heads labelled as planted; precision {tp}/{len(found)}, "
          f"recall {tp}/{len(where)}")


def hebrew_word_starts() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, _ = make_checkpoint(Path(tmp), n_layer=1, n_head=2, n_embd=24, block_size=128, bible=True, lang="he")
        settings = Settings(n_boot=300, decompose_windows=32)
        inputs = load_inputs(ckpt, settings)
        heads = {"word start": latest(targets("word_start")),
                 "0.45 word start + 0.55 uniform": mix((0.45, latest(targets("word_start"), "uniform")), (0.55, uniform))}
        plant(inputs.model, inputs.tokenizer, "he", {(0, h): head for h, head in enumerate(heads.values())})
        summary = Summary(run_analysis(inputs, settings)).to_dict()
    vowel = summary["detectors"]["vowel"]["heldout"]
    for h, name in enumerate(heads):
        label = summary["heads"][h]["behaviour"]
        print(f"Hebrew {name} head -> {label}: held-out vowel mass {vowel['score'][0][h]:.3f}, uniform attention "
              f"{vowel['baseline'][0][h]:.3f}, positional control {vowel['control'][0][h]:.3f}, selectivity "
              f"{vowel['selectivity'][0][h]:+.3f}")


def stability(repeats: int = 40) -> None:
    pools, at_cut = picky_pools()
    for cut in (at_cut, at_cut - 0.02, at_cut - 0.05):
        labels, points = [], []
        for seed in range(repeats):
            rng = np.random.default_rng(seed)
            stats = [split_stats(*(a[idx] for a in pools[k]), cut, per_test_alpha(0.05, 16 * 27), 200, rng)
                     for k, idx in ((k, rng.choice(640, 128, replace=False)) for k in pools)]
            labels.append(bool(validated(*stats, cut, 10)[0, 0, 0]))
            points.append(all(st.selectivity[0, 0, 0] >= cut for st in stats))  # a point-estimate rule at the same cut
        print(f"head at selectivity {at_cut:.3f}, cut {cut:.3f}: validated in {sum(labels)} of {repeats} window draws "
              f"(same label in {max(sum(labels), repeats - sum(labels))}; a point-estimate rule: {sum(points)} of {repeats})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--preset", default="small", choices=sorted(PRESETS))
    args = p.parse_args()
    torch.set_num_threads(1)
    untrained(args.seeds, args.preset)
    planted()
    hebrew_word_starts()
    stability()


if __name__ == "__main__":
    main()
