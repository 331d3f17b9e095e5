"""Find out what each attention head of a charlens checkpoint does, with evidence.

    python analyze.py --ckpt checkpoints/en.pt                      # the checkpoint corpus: train text vs held-out books
    python analyze.py --ckpt checkpoints/he.pt --text some.txt      # any text: first half discovery, second half held-out
    python analyze.py --ckpt checkpoints/en.pt --sentences "The cat sat on the mat." "What is the capital of France?"
    python analyze.py --ckpt checkpoints/en.pt --save-attention out.npz
    python analyze.py --compare checkpoints/en.pt checkpoints/he.pt --out reports/en_vs_he

Flow: parse -> check every input (one-line errors, before any work) -> analysis.runs (typed results)
-> analysis.report.render into a staged folder -> rename it into place, so a failed run never leaves
a half report.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
from pathlib import Path
from typing import Optional

from analysis.report.files import move_file, staged_output_dir
from analysis.report.markdown import format_head_table
from analysis.report.render import write_analysis_report, write_comparison_report
from analysis.runs.compare import compare_summaries
from analysis.runs.extras import ExtrasRequest, check_request, run_extras
from analysis.runs.inputs import UNKNOWN_POLICIES, AnalysisInputs, Settings, load_inputs, parallel_heldout
from analysis.runs.results import Extras, Summary
from analysis.runs.single import run_analysis
from data.errors import CharlensError, UsageError

PROJECTION_PACKAGES = {"tsne": "sklearn", "umap": "umap"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="analyze.py",
        description="Score every attention head against a suite of behaviour detectors on discovery text and "
        "validate each finding on held-out text the discovery never saw.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_argument_group("what to analyze")
    src.add_argument("--ckpt", help="checkpoint to analyze (e.g. checkpoints/en.pt)")
    src.add_argument("--compare", nargs=2, metavar=("A", "B"),
                     help="analyze two checkpoints and compare them: each report goes to OUT/<name>/, the comparison "
                     "(findings, figures, compare.json, report.html) to OUT (default reports/<A>_vs_<B>); when both "
                     "use the default Bibles, held-out windows start at the same held-out verses in both languages")
    src.add_argument("--text", metavar="FILE", help="analyze this UTF-8 text instead of the checkpoint's corpus: "
                     "its first half is the discovery text, its second half the held-out text")
    src.add_argument("--sentences", nargs="+", metavar="S", help="held-out texts, each its own window "
                     "(discovery stays on the checkpoint's training text)")

    a = p.add_argument_group("analysis settings (all recorded in summary.json)")
    d = Settings()
    a.add_argument("--windows", type=int, default=d.n_windows, help="windows sampled (seeded) from each of the discovery and held-out texts")
    a.add_argument("--batch-size", type=int, default=d.batch_size, help="windows per forward pass")
    a.add_argument("--threshold", type=float, default=d.threshold,
                   help="a behaviour needs at least this mean attention mass on its target positions")
    a.add_argument("--min-lift", type=float, default=d.min_lift,
                   help="a behaviour also needs its mass to beat uniform causal attention by at least this much")
    a.add_argument("--alpha", type=float, default=d.alpha,
                   help="family-wise error rate; each head x detector test uses alpha / (layers*heads*detectors) (Bonferroni)")
    a.add_argument("--n-boot", type=int, default=d.n_boot, help="bootstrap resamples of windows for the lift intervals")
    a.add_argument("--min-windows", type=int, default=d.min_windows,
                   help="a detector validates nothing unless each text split has at least this many windows with its targets")
    a.add_argument("--induction-windows", type=int, default=d.induction_windows,
                   help="random sequences repeated twice for the standard induction test")
    a.add_argument("--unknown-chars", choices=UNKNOWN_POLICIES, default=d.unknown_chars,
                   help="characters of --text / --sentences that the model's vocabulary lacks: stop with an error naming them, "
                   "drop them from the text, or replace each with the reserved unknown token")
    a.add_argument("--seed", type=int, default=d.seed, help="seed for window sampling, bootstrap and the induction test")

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

    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="report folder (default: reports/<checkpoint name>/)")
    o.add_argument("--save-attention", metavar="FILE.npz",
                   help="also store the attention, text and character classes of every analyzed window")
    o.add_argument("--quiet", action="store_true", help="no progress bars and no head table on stdout")
    return p


def parse_head(spec: str) -> tuple[int, int]:
    try:
        layer, head = (int(x) for x in spec.split("."))
    except ValueError:
        raise UsageError(f"--qk-map needs LAYER.HEAD, e.g. 1.2, got {spec!r}") from None
    return layer, head


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad flag values before any work starts."""
    if not args.ckpt and not args.compare:
        raise UsageError("give a checkpoint with --ckpt PATH (or two with --compare A B)")
    if args.ckpt and args.compare:
        raise UsageError("give either --ckpt or --compare, not both")
    if args.compare and args.save_attention:
        raise UsageError("--save-attention works with --ckpt only")
    if args.text and args.sentences is not None:
        raise UsageError("give either --text or --sentences, not both")
    if args.sentences is not None and not [s for s in args.sentences if s.strip()]:
        raise UsageError("--sentences needs at least one non-empty sentence")
    for name in ("windows", "batch_size", "n_boot", "min_windows", "induction_windows", "beyond_windows"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0.0 < args.threshold <= 1.0:
        raise UsageError(f"--threshold must be in (0, 1], got {args.threshold}")
    if not 0.0 <= args.min_lift < 1.0:
        raise UsageError(f"--min-lift must be in [0, 1), got {args.min_lift}")
    if not 0.0 < args.alpha < 1.0:
        raise UsageError(f"--alpha must be in (0, 1), got {args.alpha}")
    if args.ablation_tol < 0:
        raise UsageError(f"--ablation-tol must be >= 0, got {args.ablation_tol}")
    if args.counterfactual and not all(t.strip() for t in args.counterfactual):
        raise UsageError("--counterfactual needs two non-empty texts")
    if args.qk_map:
        parse_head(args.qk_map)
        package = PROJECTION_PACKAGES.get(args.projection)
        if package and importlib.util.find_spec(package) is None:
            raise UsageError(f"--projection {args.projection} needs the {package} package, which is not installed; use pca")
    if args.save_attention and not args.save_attention.endswith(".npz"):
        raise UsageError(f"--save-attention needs a .npz file name, got {args.save_attention}")
    if args.save_attention and not os.access(Path(args.save_attention).resolve().parent, os.W_OK):
        raise UsageError(f"cannot write --save-attention {args.save_attention}: its folder is missing or not writable")


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        n_windows=args.windows, batch_size=args.batch_size, threshold=args.threshold, alpha=args.alpha,
        min_lift=args.min_lift, n_boot=args.n_boot, min_windows=args.min_windows, induction_windows=args.induction_windows,
        seed=args.seed, unknown_chars=args.unknown_chars, value_weighted=args.value_weighted,
    )


