"""Find out what each attention head of a charlens checkpoint does, with evidence.

    python analyze.py --ckpt checkpoints/en.pt                      # the checkpoint corpus: train text vs held-out books
    python analyze.py --ckpt checkpoints/he.pt --text some.txt      # any text: first half discovery, second half held-out
    python analyze.py --ckpt checkpoints/en.pt --sentences "The cat sat on the mat." "What is the capital of France?"
    python analyze.py --ckpt checkpoints/en.pt --save-attention out.npz
    python analyze.py --compare checkpoints/en.pt checkpoints/he.pt --out reports/en_vs_he
    python analyze.py --compare 'checkpoints/en_s*.pt' --vs 'checkpoints/he_s*.pt'   # seeds as the unit
    python analyze.py --study 'checkpoints/*_s?.pt' --stages     # en, en_novowel, he, he_niqqud: script or language

Flow: parse -> check every input (one-line errors, before any work) -> analysis.runs (typed results)
-> analysis.report.render into a staged folder -> rename it into place, so a failed run never leaves
a half report.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import signal
import sys
from pathlib import Path
from typing import Optional

from charlens.analysis.report.folder import check_output_dir, staged_output_dir
from charlens.analysis.report.live_model import MAX_LIVE_BYTES
from charlens.analysis.report.markdown import few_windows, format_head_table
from charlens.analysis.report.render import write_analysis_report
from charlens.analysis.runs.extras import ExtrasRequest, check_request
from charlens.analysis.runs.inputs import UNKNOWN_POLICIES, Settings, load_inputs
from charlens.analysis.runs.snapshots import snapshot_attention
from charlens.analysis.runs.store import check_attention_target, place_file
from charlens.data.errors import (CharlensError, OneLineParser, UsageError, interrupt_status, raise_terminated,
                                  visible)
from charlens.groupcli import live_entry, run_compare, run_study, warn_unknown
from charlens.groupjobs import analyse_model

PROJECTION_PACKAGES = {"tsne": "sklearn", "umap": "umap"}
# Ranges of the integer flags: beyond these a run would take hours or more memory than a laptop has.
INT_RANGES = {"windows": (1, 100_000), "batch_size": (1, 4096), "n_boot": (1, 100_000), "min_windows": (1, 100_000),
              "induction_windows": (1, 10_000), "decompose_windows": (1, 100_000), "beyond_windows": (1, 10_000),
              "seed": (0, 2**32 - 1)}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="analyze.py",
        description="Score every attention head against a suite of behaviour detectors on discovery text and "
        "validate each finding on held-out text the discovery never saw.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_argument_group("what to analyze")
    src.add_argument("--ckpt", help="checkpoint to analyze (e.g. checkpoints/en.pt)")
    src.add_argument("--compare", nargs="+", metavar="CKPT",
                     help="compare two checkpoints (--compare A B) or two groups of seeds (--compare A1 A2 ... --vs B1 B2 ...; "
                     "quoted shell globs such as 'checkpoints/en_s*.pt' are expanded): every model is analysed on the same "
                     "held-out windows (the same verses in both languages for the default Bibles), each report goes to "
                     "OUT/<model>/, the comparison (findings that replicate across seeds, figures, compare.json, report.html) "
                     "to OUT (default reports/<A>_vs_<B>)")
    src.add_argument("--vs", nargs="+", metavar="CKPT", help="the second group of --compare (see there)")
    src.add_argument("--study", nargs="+", metavar="CKPT",
                     help="the script control: seeds of the four conditions en, en_novowel (train.py --drop-vowels), he and "
                     "he_niqqud (--keep-niqqud), grouped by the corpus each was trained on (quoted globs are expanded), all "
                     "analysed on the same held-out verses; reports each English-vs-Hebrew finding as following the "
                     "script, the language, both or neither (default OUT reports/study)")
    src.add_argument("--stages", action="store_true",
                     help="with --compare/--vs or --study (English and Hebrew): also analyse every model's snapshots "
                     "(train.py --snapshots N: <name>.step<k>.pt) the same way, and report each quantity at every "
                     "recorded step and the steps over which each finding holds (one more analysis per snapshot)")
    src.add_argument("--text", metavar="FILE", help="analyze this UTF-8 text instead of the checkpoint's corpus: "
                     "its first half is the discovery text, its second half the held-out text")
    src.add_argument("--sentences", nargs="+", metavar="S", help="held-out texts, each its own window "
                     "(discovery stays on the checkpoint's training text)")

    a = p.add_argument_group("analysis settings (all recorded in summary.json)")
    d = Settings()
    a.add_argument("--windows", type=int, default=d.n_windows, help="windows sampled (seeded) from each of the discovery and held-out texts")
    a.add_argument("--batch-size", type=int, default=d.batch_size, help="windows per forward pass")
    a.add_argument("--min-selectivity", type=float, default=d.min_selectivity,
                   help="the cut: a behaviour needs the lower confidence bound of its selectivity, (score - control) / "
                   "(1 - control), above this on discovery AND held-out text (control, by detector: uniform attention; "
                   "a head with the head's own attention at every offset, for word, line and separator detectors; a "
                   "class-blind head with the head's positional profile, for classes; or a one-character prefix matcher)")
    a.add_argument("--alpha", type=float, default=d.alpha,
                   help="family-wise error rate; each test uses alpha / (layers*heads*(detectors+1)) (Bonferroni; the +1 "
                   "is the repeated-sequence induction test)")
    a.add_argument("--n-boot", type=int, default=d.n_boot,
                   help="bootstrap resamples of windows for the selectivity intervals (1..100,000)")
    a.add_argument("--min-windows", type=int, default=d.min_windows,
                   help="a detector validates nothing unless each text split has at least this many windows with its targets")
    a.add_argument("--induction-windows", type=int, default=d.induction_windows,
                   help="random letter sequences repeated twice in each of the two repetition sets (discovery, held-out) "
                   "of the induction test, which an induction head must pass as well as a prefix-match detector")
    a.add_argument("--decompose-windows", type=int, default=d.decompose_windows,
                   help="windows of each split for the attention decomposition (fitted on discovery, measured on held-out)")
    a.add_argument("--unknown-chars", choices=UNKNOWN_POLICIES, default=d.unknown_chars,
                   help="characters of --text / --sentences that the model's vocabulary lacks: stop with an error naming them "
                   "(and saying so when most letters are outside the model's alphabet), drop them from the text, or replace "
                   "each with the reserved unknown token; drop and replace are counted on the console and in the report")
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
    o.add_argument("--no-live-model", action="store_true",
                   help="leave the model's weights out of report.html (no live view: the page cannot run the model "
                   f"on typed text); models above {MAX_LIVE_BYTES / 1e6:.0f} MB of float16 weights are left out anyway")
    o.add_argument("--quiet", action="store_true", help="no progress bars and no head table on stdout")
    r = p.add_argument_group("resources")
    r.add_argument("--procs", type=int, metavar="N",
                   help="with --compare or --study: analyses run at once, each in a worker process of one thread "
                        "(default: one per CPU core, at most one per model and snapshot); 1 = one after another in "
                        "this process, with progress bars. In 1..256")
    return p


def parse_head(spec: str) -> tuple[int, int]:
    try:
        layer, head = (int(x) for x in spec.split("."))
    except ValueError:
        raise UsageError(f"--qk-map needs LAYER.HEAD, e.g. 1.2, got {spec!r}") from None
    return layer, head


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad flag values before any work starts."""
    if args.vs and not args.compare:
        raise UsageError("--vs is the second group of --compare")
    sources = [flag for flag, given in (("--ckpt", args.ckpt), ("--compare", args.compare), ("--study", args.study)) if given]
    if not sources:
        raise UsageError("give a checkpoint with --ckpt PATH (or two with --compare A B, groups with --compare ... --vs ..., "
                         "or the four conditions with --study ...)")
    if len(sources) > 1:
        raise UsageError(f"give one of {', '.join(sources)}, not several")
    if args.procs is not None and args.ckpt:
        raise UsageError("--procs works with --compare or --study (--ckpt analyses one model)")
    if args.procs is not None and not 1 <= args.procs <= 256:
        raise UsageError(f"--procs must be in 1..256, got {args.procs}")
    if args.stages and args.ckpt:
        raise UsageError("--stages works with --compare or --study (a single model's snapshots: analyse each with --ckpt)")
    if args.study and (args.text or args.sentences is not None):
        raise UsageError("--study compares the conditions on their own held-out verses; drop --text/--sentences")
    if (args.compare or args.study) and args.save_attention:
        raise UsageError("--save-attention works with --ckpt only")
    if args.text and args.sentences is not None:
        raise UsageError("give either --text or --sentences, not both")
    if args.sentences is not None and not [s for s in args.sentences if s.strip()]:
        raise UsageError("--sentences needs at least one non-empty sentence")
    for name, (low, high) in INT_RANGES.items():
        value = getattr(args, name)
        if not low <= value <= high:
            raise UsageError(f"--{name.replace('_', '-')} must be in {low}..{high:,}, got {value}")
    if not 0.0 < args.min_selectivity < 1.0:  # also refuses nan
        raise UsageError(f"--min-selectivity must be in (0, 1), got {args.min_selectivity}")
    if not 0.0 < args.alpha < 1.0:
        raise UsageError(f"--alpha must be in (0, 1), got {args.alpha}")
    if not (0.0 <= args.ablation_tol < float("inf")):
        raise UsageError(f"--ablation-tol must be a finite number >= 0, got {args.ablation_tol}")
    if args.counterfactual and not all(t.strip() for t in args.counterfactual):
        raise UsageError("--counterfactual needs two non-empty texts")
    if args.qk_map:
        parse_head(args.qk_map)
        package = PROJECTION_PACKAGES.get(args.projection)
        if package and importlib.util.find_spec(package) is None:
            raise UsageError(f"--projection {args.projection} needs the {package} package, which is not installed; use pca")
    if args.save_attention and not args.save_attention.endswith(".npz"):
        raise UsageError(f"--save-attention needs a .npz file name, got {args.save_attention}")


