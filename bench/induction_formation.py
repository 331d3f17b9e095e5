"""Watch an induction head form, seed after seed: train the synthetic induction task (`train.py --task induction`)
for several seeds, analyse every model, and print when its induction head formed, when the second-copy loss fell,
their gap, the phase change of the task's second-copy accuracy, and the spread across seeds (docs: "Watch an
induction head form"), with a 1-layer control trained the same way.

    python bench/induction_formation.py                          # seeds 0 1 2 and the 1-layer control, into runs/induction/
    python bench/induction_formation.py --seeds 0 --no-control   # one seed
    python bench/induction_formation.py --dtypes float32 bfloat16   # each seed in both, alternating (CPUs with native bfloat16)
    python bench/induction_formation.py --follow 0.5 --out runs/induction_follow   # letters follow an in-context bigram map

Each training run is its own process, timed from start to exit (`--threads` torch threads; one by default, as on a
shared machine). With two dtypes the runs alternate float32, bfloat16 per seed, so the time ratio is measured under
the same machine load; the absolute seconds depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str]) -> float:
    """Run a charlens CLI in the checkout; its wall time in seconds."""
    began = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def train_and_analyse(out: Path, name: str, flags: list[str], threads: int) -> tuple[float, dict]:
    ckpt = out / f"{name}.pt"
    seconds = run(["train.py", "--task", "induction", "--out", str(ckpt), "--overwrite", "--threads", str(threads),
                   "--sample-chars", "0", *flags])
    report = out / name
    run(["analyze.py", "--ckpt", str(ckpt), "--out", str(report), "--quiet"])
    return seconds, json.loads((report / "summary.json").read_text(encoding="utf-8"))


def steps_of(summary: dict) -> int:
    return int(summary["model"]["iter"])


def formed(s: dict, label: str) -> dict[str, int | None]:
    """The formation step of every head whose primary label in the timeline is `label`."""
    return {f"L{h['layer']}H{h['head']}": h["formed"] for h in (s.get("timeline") or {}).get("heads", [])
            if h["primary"] and h["label"] == label}


def row(name: str, seconds: float, s: dict) -> dict:
    """What one model shows: labels, formation, loss drop, gap, accuracy jump, final task numbers."""
    heads = {f"L{h['layer']}H{h['head']}": h["behaviour"] for h in s["heads"]}
    f = s.get("formation") or {}
    rise = (f.get("accuracy") or {}).get("largest_rise")
    return {"run": name, "seconds": round(seconds, 1), "ms_per_step": round(1e3 * seconds / steps_of(s), 1),
            "induction_heads": [k for k, v in heads.items() if v == "induction"],
            "layer0": sorted({v for k, v in heads.items() if k.startswith("L0")}),
            "layer1": sorted({v for k, v in heads.items() if k.startswith("L1")}),
            "previous_char_formed": formed(s, "previous_char"), "prefix_match_1_formed": formed(s, "prefix_match_1"),
            "partner": f.get("partner"), "formed": f.get("formed"), "loss_drop": f.get("loss_drop"), "gap": f.get("gap"),
            "accuracy_rise": rise, "second_copy_accuracy": s["task"]["accuracy_second_copy"],
            "second_copy_loss": s["task"]["loss_second_copy"]}


def spread(values: list[int]) -> str:
    if not values:
        return "none formed"
    sd = f", sd {statistics.stdev(values):.0f}" if len(values) > 1 else ""
    return f"{', '.join(map(str, values))} (median {statistics.median(values):.0f}, range {min(values)}-{max(values)}{sd})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/induction", help="folder for the checkpoints and reports")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds of the 2-layer models")
    p.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"],
                   help="train each seed in each of these dtypes, alternating per seed (two: their time ratio)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each training run")
    p.add_argument("--control", action=argparse.BooleanOptionalAction, default=True,
                   help="also train and analyse a 1-layer model the same way (seed 0)")
    p.add_argument("--follow", type=float, default=0.0,
                   help="train.py --task-follow of every run: chance that a letter is its predecessor's successor (0: none)")
    args = p.parse_args()
    task = ["--task-follow", str(args.follow)] if args.follow else []
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        for dtype in args.dtypes:
            name = f"induction_s{seed}_{dtype}"
            seconds, summary = train_and_analyse(out, name, ["--seed", str(seed), "--dtype", dtype, *task],
                                                 args.threads)
            rows.append(row(name, seconds, summary))
            print(json.dumps(rows[-1]), flush=True)
    for dtype in args.dtypes:
        mine = [r for r in rows if r["run"].endswith(dtype)]
        print(f"{dtype}: formation steps {spread([r['formed'] for r in mine if r['formed'] is not None])}; "
              f"loss drop steps {spread([r['loss_drop'] for r in mine if r['loss_drop'] is not None])}; "
              f"gaps {[r['gap'] for r in mine]}; seconds per run {[r['seconds'] for r in mine]}")
        layer0 = [[v for k, v in r["previous_char_formed"].items() if k.startswith("L0") and v is not None] for r in mine]
        steps = [min(v) for v in layer0 if v]
        print(f"{dtype}: layer-0 previous_char heads in {len(steps)} of {len(mine)} seeds, formed at {spread(steps)}")
    if len(args.dtypes) == 2:
        seconds = {r["run"]: r["seconds"] for r in rows}
        ratios = [seconds[f"induction_s{s}_float32"] / seconds[f"induction_s{s}_bfloat16"] for s in args.seeds]
        print(f"time float32 / bfloat16, alternating pairs: {', '.join(f'{r:.2f}' for r in ratios)}")
    if args.control:
        seconds, summary = train_and_analyse(out, "induction_1layer_s0", ["--seed", "0", "--n-layer", "1", *task], args.threads)
        control = row("induction_1layer_s0", seconds, summary)
        print(json.dumps(control))
        two_layers = ", ".join(f"{r['second_copy_accuracy']:.3f}" for r in rows)
        print(f"1-layer control: induction heads {control['induction_heads'] or 'none'}, second-copy accuracy "
              f"{control['second_copy_accuracy']:.3f} (2 layers: {two_layers})")


if __name__ == "__main__":
    main()
