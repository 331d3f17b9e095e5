"""Watch an induction head form on a CPU in minutes (docs/timeline.md).

    python bench/timeline_demo.py                     # corpus, train.py, analyze.py into runs/timeline_demo/
    python bench/timeline_demo.py --max-iters 1500    # shorter

The corpus is the first 400,000 characters of the King James Bible cut into pieces of 10 to 50 characters
(random lengths, so no fixed offset finds the copy), each written twice on its line ("piece|piece"): the
second copy can only be predicted by finding the first, the job of an induction head (attend to the
character after the earlier occurrence of the current context, and copy it). A 2-layer, 4-head model with a
128-character context trains with the timeline on (the default) and 4 snapshots; the analyzer then labels
its heads and reads their formation steps and phase changes from the timeline. Printed at the end: the
validated heads with their formation steps, the phase-change sentences, and the path of the strongest
prefix-matching head, the repeated-random-sequence test and the in-context-learning score (docs/timeline.md says
what it showed).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from charlens.data.corpora import bible_corpus  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHORTEST, LONGEST = 10, 50  # piece lengths


def write_corpus(path: Path, chars: int) -> None:
    text = bible_corpus("en").train[:chars].replace("\n", " ")
    rng, lines, i = np.random.default_rng(0), [], 0
    while i < len(text):
        n = int(rng.integers(SHORTEST, LONGEST + 1))
        lines.append(f"{text[i:i + n]}|{text[i:i + n]}\n")
        i += n
    path.write_text("".join(lines), encoding="utf-8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/timeline_demo", help="folder for the corpus, checkpoint and report")
    p.add_argument("--max-iters", type=int, default=3000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus, ckpt = out / "kjv_pieces_twice.txt", out / "twice.pt"
    write_corpus(corpus, 400_000)
    run = lambda argv: subprocess.run([sys.executable, *argv], cwd=ROOT, check=True)
    run(["train.py", "--text", str(corpus), "--out", str(ckpt), "--overwrite", "--n-layer", "2", "--n-head", "4",
         "--n-embd", "64", "--block-size", "128", "--batch-size", "32", "--max-iters", str(args.max_iters),
         "--eval-interval", "250", "--lr", "3e-3", "--warmup-iters", "50", "--threads", str(args.threads),
         "--sample-chars", "0", "--snapshots", "4"])
    run(["analyze.py", "--ckpt", str(ckpt), "--out", str(out / "report"), "--quiet"])
    timeline = json.loads((out / "report" / "summary.json").read_text(encoding="utf-8"))["timeline"]
    for h in timeline["heads"]:
        print(f"L{h['layer']}H{h['head']} {h['label']:16s} formed at step {h['formed']}")
    for h in timeline["heads"]:
        if h["primary"]:
            print(h["sentence"])
    show = lambda xs: " ".join("-" if v is None else f"{v:.2f}" for v in xs)
    print(f"steps:                          {' '.join(str(s) for s in timeline['steps'])}")
    print(f"strongest prefix_match_4 head:  {show(timeline['strongest']['prefix_match_4'])}")
    print(f"strongest induction (gated):    {show(timeline['strongest']['induction'])}")
    print(f"probe-set loss:                 {show(timeline['losses']['probe_loss'])}")
    print(f"in-context-learning score:      {show(timeline['losses']['icl_score'])}")
    print(f"report: {out / 'report' / 'report.md'}, figure {out / 'report' / 'timeline.png'}")


if __name__ == "__main__":
    main()
