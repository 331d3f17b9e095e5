"""Find out what each attention head of a charlens checkpoint does, with evidence.

    python analyze.py --ckpt checkpoints/en.pt                      # the checkpoint corpus: train text vs held-out books
    python analyze.py --ckpt checkpoints/he.pt --text some.txt      # any text: first half discovery, second half held-out
    python analyze.py --ckpt checkpoints/en.pt --sentences "The cat sat on the mat." "What is the capital of France?"
    python analyze.py --ckpt checkpoints/en.pt --save-attention out.npz

Flow: parse -> validate inputs (one-line errors, before any work) -> analysis.pipeline -> write the
report into a temporary folder -> rename it into place, so a failed run never leaves a half report.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from analysis import beyond, pipeline
from analysis.report_md import OutputError, format_head_table, staged_output_dir, write_outputs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="analyze.py",
        description="Score every attention head against a suite of behaviour detectors on discovery text and "
        "validate each finding on held-out text the discovery never saw.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_argument_group("what to analyze")
    src.add_argument("--ckpt", help="checkpoint to analyze (e.g. checkpoints/en.pt)")
    src.add_argument("--text", metavar="FILE", help="analyze this UTF-8 text instead of the checkpoint's corpus: "
                     "its first half is the discovery text, its second half the held-out text")
    src.add_argument("--sentences", nargs="+", metavar="S", help="held-out texts, each its own window "
                     "(discovery stays on the checkpoint's training text)")

    a = p.add_argument_group("analysis settings (all recorded in summary.json)")
    d = pipeline.Settings()
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
                   help="a text split with fewer windows than this cannot validate anything")
    a.add_argument("--induction-windows", type=int, default=d.induction_windows,
                   help="random sequences repeated twice for the standard induction test")
    a.add_argument("--seed", type=int, default=d.seed, help="seed for window sampling, bootstrap and the induction test")
    # Extension point: options of further analyses (ablation, value-weighted, rollout, counterfactual) go here.
    beyond.add_arguments(p)

    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="report folder (default: reports/<checkpoint name>/)")
    o.add_argument("--save-attention", metavar="FILE.npz",
                   help="also store the attention, text and character classes of every analyzed window")
    o.add_argument("--quiet", action="store_true", help="no progress bars and no head table on stdout")
    return p


class UsageError(Exception):
    """Bad command line or input (one line, shown without a traceback)."""


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad flag values before any work starts."""
    if not args.ckpt:
        raise UsageError("give a checkpoint with --ckpt PATH")
    if args.text and args.sentences is not None:
        raise UsageError("give either --text or --sentences, not both")
    if args.sentences is not None and not [s for s in args.sentences if s.strip()]:
        raise UsageError("--sentences needs at least one non-empty sentence")
    for name in ("windows", "batch_size", "n_boot", "min_windows", "induction_windows"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0.0 < args.threshold <= 1.0:
        raise UsageError(f"--threshold must be in (0, 1], got {args.threshold}")
    if not 0.0 <= args.min_lift < 1.0:
        raise UsageError(f"--min-lift must be in [0, 1), got {args.min_lift}")
    if not 0.0 < args.alpha < 1.0:
        raise UsageError(f"--alpha must be in (0, 1), got {args.alpha}")
    if args.save_attention and not args.save_attention.endswith(".npz"):
        raise UsageError(f"--save-attention needs a .npz file name, got {args.save_attention}")
    if args.save_attention and not os.access(Path(args.save_attention).resolve().parent, os.W_OK):
        raise UsageError(f"cannot write --save-attention {args.save_attention}: its folder is missing or not writable")


def settings_from_args(args: argparse.Namespace) -> pipeline.Settings:
    return pipeline.Settings(
        n_windows=args.windows, batch_size=args.batch_size, threshold=args.threshold, alpha=args.alpha,
        min_lift=args.min_lift, n_boot=args.n_boot, min_windows=args.min_windows, induction_windows=args.induction_windows, seed=args.seed,
        value_weighted=args.value_weighted,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        beyond.check_arguments(args)
        settings = settings_from_args(args)
        inputs = pipeline.load_inputs(args.ckpt, settings, text_path=args.text, sentences=args.sentences)
        beyond.check_inputs(args, inputs.model, inputs.tokenizer)
        out_dir = Path(args.out) if args.out else Path("reports") / Path(args.ckpt).stem
        with staged_output_dir(out_dir) as tmp:
            analysis = pipeline.run_analysis(inputs, settings, save_attention=tmp / "all_attention.npz" if args.save_attention else None,
                                             progress=not args.quiet)
            # Extension point: further analyses add keys to analysis.summary here (they get `inputs` and `args`).
            extra_sections, beyond_md = (beyond.run_beyond(args, inputs, analysis.summary, tmp, progress=not args.quiet)
                                         if beyond.wanted(args) else ([], ""))
            write_outputs(analysis.summary, analysis.examples, tmp)
            if beyond_md:
                beyond.append_markdown(tmp / "report.md", beyond_md)
            # Extension point: figures and report.html are written into `tmp` here, from analysis.summary
            # (report.html takes extra_sections=extra_sections: the beyond-attention sections).
            if args.save_attention:
                pipeline.move_file(tmp / "all_attention.npz", Path(args.save_attention))
    except (UsageError, pipeline.AnalysisError, OutputError, beyond.BeyondError) as e:
        print(f"analyze.py: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(format_head_table(analysis.summary))
        print(f"report written to {out_dir}/ (summary.json, heads.csv, report.md, attention_examples.npz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
