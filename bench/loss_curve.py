"""Where does the small preset's validation loss flatten, on each corpus? (issue 20: the main job's step count)

    python bench/loss_curve.py run --out /work/study-runs               # trains the runs below (about an hour on 2 cores)
    python bench/loss_curve.py report --runs /work/study-runs --figure docs/figures/loss_curve.png

With a cosine schedule the loss a long run has at step s is not the loss a run of s steps ends with (the
shorter run has already decayed its learning rate), so two measurements per corpus, both seed 0:
- the long curve: one run of --long steps (default 6,000), evaluated every 250 steps on 50 fixed batches
  of the validation split (`<corpus>_long`);
- complete runs of each --lengths (default 2,000, 3,000, 4,000) with the preset's own schedule and settings,
  whose final record is the loss on the whole validation split (`<corpus>_<steps>`).
`run` starts one process per corpus, --threads 1 each, the runs of a corpus one after another (so at most
two training processes share the machine, as the main job's two seed processes do); `--long 0` skips the
long run. `report` reads the runs' <name>.log.jsonl (eval and final records), prints the table and the step
count it chooses: the shortest complete run from which the next length improves the whole-split loss by
less than --flat (1%) per 500 steps, in every corpus. A long run stopped early (no final record) still gives
its curve up to where it stopped. Time is not reported: on a shared machine it says more about the load.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"^(?P<corpus>.+)_(?P<steps>long|\d+)$")


def train_command(corpus: str, steps: int, out: Path, long: bool) -> list[str]:
    lang, *variant = corpus.split("_", 1)
    flags = {"novowel": ["--drop-vowels"], "niqqud": ["--keep-niqqud"]}.get(variant[0] if variant else "", [])
    extra = ["--eval-interval", "250", "--eval-iters", "50"] if long else []
    return [sys.executable, str(ROOT / "train.py"), "--lang", lang, *flags, "--seed", "0", "--threads", "1",
            "--max-iters", str(steps), "--sample-chars", "0", *extra, "--out", str(out)]


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    procs = []
    for corpus in args.corpora:
        chain = ([(f"{corpus}_long", args.long, True)] if args.long else []) + [(f"{corpus}_{n}", n, False) for n in args.lengths]
        script = " && ".join(" ".join(train_command(corpus, steps, args.out / f"{name}.pt", long))
                             + f" > {args.out / name}.out 2>&1" for name, steps, long in chain)
        procs.append(subprocess.Popen(["sh", "-c", script], cwd=ROOT))
        print(f"{corpus}: {', '.join(name for name, _, _ in chain)} (log in {args.out}/<name>.out)")
    return max(p.wait() for p in procs)


def read_log(path: Path) -> tuple[list[tuple[int, float]], Optional[float]]:
    """The eval records (step, validation estimate) and the final whole-split validation loss of one run."""
    evals, final = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["kind"] == "eval":
            evals.append((r["iter"], r["val_loss"]))
        elif r["kind"] == "final":
            final = r["val_loss"]
    return evals, final


def flattening(curve: list[tuple[int, float]], flat: float, window: int = 500) -> Optional[int]:
    """The first step from which every later step improves on the loss `window` steps before by less than `flat`."""
    at = dict(curve)
    steps = [s for s, _ in curve if s - window in at]
    slow = [(at[s - window] - at[s]) / at[s - window] < flat for s in steps]
    for k, s in enumerate(steps):
        if all(slow[k:]):
            return s
    return None


def per_500(a: tuple[int, float], b: tuple[int, float]) -> float:
    """Relative improvement from complete run a to the longer b, per 500 steps."""
    return (a[1] - b[1]) / a[1] * 500 / (b[0] - a[0])


def report(args: argparse.Namespace) -> int:
    runs: dict[str, dict] = {}
    for log in sorted(args.runs.glob("*.log.jsonl")):
        name = log.name[:-len(".log.jsonl")]
        m = NAME.match(name)
        if not m:
            continue
        evals, final = read_log(log)
        entry = runs.setdefault(m["corpus"], {"long": [], "complete": [], "curves": []})
        if m["steps"] == "long":
            entry["long"] = evals
            entry["long_final"] = final
        elif final is not None:
            entry["complete"].append((int(m["steps"]), final))
            entry["curves"].append(evals)
    if not runs:
        print(f"no <corpus>_long / <corpus>_<steps> logs in {args.runs}", file=sys.stderr)
        return 2
    chosen = []
    print("| corpus | steps | validation loss | improvement to the next length, per 500 steps |")
    print("|---|---|---|---|")
    for corpus, r in runs.items():
        done = sorted(r["complete"])
        first_flat = None
        for k, (n, loss) in enumerate(done):
            gain = per_500((n, loss), done[k + 1]) if k + 1 < len(done) else None
            if gain is not None and gain < args.flat and first_flat is None:
                first_flat = n
            print(f"| {corpus} | {n:,} (complete run) | {loss:.4f} (whole split) | {'—' if gain is None else f'{gain:.2%}'} |")
        chosen.append(first_flat)
        if r["long"]:
            s = flattening(r["long"], args.flat)
            (a, va), (b, vb) = r["long"][-3 if len(r["long"]) > 2 else 0], r["long"][-1]
            end = (f"whole split at its end {r['long_final']:.4f}" if r.get("long_final") is not None
                   else "stopped before its end")
            print(f"| {corpus} | long run at {b:,} | {vb:.4f} (50 fixed batches; {end}) | "
                  f"{per_500((a, va), (b, vb)):.2%} over its last {b - a:,} steps; flat (< {args.flat:.0%}) from step "
                  f"{'—' if s is None else f'{s:,}'} |")
    if None in chosen:
        print(f"\nnot flat: in {', '.join(c for c, n in zip(runs, chosen) if n is None)} no measured length improves "
              f"by less than {args.flat:.0%} per 500 steps on the next; measure longer runs")
    else:
        print(f"\nchosen step count: {max(chosen):,} (the shortest complete run that every corpus's next length "  # type: ignore[type-var]
              f"improves by less than {args.flat:.0%} per 500 steps)")
    if args.figure:
        figure(runs, args.figure)
        print(f"figure: {args.figure}")
    return 0


def figure(runs: dict[str, dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.2))
    ax = fig.add_subplot()
    for k, (corpus, r) in enumerate(runs.items()):
        color = f"C{k}"
        if r["long"]:
            ax.plot(*zip(*r["long"]), "-", color=color, lw=1.2,
                    label=f"{corpus}: the long run (evaluated every 250 steps, to step {r['long'][-1][0]:,})")
        for k, curve in enumerate(r["curves"]):
            ax.plot(*zip(*curve), ":", color=color, lw=0.8, label=f"{corpus}: complete runs' own evaluations" if not k else None)
        if r["complete"]:
            steps, losses = zip(*sorted(r["complete"]))
            ax.plot(steps, losses, "o--", color=color, ms=6, label=f"{corpus}: end of complete runs (whole split)")
    ax.set(xlabel="training step", ylabel="validation loss (nats/char)",
           title="small preset, seed 0: the curve of one long run vs the end of complete runs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train the long and the complete runs")
    r.add_argument("--out", type=Path, required=True, help="folder for the runs (outside the repository)")
    r.add_argument("--corpora", nargs="+", default=["en", "he"], help="en, he, en_novowel, he_niqqud")
    r.add_argument("--long", type=int, default=6000, help="steps of the long run")
    r.add_argument("--lengths", type=int, nargs="+", default=[2000, 3000, 4000], help="steps of the complete runs")
    t = sub.add_parser("report", help="the table and the figure from the runs' logs")
    t.add_argument("--runs", type=Path, required=True, help="the folder `run` wrote")
    t.add_argument("--flat", type=float, default=0.01, help="flat = relative improvement per 500 steps below this")
    t.add_argument("--figure", type=Path, help="write the curves here (png)")
    args = p.parse_args(argv)
    return run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())
