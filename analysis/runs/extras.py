"""analyze.py's analyses beyond the raw attention weights: value-weighted attention, a
counterfactual pair, token importance / entropy / rollout, a query-key map and head ablation.

`add_arguments` adds the flags, `check_arguments` refuses bad values before any work,
`check_inputs` checks them against the loaded model, and `run_beyond` runs what was asked on
the held-out windows, adds keys to the summary, draws figures into the report folder and
returns the HTML report's extra sections and a markdown section for report.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from analysis.report.figures import extras as bf
from analysis.measures import detectors as det
from analysis.measures.ablation import ablation_study, repeated_random_windows
from model.hooks import run_with_cache
from analysis.measures.counterfactual import align_positions, run_counterfactual
from analysis.report.figures.base import save, style
from analysis.measures.importance import EntropyAccumulator, highlighted_html, token_importance
from analysis.measures.qk_map import qk_map
from analysis.measures.rollout import attention_rollout
from analysis.measures.value_weighted import row_disagreement, row_normalize, value_weighted_attention
from data.charclasses import CLASS_NAMES, classify
from data.tokenizer import UnknownCharactersError

PROJECTION_PACKAGES = {"tsne": "sklearn", "umap": "umap"}


class BeyondError(ValueError):
    """A bad value of one of the flags below (one line, shown without a traceback)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("beyond attention weights (each adds a report section; run on held-out windows)")
    g.add_argument("--value-weighted", action="store_true",
                   help="score the detectors on value-weighted attention ||alpha_ij v_j W_O|| (Kobayashi et al. 2020, rows "
                   "normalized) instead of raw weights, and report where the two disagree")
    g.add_argument("--counterfactual", nargs=2, metavar=("TEXT_A", "TEXT_B"),
                   help="two related texts (any lengths up to the block size): per-head attention change on aligned characters")
    g.add_argument("--rollout", action="store_true",
                   help="attention rollout (Abnar & Zuidema 2020), token importance and attention entropy per head and layer")
    g.add_argument("--qk-map", metavar="L.H", help="query-key joint map of head H of layer L (AttentionViz)")
    g.add_argument("--projection", choices=("pca", "tsne", "umap"), default="pca",
                   help="2-D projection for --qk-map (tsne needs scikit-learn, umap needs umap-learn)")
    g.add_argument("--ablation", action="store_true",
                   help="ablate each head alone and measure the held-out loss change, overall and on the positions its "
                   "behaviour concerns; flags validated heads whose ablation changes nothing as visible_but_unused")
    g.add_argument("--ablation-mode", choices=("zero", "mean"), default="zero", help="replace a head's output by zero or by its mean")
    g.add_argument("--ablation-tol", type=float, default=0.01,
                   help="a validated head whose ablation moves the loss by less than this (nats/char) is visible_but_unused")
    g.add_argument("--beyond-windows", type=int, default=64, help="held-out windows used by the analyses above")


def wanted(args: argparse.Namespace) -> bool:
    return bool(args.value_weighted or args.counterfactual or args.rollout or args.qk_map or args.ablation)


