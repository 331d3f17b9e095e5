"""The analysis of one model: stream the discovery and held-out windows through it once, score every
head against every detector, validate on held-out text, and return one `AnalysisResult`.

    inputs = load_inputs("checkpoints/en.pt", Settings())     # analysis.runs.inputs: every input check
    result = run_analysis(inputs, Settings())                 # typed result; the report layer writes it
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from charlens.analysis.measures import detectors as det
from charlens.analysis.measures.decomposition import MixtureFit, basis_names, target_distributions, unexplained
from charlens.analysis.measures.keychars import KeyCharCounts, KeyCharSums
from charlens.analysis.measures.positional import BatchSums, ClassFrequencies, StratumCounts
from charlens.analysis.measures.rootattention import root_entry, root_sums
from charlens.analysis.measures.rule import CLASS_LABELS, PART_CUT, gate_induction
from charlens.analysis.measures.scoring import class_attention_sums, head_metric_sums, score_windows
from charlens.analysis.measures.similarity import js_distance_matrix
from charlens.analysis.measures.stats import ScoreAccumulator, per_test_alpha, split_stats, validated
from charlens.analysis.runs.circuits import circuit_result
from charlens.analysis.runs.copying import copying_result, task_result
from charlens.analysis.runs.extract import AttentionBatch, char_batch, iter_attention, iter_char_batches
from charlens.analysis.runs.formation import formation_result
from charlens.analysis.runs.induction import RepeatedSequenceTest, induction_test
from charlens.analysis.runs.inputs import AnalysisInputs, Settings, TextSplit
from charlens.analysis.runs.results import AnalysisResult, Examples
from charlens.analysis.runs.salient import SALIENT_BATCHES, SalientPatterns
from charlens.analysis.runs.store import AttentionStore, examples_of
from charlens.analysis.runs.timeline import timeline_result
from charlens.analysis.runs.summarize import KeyChars, detector_results, head_table, split_scores
from charlens.data.charclasses import CLASS_NAMES
from charlens.data.tokenizer import Tokenizer


def split_frequencies(tokenizer: Tokenizer, split: TextSplit, lang: str, names: list[str],
                      batch_size: int) -> tuple[ClassFrequencies, torch.Tensor]:
    """One split's control frequencies, from its characters alone (before any attention): the positional and
    structural controls' (StratumCounts) and the key characters' (KeyCharCounts)."""
    counts, chars = StratumCounts(names), KeyCharCounts(tokenizer.vocab_size)
    for b in iter_char_batches(tokenizer, split.windows, lang, batch_size):
        counts.add(b)
        chars.add(b)
    return counts.frequencies(), chars.frequencies()


def class_members(tokenizer: Tokenizer, lang: str, names: list[str]) -> dict[str, np.ndarray]:
    """Per class detector among `names` that the rule refines (rule.CLASS_LABELS): which characters of the
    vocabulary are its members ((V,) bool), each seen as the first letter of a word (" x")."""
    classes = [n for n in names if n in CLASS_LABELS]
    if not classes:
        return {}
    b = char_batch(tokenizer, [" " + tokenizer.decode([i]) for i in range(tokenizer.vocab_size)], lang)
    return {n: det.REGISTRY[n].key_set(b)[:, 1].numpy() for n in classes}  # type: ignore[misc]


class SplitRun:
    """Running sums of one text split (only per-window score vectors are kept per window)."""

    def __init__(self, names: list[str], frequencies: tuple[ClassFrequencies, torch.Tensor]) -> None:
        self.names = names
        self.frequencies, self.key_frequencies = frequencies
        self.key_chars = KeyCharSums(len(self.key_frequencies))
        self.scores = ScoreAccumulator()
        self.class_heads = torch.zeros(())  # (L, H, C, C) once a batch is added
        self.class_base = torch.zeros(())  # (C, C)
        self.metrics: dict[str, torch.Tensor] = {}
        self.root: tuple[torch.Tensor, ...] = ()  # consonant -> same-word consonant at 2-3 (measures.rootattention)
        self.n = 0

    def add(self, batch: AttentionBatch) -> None:
        sums = BatchSums(batch.attention, batch.chars)  # shared by the controls and the key characters
        ws = score_windows(batch.attention, batch.chars, self.names, self.frequencies, sums)
        self.scores.add(ws.score.numpy(), ws.control.numpy(), ws.baseline.numpy())
        self.key_chars.add(sums)
        heads, base, _ = class_attention_sums(batch.attention, batch.classes)
        metrics = head_metric_sums(batch.attention)
        root = root_sums(batch.attention, batch.chars)
        if not self.n:  # the first batch's sums; later ones are added in place: no new long-lived tensor per batch
            self.class_heads, self.class_base, self.metrics, self.root = heads, base, metrics, root
        else:
            self.class_heads += heads
            self.class_base += base
            for total, part in zip(self.root, root):
                total.add_(part)
            for k, v in metrics.items():
                self.metrics[k] += v
        self.n += len(batch.texts)


class Decomposition:
    """The attention decomposition: fitted on the first `n_windows` discovery windows (whole batches),
    its unexplained share measured on the first `n_windows` held-out windows. Batches are taken CHUNK
    windows at a time: the basis patterns of a whole batch would set the analysis's peak memory."""

    CHUNK = 8

    def __init__(self, names: list[str], n_windows: int) -> None:
        self.fit = MixtureFit(basis_names(names))
        self.n_windows = n_windows
        self.n_fit = 0
        self.n_held = 0
        self.weights: Optional[np.ndarray] = None
        self.unexplained = torch.zeros(())

    def add(self, batch: AttentionBatch, split: str) -> None:
        if (self.n_fit if split == "discovery" else self.n_held) >= self.n_windows:
            return
        if split == "heldout" and self.weights is None:
            self.weights = self.fit.weights()
        weights = self.weights
        c = batch.chars
        for k in range(0, len(batch.texts), self.CHUNK):
            part = slice(k, k + self.CHUNK)
            chars = det.CharBatch(c.ids[part], c.classes[part], None if c.features is None else c.features[part])
            P = target_distributions(chars, self.fit.basis)
            if split == "discovery":
                self.fit.add(batch.attention[part], P)
            elif weights is not None:
                self.unexplained = self.unexplained + unexplained(batch.attention[part], P, weights).sum(0)
        if split == "discovery":
            self.n_fit += len(batch.texts)
        else:
            self.n_held += len(batch.texts)

    def result(self, L: int, H: int) -> dict:
        weights = self.weights if self.weights is not None else self.fit.weights()
        share = (self.unexplained / self.n_held).tolist() if self.n_held else np.full((L, H), np.nan).tolist()
        return {"basis": self.fit.basis, "weights": np.round(weights, 4).tolist(), "unexplained": share,
                "n_windows": {"discovery": self.n_fit, "heldout": self.n_held}}