def settings_from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        n_windows=args.windows, batch_size=args.batch_size, min_selectivity=args.min_selectivity, alpha=args.alpha,
        n_boot=args.n_boot, min_windows=args.min_windows, induction_windows=args.induction_windows,
        decompose_windows=args.decompose_windows, seed=args.seed, unknown_chars=args.unknown_chars, value_weighted=args.value_weighted,
    )


def request_from_args(args: argparse.Namespace) -> ExtrasRequest:
    return ExtrasRequest(
        value_weighted=args.value_weighted, rollout=args.rollout, qk_map=parse_head(args.qk_map) if args.qk_map else None,
        projection=args.projection, counterfactual=tuple(args.counterfactual) if args.counterfactual else None,
        ablation=args.ablation, ablation_mode=args.ablation_mode, ablation_tol=args.ablation_tol,
        windows=args.beyond_windows, batch_size=args.batch_size, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    """Exit status 0; 2 with one line for any problem with the input; 130 or 143 after Ctrl-C or SIGTERM, with one
    line (the staged report is removed, a previous report at --out is left as it was)."""
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        check_args(args)
        if args.compare or args.study:
            settings, request = settings_from_args(args), request_from_args(args)
            return (run_compare if args.compare else run_study)(args, settings, request)
        return run_single(args)
    except CharlensError as e:
        print(f"analyze.py: error: {visible(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        how = "terminated (SIGTERM)" if interrupt_status(e) == 143 else "interrupted"
        print(f"analyze.py: {how}; no report was written (a previous report at --out is unchanged)", file=sys.stderr)
        return interrupt_status(e)
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_single(args: argparse.Namespace) -> int:
    settings, request = settings_from_args(args), request_from_args(args)
    out_dir = Path(args.out) if args.out else Path("reports") / Path(args.ckpt).stem
    check_output_dir(out_dir)
    if args.save_attention:
        target = Path(args.save_attention)
        if out_dir.resolve() in target.resolve().parents:
            raise UsageError(f"--save-attention {target} is inside the report folder {out_dir}; give a path outside it")
        check_attention_target(target)
    inputs = load_inputs(args.ckpt, settings, text_path=args.text, sentences=args.sentences)
    check_request(request, inputs.model, inputs.tokenizer)
    warn_unknown(inputs)
    with staged_output_dir(out_dir) as tmp:
        saved = tmp / "all_attention.npz" if args.save_attention else None
        summary = analyse_model(inputs, settings, request, progress=not args.quiet, save_attention=saved)
        snapshots = snapshot_attention(inputs, summary.examples, settings.value_weighted)
        summary = dataclasses.replace(summary, snapshots=snapshots)
        for why in snapshots.skipped if snapshots is not None else ():
            print(f"analyze.py: note: snapshot left out of the step slider: {visible(why)}", file=sys.stderr)
        data = write_analysis_report(summary, tmp, live=live_entry(args, inputs))
        if saved is not None:
            place_file(saved, Path(args.save_attention))
    if not args.quiet:
        print(format_head_table(data))
        print(f"report written to {visible(str(out_dir))}/ (summary.json, heads.csv, report.md, report.html, figures, attention_examples.npz)")
    n_heldout = len(inputs.heldout.windows)
    if n_heldout < settings.min_windows:
        print(f"analyze.py: note: the held-out text gave {n_heldout} window(s), fewer than --min-windows ({settings.min_windows}): "
              "scores are reported, but no head can be validated on so little text", file=sys.stderr)
    else:
        for line in few_windows(data):
            print(f"analyze.py: note: {line}", file=sys.stderr)
    if not data["timeline"]["recorded"]:
        print(f"analyze.py: note: {visible(inputs.name)}: {data['timeline']['note']}", file=sys.stderr)
    return 0