def request_from_args(args: argparse.Namespace) -> ExtrasRequest:
    return ExtrasRequest(
        value_weighted=args.value_weighted, rollout=args.rollout, qk_map=parse_head(args.qk_map) if args.qk_map else None,
        projection=args.projection, counterfactual=tuple(args.counterfactual) if args.counterfactual else None,
        ablation=args.ablation, ablation_mode=args.ablation_mode, ablation_tol=args.ablation_tol,
        windows=args.beyond_windows, batch_size=args.batch_size, seed=args.seed)


def analyze(inputs: AnalysisInputs, settings: Settings, request: ExtrasRequest, progress: bool,
            save_attention: Optional[Path] = None) -> Summary:
    """The analysis of one model and the extras asked for, as one summary."""
    analysis = run_analysis(inputs, settings, save_attention=save_attention, progress=progress)
    extras = run_extras(request, inputs, analysis, progress=progress) if request.wanted() else Extras()
    return Summary(analysis, extras)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        return run_compare(args) if args.compare else run_single(args)
    except CharlensError as e:
        print(f"analyze.py: error: {e}", file=sys.stderr)
        return 2


def run_single(args: argparse.Namespace) -> int:
    settings, request = settings_from_args(args), request_from_args(args)
    inputs = load_inputs(args.ckpt, settings, text_path=args.text, sentences=args.sentences)
    check_request(request, inputs.model, inputs.tokenizer)
    out_dir = Path(args.out) if args.out else Path("reports") / Path(args.ckpt).stem
    with staged_output_dir(out_dir) as tmp:
        saved = tmp / "all_attention.npz" if args.save_attention else None
        summary = analyze(inputs, settings, request, progress=not args.quiet, save_attention=saved)
        data = write_analysis_report(summary, tmp)
        if saved is not None:
            move_file(saved, Path(args.save_attention))
    if not args.quiet:
        print(format_head_table(data))
        print(f"report written to {out_dir}/ (summary.json, heads.csv, report.md, report.html, figures, attention_examples.npz)")
    n_heldout = len(inputs.heldout.windows)
    if n_heldout < settings.min_windows:
        print(f"analyze.py: note: the held-out text gave {n_heldout} window(s), fewer than --min-windows ({settings.min_windows}): "
              "scores are reported, but no head can be validated on so little text", file=sys.stderr)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """--compare A B: both analyses (on parallel held-out verses for the default Bibles), each
    written under OUT/<name>/, and the comparison under OUT; all in one staged folder."""
    settings, request = settings_from_args(args), request_from_args(args)
    a, b = (load_inputs(c, settings, text_path=args.text, sentences=args.sentences) for c in args.compare)
    for inputs in (a, b):
        check_request(request, inputs.model, inputs.tokenizer)
    if a.name == b.name:
        b = dataclasses.replace(b, name=b.name + "-2")
    if args.text is None and args.sentences is None:
        a, b = parallel_heldout(a, b, settings.n_windows, settings.seed) or (a, b)
    out_dir = Path(args.out) if args.out else Path("reports") / f"{a.name}_vs_{b.name}"
    with staged_output_dir(out_dir) as tmp:
        summaries, written = [], []
        for inputs in (a, b):
            (tmp / inputs.name).mkdir()
            summaries.append(analyze(inputs, settings, request, progress=not args.quiet))
            written.append(write_analysis_report(summaries[-1], tmp / inputs.name))
        comparison = compare_summaries(written[0], written[1])
        write_comparison_report(comparison, written, [s.examples for s in summaries], tmp,
                                links=[{"text": f"{i.name}: full report", "href": f"{i.name}/report.html"} for i in (a, b)])
    if not args.quiet:
        for data in written:
            print(f"{data['name']}:\n{format_head_table(data)}\n")
        print("\n".join(comparison.findings))
        print(f"comparison written to {out_dir}/ (report.html, compare.json, figures; "
              f"{a.name}/ and {b.name}/ hold each model's own report)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