def parse_head(spec: str) -> tuple[int, int]:
    try:
        layer, head = (int(x) for x in spec.split("."))
    except ValueError:
        raise BeyondError(f"--qk-map needs LAYER.HEAD, e.g. 1.2, got {spec!r}") from None
    return layer, head


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse bad values of the flags above, before any work."""
    if args.beyond_windows <= 0:
        raise BeyondError(f"--beyond-windows must be positive, got {args.beyond_windows}")
    if args.ablation_tol < 0:
        raise BeyondError(f"--ablation-tol must be >= 0, got {args.ablation_tol}")
    if args.counterfactual and not all(t.strip() for t in args.counterfactual):
        raise BeyondError("--counterfactual needs two non-empty texts")
    if args.qk_map:
        parse_head(args.qk_map)
        package = PROJECTION_PACKAGES.get(args.projection)
        if package and importlib.util.find_spec(package) is None:
            raise BeyondError(f"--projection {args.projection} needs the {package} package, which is not installed; use pca")


def check_inputs(args: argparse.Namespace, model, tokenizer) -> None:
    """Checks that need the model: the head exists, the counterfactual texts fit, are encodable and
    share at least 2 aligned characters."""
    c = model.config
    if args.qk_map:
        l, h = parse_head(args.qk_map)
        if not (0 <= l < c.n_layer and 0 <= h < c.n_head):
            raise BeyondError(f"--qk-map {args.qk_map}: the model has layers 0..{c.n_layer - 1} and heads 0..{c.n_head - 1}")
    for name, text in zip("AB", args.counterfactual or []):
        if not 2 <= len(text) <= c.block_size:
            raise BeyondError(f"--counterfactual text {name} has {len(text)} characters; it needs 2 to {c.block_size}")
        try:
            tokenizer.encode(text)
        except UnknownCharactersError as e:
            raise BeyondError(f"--counterfactual text {name}: {e}") from None
    if args.counterfactual and len(align_positions(*args.counterfactual)[0]) < 2:
        raise BeyondError("--counterfactual texts share fewer than 2 aligned characters; nothing to compare")


def _heldout_groups(inputs, n: int) -> list[tuple[list[str], torch.Tensor, torch.Tensor]]:
    """The first `n` held-out windows grouped by length: (texts, ids (B, T), classes (B, T))."""
    split = inputs.heldout
    groups: dict[int, list[str]] = {}
    for w in split.windows[:n]:
        groups.setdefault(len(w), []).append(w)
    out = []
    for texts in groups.values():
        ids = torch.as_tensor(np.stack([inputs.tokenizer.encode(t, unknown=split.unknown) for t in texts]).astype(np.int64))
        cls = torch.as_tensor(np.stack([classify(t, inputs.lang) for t in texts]).astype(np.int64))
        out.append((texts, ids, cls))
    return out


def _fmt_head_list(rows: list[dict], key: str) -> str:
    return ", ".join(f"L{r['layer']}H{r['head']} ({r[key]:.2f})" for r in rows) or "none"


class _Report:
    """Collects figures, HTML sections and markdown for the report folder."""

    def __init__(self, out_dir: Path):
        self.out_dir, self.sections, self.markdown = out_dir, [], ["## Beyond attention weights", ""]

    def section(self, title: str, figures: list[tuple[str, str, Any]], html: str = "", md: list[str] = ()) -> None:
        entries = []
        with style():
            for name, caption, fig in figures:
                save(fig, self.out_dir / name)
                entries.append({"file": f"{name}.png", "title": title, "caption": caption})
        self.sections.append({"title": title, "html": html, "figures": entries})
        self.markdown += [f"### {title}", "", *md, *[f"![{c}]({e['file']})" for (_, c, _), e in zip(figures, entries)], ""]


@torch.no_grad()
def run_beyond(args: argparse.Namespace, inputs, summary: dict, out_dir: Path, progress: bool = True) -> tuple[list[dict], str]:
    """Run the analyses asked for; returns (extra sections for report.html, markdown for report.md)."""
    model, L, H = inputs.model, inputs.model.config.n_layer, inputs.model.config.n_head
    report = _Report(Path(out_dir))
    groups = _heldout_groups(inputs, args.beyond_windows)
    n_win = sum(len(t) for t, _, _ in groups)
    heads_by_pos = {(h["layer"], h["head"]): h for h in summary["heads"]}
    names = list(summary["detectors"])

    if args.value_weighted or args.rollout or args.qk_map:
        tv_sum, raw_scores, vw_scores, n_tv = 0.0, [], [], 0
        # Entropy by position and the q/k map stack windows, so they use only the longest ones
        # (all of them, except with --sentences).
        longest = max(ids.size(1) for _, ids, _ in groups)
        entropy = EntropyAccumulator(L, H, longest)
        qk_parts, first = [], None
        qk_head = parse_head(args.qk_map) if args.qk_map else None
        bar = tqdm(total=n_win, desc="beyond", unit="win", disable=not progress, leave=False)
        for texts, ids, cls in groups:
            for start in range(0, len(texts), args.batch_size):
                sl = slice(start, start + args.batch_size)
                cache = run_with_cache(model, ids[sl])
                att = cache.stack("pattern").float()
                vw = row_normalize(value_weighted_attention(model, cache)) if args.value_weighted else None
                if first is None:
                    first = (texts[start], att[0], None if vw is None else vw[0])
                if args.value_weighted:
                    tv_sum, n_tv = tv_sum + row_disagreement(att, vw) * att.size(0), n_tv + att.size(0)
                    masks = det.target_masks(det.CharBatch(ids[sl], cls[sl]), names)
                    raw_scores.append(det.score_masks(att, masks).score)
                    vw_scores.append(det.score_masks(vw, masks).score)
                if args.rollout and att.size(-1) == longest:
                    entropy.add(att)
                if qk_head and att.size(-1) == longest and sum(p[0].shape[0] for p in qk_parts) < 16:
                    l, h = qk_head
                    qk_parts.append((cache.layer(l, "q")[:, h].numpy(), cache.layer(l, "k")[:, h].numpy(),
                                     cache.layer(l, "pattern")[:, h].numpy(), cls[sl].numpy()))
                bar.update(att.size(0))
        bar.close()
        text0, att0, vw0 = first
        if args.value_weighted:
            _value_weighted_section(report, summary, heads_by_pos, names, tv_sum / n_tv, raw_scores, vw_scores, text0, att0, vw0)
        if args.rollout:
            _rollout_section(report, summary, entropy, text0, att0, inputs.lang)
        if qk_head:
            _qk_section(report, summary, qk_parts, qk_head, args.projection)

    if args.counterfactual:
        a, b = args.counterfactual
        cf = run_counterfactual(model, inputs.tokenizer.encode(a), inputs.tokenizer.encode(b), a, b)
        summary["counterfactual"] = cf.summary()
        top = cf.metrics["ranking"][0]
        l, h = top["layer"], top["head"]
        aligned = "".join(a[i] for i in cf.pos_a)
        report.section("Counterfactual pair", [("counterfactual", f"L{l}H{h}, the head most changed between the two texts",
                       bf.counterfactual_figure(cf.attention_a[l, h], cf.attention_b[l, h], cf.difference(l, h), aligned,
                                                a, b, cf.metrics["mean_abs_diff"], l, h))],
                       md=[f"A: `{a}`  B: `{b}` ({cf.metrics['n_aligned']} aligned characters). Heads most changed "
                           "(mean |ΔA| on aligned query/key pairs): " + _fmt_head_list(cf.metrics["ranking"][:5], "mean_abs_diff") + "."])

    if args.ablation:
        _ablation_section(report, args, inputs, summary, heads_by_pos, groups, progress)
    return report.sections, "\n".join(report.markdown)


def append_markdown(report_md: Path, markdown: str) -> None:
    """Add the beyond section to report.md (inside the staged report folder)."""
    with open(report_md, "a", encoding="utf-8") as f:
        f.write("\n" + markdown + "\n")


def _value_weighted_section(report, summary, heads_by_pos, names, tv, raw_scores, vw_scores, text0, att0, vw0) -> None:
    with warnings.catch_warnings():  # a detector without targets in any window (short sentences) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        raw = np.nanmean(torch.cat(raw_scores).numpy(), axis=0)  # (D, L, H)
        vw = np.nanmean(torch.cat(vw_scores).numpy(), axis=0)
    rows = []
    for (l, h), head in heads_by_pos.items():
        if head.get("behaviour", "none") in names:
            d = names.index(head["behaviour"])
            rows.append({"layer": l, "head": h, "behaviour": head["behaviour"],
                         "raw_score": round(float(raw[d, l, h]), 4), "value_weighted_score": round(float(vw[d, l, h]), 4)})
    tv = tv.numpy()
    summary["value_weighted"] = {"disagreement": np.round(tv, 4).tolist(), "behaviour_scores": rows,
                                 "note": "disagreement: mean total-variation distance between raw and value-weighted rows"}
    worst = np.unravel_index(np.argmax(tv), tv.shape)
    md = ["Per head, the mean total-variation distance between raw attention rows and value-weighted rows "
          "(0: the head's value vectors are equally large, so its weights tell the whole story).", "",
          "| layer | head | behaviour | raw score | value-weighted score |", "|---:|---:|---|---:|---:|",
          *[f"| {r['layer']} | {r['head']} | {r['behaviour']} | {r['raw_score']:.3f} | {r['value_weighted_score']:.3f} |" for r in rows], ""]
    report.section("Value-weighted attention", [
        ("value_weighted_disagreement", "Where raw and value-weighted attention disagree", bf.disagreement_figure(tv)),
        ("value_weighted_head", f"L{worst[0]}H{worst[1]}, the head whose weights mislead most",
         bf.value_weighted_figure(att0[worst].numpy(), vw0[worst].numpy(), text0, *map(int, worst)))], md=md)


def _rollout_section(report, summary, entropy, text0, att0, lang) -> None:
    ent = entropy.result()
    imp = token_importance(att0.unsqueeze(0))
    raw, rolled = imp["raw"][0].numpy(), imp["rollout"][0].numpy()
    summary["entropy"] = {"per_head": np.round(ent["per_head"].numpy(), 4).tolist(),
                          "per_layer": np.round(ent["per_layer"].numpy(), 4).tolist(),
                          "note": "mean normalized entropy of attention rows (0: one key, 1: uniform over visible keys)"}
    summary["importance"] = {"text": text0, "raw": np.round(raw, 5).tolist(), "rollout": np.round(rolled, 5).tolist()}
    html = "<p>Raw</p>" + highlighted_html(text0, raw, rtl=lang == "he") + "<p>Rollout</p>" + highlighted_html(text0, rolled, rtl=lang == "he")
    per_layer = ", ".join(f"layer {l}: {v:.2f}" for l, v in enumerate(summary["entropy"]["per_layer"]))
    report.section("Token importance, entropy and attention rollout", [
        ("importance", "Attention received by each character: raw and rolled out", bf.importance_figure(text0, raw, rolled)),
        ("entropy", "Normalized attention entropy per head and by position", bf.entropy_figure(ent["samples"].numpy(), ent["by_position"].numpy())),
        ("rollout", "Attention rollout over all layers on one held-out window",
         bf.rollout_figure(attention_rollout(att0).numpy(), text0))], html=html,
        md=[f"Mean normalized entropy per layer: {per_layer}."])


def _qk_section(report, summary, parts, head, projection) -> None:
    l, h = head
    q, k, a, c = (np.concatenate(x)[:16] for x in zip(*parts))
    T = q.shape[1]
    m = qk_map(q, k, a, method=projection)
    summary["qk_map"] = {"layer": l, "head": h, "method": projection, "n_windows": int(q.shape[0]), "n_pairs": m["n_pairs"],
                         "spearman_2d": round(m["spearman_2d"], 4), "spearman_full": round(m["spearman_full"], 4)}
    report.section(f"Query–key map of L{l}H{h}", [(f"qk_map_L{l}H{h}", "Queries and keys in one 2-D space",
                   bf.qk_map_figure(m["queries"], m["keys"], c.reshape(-1), CLASS_NAMES, l, h, m["spearman_2d"], projection))],
                   md=[f"{q.shape[0]} windows x {T} positions. Spearman correlation of distance with attention: "
                       f"{m['spearman_2d']:.2f} in the 2-D picture, {m['spearman_full']:.2f} in the full {q.shape[-1]}-d space "
                       "(negative: nearer keys get more attention)."])


def _ablation_section(report, args, inputs, summary, heads_by_pos, groups, progress: bool) -> None:
    model, c = inputs.model, inputs.model.config
    behaviours = {lh: head.get("behaviour", "none") for lh, head in heads_by_pos.items()}
    validated = {lh for lh, head in heads_by_pos.items() if head.get("validated")}
    induction = repeated_random_windows(range(1, inputs.tokenizer.vocab_size), max(8, args.beyond_windows // 4),
                                        c.block_size, seed=args.seed)
    res = ablation_study(model, [ids for _, ids, _ in groups], [cls for _, _, cls in groups], behaviours, validated,
                         mode=args.ablation_mode, tol=args.ablation_tol, induction_windows=induction,
                         batch_size=args.batch_size, progress=progress)
    for lh, r in res.items():
        heads_by_pos[lh].update(r.as_dict())
    delta = np.zeros((c.n_layer, c.n_head))
    flags = np.zeros_like(delta, dtype=bool)
    marked = np.zeros_like(flags)
    for (l, h), r in res.items():
        delta[l, h], flags[l, h], marked[l, h] = r.delta_loss, r.visible_but_unused, (l, h) in validated
    summary.setdefault("settings", {}).update({"ablation_mode": args.ablation_mode, "ablation_tol": args.ablation_tol})
    rows = ["| layer | head | behaviour | validated | Δ loss | Δ loss on its positions (n) | visible but unused |",
            "|---:|---:|---|---|---:|---:|---|"]
    for (l, h), r in sorted(res.items()):
        tgt = "—" if np.isnan(r.delta_loss_targeted) else f"{r.delta_loss_targeted:+.4f} ({r.n_targeted})"
        rows.append(f"| {l} | {h} | {behaviours[(l, h)]} | {'yes' if (l, h) in validated else 'no'} | {r.delta_loss:+.4f} | "
                    f"{tgt} | {'**yes**' if r.visible_but_unused else ''} |")
    report.section("Head ablation", [("ablation", f"Held-out loss change when each head is {args.ablation_mode}-ablated",
                   bf.ablation_figure(delta, marked, flags, mode=args.ablation_mode))],
                   md=[f"Each head {args.ablation_mode}-ablated alone; loss change in nats/char on the held-out windows, and on "
                       "the query positions where the head puts at least half its attention on its behaviour's targets "
                       f"(induction: the second copy of repeated random sequences). Tolerance {args.ablation_tol}.", "", *rows])
