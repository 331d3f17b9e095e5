"""Peak memory of train.py against the size of its --text file (issue #18 item 13).

    python bench/train_memory.py                          # this checkout: 0.04, 5 and 50 MB of the KJV, 300k characters of 20,000 kinds
    python bench/train_memory.py --checkout /path/to/other/checkout   # the same texts through another checkout

Each text trains 2 steps of the small preset (no timeline, one evaluation batch, one thread) in a fresh process,
which prints its own peak resident memory (ru_maxrss); the texts are made from the King James Bible, repeated, and
from 20,000 distinct CJK characters drawn with a fixed seed.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from charlens.data.corpora import bible_corpus  # noqa: E402

RUN = ("import resource, runpy, sys; sys.argv = sys.argv[1:]\n"
       "try:\n    runpy.run_path('train.py', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
       "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def texts(folder: Path) -> dict[str, Path]:
    kjv = bible_corpus("en").train
    made = {}
    for name, n in (("0.04 MB", 40_000), ("5 MB", 5_000_000), ("50 MB", 50_000_000)):
        made[name] = folder / f"{n}.txt"
        made[name].write_text((kjv * (n // len(kjv) + 1))[:n], encoding="utf-8")
    rng = random.Random(0)
    alphabet = [chr(0x4E00 + k) for k in range(20_000)]
    made["300k chars, 20,000 kinds"] = folder / "wide.txt"
    made["300k chars, 20,000 kinds"].write_text("".join(rng.choice(alphabet) for _ in range(300_000)), encoding="utf-8")
    return made


def peak_mib(checkout: Path, text: Path, out: Path) -> float:
    argv = ["train.py", "--text", str(text), "--preset", "small", "--max-iters", "2", "--eval-iters", "1", "--no-timeline",
            "--sample-chars", "0", "--threads", "1", "--out", str(out)]
    done = subprocess.run([sys.executable, "-c", RUN, *argv], cwd=checkout, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(checkout)})
    if done.returncode:
        raise SystemExit(f"{checkout}: train.py failed on {text}: {done.stderr.strip().splitlines()[-1:]}")
    return int(done.stdout.split()[-1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parents[1],
                   help="the checkout whose train.py to measure (default: this one)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, text) in enumerate(texts(Path(tmp)).items()):
            print(f"{name:26s} peak RSS {peak_mib(args.checkout.resolve(), text, Path(tmp) / f'm{k}.pt'):7.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