def _row_normalize(m: torch.Tensor) -> torch.Tensor:
    assert m.dim() > 0, "no windows were added"
    return m / m.sum(-1, keepdim=True).clamp_min(1e-12)


def most_class_selective(attention: np.ndarray, base: np.ndarray) -> dict:
    """The head whose class-to-class attention (L, H, C, C) departs most from the base rate (C, C)
    (largest mean total-variation distance over query classes), with its log2 ratio to the base rate
    (NaN where the base rate is 0)."""
    tv = 0.5 * np.nansum(np.abs(attention - base), axis=-1).mean(-1)  # (L, H)
    l, h = np.unravel_index(np.nanargmax(tv), tv.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log2(np.where(base > 0, (attention[l, h] + 1e-4) / (base + 1e-4), np.nan))
    return {"head": [int(l), int(h)], "log2_ratio": ratio.tolist()}


def head_similarity(examples: Examples) -> Optional[dict]:
    """Mean Jensen-Shannon distance between every pair of heads on the example windows."""
    att = np.asarray(examples["attention"], dtype=np.float32)
    L, H = att.shape[1:3]
    if L * H < 2 or not len(att):
        return None
    return {"heads": [f"L{l}H{h}" for l in range(L) for h in range(H)],
            "distance": js_distance_matrix(att).tolist(), "windows": len(att)}


def induction_summary(test: RepeatedSequenceTest) -> dict:
    """The summary entry of the repeated-sequence test."""
    return {"score": test.discovery.score[0].tolist(), "baseline": float(test.discovery.baseline[0, 0, 0]),
            "discovery": split_scores(test.discovery, 0).to_dict(), "heldout": split_scores(test.heldout, 0).to_dict(),
            "validated": test.validated.tolist(), "loss_first_copy": float(test.copy.first.mean()),
            "loss_second_copy": float(test.copy.second.mean()), "loss_reordered_half": float(test.copy.reordered.mean()),
            "copy_drop": test.copy.drop, "copy_drop_se": test.copy.drop_se, "copy_sequences": len(test.copy.first),
            "n_windows": test.n_windows, "length": test.length,
            "letters": test.pool}


def key_characters(inputs: AnalysisInputs, runs: dict[str, SplitRun], names: list[str]) -> KeyChars:
    """Every head's key characters on both splits (each split's enrichment over its own positional control)."""
    return KeyChars([inputs.tokenizer.decode([i]) for i in range(inputs.tokenizer.vocab_size)],
                    runs["discovery"].key_chars.result(runs["discovery"].key_frequencies),
                    runs["heldout"].key_chars.result(runs["heldout"].key_frequencies),
                    class_members(inputs.tokenizer, inputs.lang, names))


def run_analysis(inputs: AnalysisInputs, settings: Settings, save_attention: Optional[Path] = None,
                 progress: bool = False, copying: bool = True) -> AnalysisResult:
    """Score every head on the discovery and held-out windows and validate. copying=False leaves out the
    per-head copying ablation (half the time of a 4-layer model's analysis), which no group quantity reads:
    the training stages of a group comparison (--stages) are analysed without it."""
    torch.manual_seed(settings.seed)
    cfg = inputs.model.config
    L, H = cfg.n_layer, cfg.n_head
    names = settings.detectors_for(inputs.lang)
    splits = {"discovery": inputs.discovery, "heldout": inputs.heldout}
    runs = {k: SplitRun(names, split_frequencies(inputs.tokenizer, s, inputs.lang, names, settings.batch_size))
            for k, s in splits.items()}
    decomposition = Decomposition(names, settings.decompose_windows)
    salient = SalientPatterns(L, H)
    example_batches: list[AttentionBatch] = []
    store = None
    if save_attention is not None:
        n = len(inputs.discovery.windows) + len(inputs.heldout.windows)
        T = max(len(w) for s in splits.values() for w in s.windows)
        store = AttentionStore(Path(save_attention), n, L, H, T)
    for key, split in splits.items():
        batches = iter_attention(inputs.model, inputs.tokenizer, split.windows, inputs.lang, settings.batch_size,
                                 progress=progress, desc=key, value_weighted=settings.value_weighted)
        for k, batch in enumerate(batches):
            runs[key].add(batch)
            decomposition.add(batch, key)
            if key == "discovery" and k < SALIENT_BATCHES:
                salient.add(batch)
            if key == "heldout" and sum(len(b.texts) for b in example_batches) < settings.n_examples:
                example_batches.append(batch)
            if store is not None:
                store.add(batch, key)
    if store is not None:
        store.close(inputs.lang)

    rng = np.random.default_rng(settings.seed)
    n_tests = (len(names) + 1) * L * H  # every detector and the repeated-sequence test, for every head
    alpha_test = per_test_alpha(settings.alpha, n_tests)
    cut = settings.min_selectivity
    stats = {k: split_stats(*runs[k].scores.arrays(), cut, alpha_test, settings.n_boot, rng) for k in splits}
    repeated = induction_test(inputs, settings, alpha_test, rng)
    valid, part = (gate_induction(validated(stats["discovery"], stats["heldout"], c, settings.min_windows), names,
                                  repeated.validated) for c in (cut, PART_CUT))
    decomposed = decomposition.result(L, H)
    offsets = [k for k, n in enumerate(det.offset_detector_names()) if n in names]  # those among the chosen detectors
    offset_idx = [names.index(det.offset_detector_names()[k]) for k in offsets]
    disc_run = runs["discovery"]
    class_attention = _row_normalize(disc_run.class_heads)
    class_base = _row_normalize(disc_run.class_base)
    examples = examples_of(example_batches, settings.n_examples, inputs.lang)
    heads = head_table(names, stats["discovery"], stats["heldout"], valid, part, cut, decomposed,
                       key_characters(inputs, runs, names))
    circuits = circuit_result(inputs.model, settings.seed)
    texts = {k: s.describe() for k, s in splits.items()}
    if inputs.unknown is not None:
        texts["unknown_chars"] = inputs.unknown.describe()
    return AnalysisResult(
        checkpoint=inputs.ckpt_path, name=inputs.name, lang=inputs.lang,
        model={"n_layer": L, "n_head": H, "n_embd": cfg.n_embd, "block_size": cfg.block_size,
               "vocab_size": cfg.vocab_size, "iter": int(inputs.state.get("iter", 0))},
        settings={"window": cfg.block_size, **settings.to_dict(), "detectors": names, "alpha_per_test": alpha_test,
                  "n_tests": n_tests, "local_window": det.LOCAL_WINDOW},
        texts=texts,
        detectors=detector_results(names, stats["discovery"], stats["heldout"], valid),
        heads=heads,
        offset_profile={"offsets": offsets, **{k: np.moveaxis(stats[k].score[offset_idx], 0, -1).tolist() for k in splits}},
        class_attention={"classes": list(CLASS_NAMES), "discovery": class_attention.tolist(),
                         "heldout": _row_normalize(runs["heldout"].class_heads).tolist(), "base_rate": class_base.tolist(),
                         "most_selective": most_class_selective(class_attention.double().numpy(), class_base.double().numpy())},
        head_metrics={k: (v / disc_run.n).tolist() for k, v in disc_run.metrics.items()},
        induction_test=induction_summary(repeated),
        decomposition=decomposed,
        salient_patterns=salient.patterns(),
        head_similarity=head_similarity(examples),
        examples=examples,
        timeline=timeline_result(inputs.state.get("history", []), heads, cut),
        circuits=circuits,
        copying=copying_result(inputs, settings) if copying else None,
        task=task_result(inputs),
        formation=formation_result(inputs.state.get("history", []), heads, circuits, cut),
        root_attention=root_entry(runs["heldout"].root),  # type: ignore[arg-type]  # the four sums of root_sums
    )
