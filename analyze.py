"""Find out what each attention head of a charlens checkpoint does, with evidence.

    python analyze.py --ckpt checkpoints/en.pt                      # the checkpoint corpus: train text vs held-out books
    python analyze.py --ckpt checkpoints/he.pt --text some.txt      # any text: first half discovery, second half held-out
    python analyze.py --ckpt checkpoints/en.pt --sentences "The cat sat on the mat." "What is the capital of France?"
    python analyze.py --ckpt checkpoints/en.pt --save-attention out.npz
    python analyze.py --compare checkpoints/en.pt checkpoints/he.pt --out reports/en_vs_he

Flow: parse -> validate inputs (one-line errors, before any work) -> analysis.runs.single -> write the
report into a temporary folder -> rename it into place, so a failed run never leaves a half report.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from analysis.runs import extras as beyond
from analysis.runs import single as pipeline
from analysis.runs.compare import use_parallel_verses, write_comparison
from analysis.report.figures.base import write_figures
from analysis.report.html import write_html_report
from analysis.report.files import OutputError, format_head_table, staged_output_dir, write_outputs


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
                   help="a detector validates nothing unless each text split has at least this many windows with its targets")
    a.add_argument("--induction-windows", type=int, default=d.induction_windows,
                   help="random sequences repeated twice for the standard induction test")
    a.add_argument("--unknown-chars", choices=pipeline.UNKNOWN_POLICIES, default=d.unknown_chars,
                   help="characters of --text / --sentences that the model's vocabulary lacks: stop with an error naming them, "
                   "drop them from the text, or replace each with the reserved unknown token")
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
        unknown_chars=args.unknown_chars,
        value_weighted=args.value_weighted,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.compare:
        return run_compare(args)
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
            write_report(args, inputs, analysis, tmp)
            if args.save_attention:
                pipeline.move_file(tmp / "all_attention.npz", Path(args.save_attention))
    except (UsageError, pipeline.AnalysisError, OutputError, beyond.BeyondError) as e:
        print(f"analyze.py: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(format_head_table(analysis.summary))
        print(f"report written to {out_dir}/ (summary.json, heads.csv, report.md, report.html, figures, attention_examples.npz)")
    n_heldout = len(inputs.heldout.windows)
    if n_heldout < settings.min_windows:
        print(f"analyze.py: note: the held-out text gave {n_heldout} window(s), fewer than --min-windows ({settings.min_windows}): "
              "scores are reported, but no head can be validated on so little text", file=sys.stderr)
    return 0


def write_report(args: argparse.Namespace, inputs: pipeline.AnalysisInputs, analysis: pipeline.Analysis, out_dir: Path) -> None:
    """Every report file of one analysis into `out_dir`."""
    # Extension point: further analyses add keys to analysis.summary here (they get `inputs` and `args`).
    extra_sections, beyond_md = (beyond.run_beyond(args, inputs, analysis.summary, out_dir, progress=not args.quiet)
                                 if beyond.wanted(args) else ([], ""))
    write_outputs(analysis.summary, analysis.examples, out_dir)
    if beyond_md:
        beyond.append_markdown(out_dir / "report.md", beyond_md)
    figures = write_figures(analysis.summary, analysis.examples, out_dir)
    write_html_report(analysis.summary, analysis.examples, figures, out_dir / "report.html", extra_sections=extra_sections)


def run_compare(args: argparse.Namespace) -> int:
    """--compare A B: both analyses (on parallel held-out verses for the default Bibles), each
    written under OUT/<name>/, and the comparison under OUT; all in one staged folder."""
    try:
        check_args(args)
        beyond.check_arguments(args)
        settings = settings_from_args(args)
        runs = [pipeline.load_inputs(c, settings, text_path=args.text, sentences=args.sentences) for c in args.compare]
        for inputs in runs:
            beyond.check_inputs(args, inputs.model, inputs.tokenizer)
        if runs[0].name == runs[1].name:
            runs[1].name += "-2"
        if args.text is None and args.sentences is None:
            use_parallel_verses(runs[0], runs[1], settings.n_windows, settings.seed)
        out_dir = Path(args.out) if args.out else Path("reports") / f"{runs[0].name}_vs_{runs[1].name}"
        with staged_output_dir(out_dir) as tmp:
            analyses = []
            for inputs in runs:
                (tmp / inputs.name).mkdir()
                analyses.append(pipeline.run_analysis(inputs, settings, progress=not args.quiet))
                write_report(args, inputs, analyses[-1], tmp / inputs.name)
            cmp = write_comparison(analyses[0].summary, analyses[1].summary, analyses[0].examples, analyses[1].examples,
                                   tmp, links=[{"text": f"{i.name}: full report", "href": f"{i.name}/report.html"} for i in runs])
    except (UsageError, pipeline.AnalysisError, OutputError, beyond.BeyondError) as e:
        print(f"analyze.py: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        for analysis in analyses:
            print(f"{analysis.summary['name']}:\n{format_head_table(analysis.summary)}\n")
        print("\n".join(cmp["findings"]))
        print(f"comparison written to {out_dir}/ (report.html, compare.json, figures; "
              f"{runs[0].name}/ and {runs[1].name}/ hold each model's own report)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
