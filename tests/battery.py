"""A property-style battery for both CLIs (issue #18): random flag values and random file situations (users'
files at every output path and beside it, folders where files go, read-only and unwritable folders, long and
odd names), each run in this process. Every case must end with

    the documented exit status (0; 2 for anything wrong with the input, 1 for train.py's non-finite loss),
    exactly one line on stderr when it fails, and no traceback,
    every file the case made as the user's byte for byte as it was, and no temporary file left behind.

The suite runs a few dozen cases (tests/test_battery.py); a larger count runs as a script:

    python tests/battery.py --cases 300 --seed 1
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from charlens import analyze, train  # noqa: E402
from charlens.analysis.report.folder import MARKER  # noqa: E402
from charlens.data.corpora import bible_corpus  # noqa: E402
from charlens.model.checkpoint import load_checkpoint  # noqa: E402

ODD = ["with space", "עברית", "line\nbreak", "b\u202egnp", "<img src=x onerror=alert(1)>", "quote'\"", "tab\tx", "ünï"]
TRAIN_FLAGS = {  # flag: (values a run can use quickly, values that must be refused)
    "--max-iters": (["1", "2", "3"], ["0", "-1", "1e3", "x", str(10**10)]),
    "--batch-size": (["2", "4"], ["0", "100000000", "nan"]),
    "--lr": (["1e-3", "0.01"], ["0", "-1", "inf", "11"]),
    "--n-layer": (["1", "2"], ["0", "300", "2.5"]),
    "--block-size": (["16", "32"], ["0", "9000"]),
    "--seed": (["0", "7"], ["-1", str(2**64)]),
    "--eval-iters": (["1", "2"], ["0", "200000"]),
    "--snapshots": (["1", "2"], ["-1", "x"]),
    "--seeds": (["1", "3 4"], ["0", "-3", "1000000000000", "1 1"]),
    "--sample-chars": (["0", "5"], ["-5", "1000000"]),
}
ANALYZE_FLAGS = {
    "--windows": (["8", "12"], ["0", "-1", "x", "1000000"]),
    "--n-boot": (["20", "30"], ["0", "1000000000"]),
    "--seed": (["0", "3"], ["-1", "99999999999"]),
    "--alpha": (["0.05"], ["0", "1", "nan"]),
    "--min-selectivity": (["0.1"], ["1.5", "-0.1"]),
    "--batch-size": (["4", "8"], ["0", "5000"]),
}


@dataclass
class Case:
    """One run: the argv, the files made as the user's (path -> bytes), and what a success must leave."""

    tool: str
    argv: list[str]
    folder: Path
    users: dict[Path, bytes] = field(default_factory=dict)
    expect: Optional[Path] = None  # the checkpoint or report folder a success writes
    notes: list[str] = field(default_factory=list)

    def user_file(self, path: Path, data: bytes) -> Path:
        """Make a file as the user's (if this file system can hold its name) and remember its bytes."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError:
            return path
        self.users[path] = data
        return path


def odd_name(rng: random.Random, suffix: str) -> str:
    kind = rng.choice(["plain", "odd", "long", "longer"])
    stem = {"plain": "m", "odd": rng.choice(ODD), "long": "n" * 200, "longer": "n" * 300}[kind]
    return stem + suffix


def situation(case: Case, rng: random.Random, suffix: str, charlens_file: Optional[Path]) -> Path:
    """An output path in one of the situations a user's machine offers; records what it made as the user's."""
    folder = case.folder
    where = rng.choice(["absent", "user file", "user folder", "charlens", "under a file", "proc", "missing parents",
                        "read-only folder"])
    case.notes.append(where)
    name = odd_name(rng, suffix)
    if where == "proc":
        return Path("/proc") / name
    if where == "under a file":
        return case.user_file(folder / "a_file", b"the user's") / name
    if where == "missing parents":
        return folder / "new" / "deeper" / name
    if where == "read-only folder":
        ro = folder / "ro"
        ro.mkdir(exist_ok=True)
        os.chmod(ro, 0o555)  # (root writes there anyway: then the run may succeed)
        return ro / name
    path = folder / name
    if where == "user file":
        case.user_file(path, rng.randbytes(rng.randint(0, 200)))
    elif where == "user folder":
        case.user_file(path / "thesis.md", b"years of work")
    elif where == "charlens" and charlens_file is not None:
        with contextlib.suppress(OSError):  # (a name this file system cannot hold: the case is then about that)
            (shutil.copytree if charlens_file.is_dir() else shutil.copy)(charlens_file, path)
            if path.is_dir():
                case.user_file(path / "my_notes.md", b"notes the user added to a report")
    return path


def flags(rng: random.Random, table: dict[str, tuple[list[str], list[str]]], bad_rate: float) -> list[str]:
    out: list[str] = []
    for flag in rng.sample(sorted(table), rng.randint(0, 2)):
        good, bad = table[flag]
        out += [flag, *rng.choice(bad if rng.random() < bad_rate else good).split()]
    return out


def train_case(rng: random.Random, folder: Path, corpus: Path, checkpoint: Path) -> Case:
    case = Case("train", [], folder)
    out = situation(case, rng, ".pt", checkpoint)
    base = out.with_suffix("") if out.suffix == ".pt" else out
    for extra in rng.sample([".log.jsonl", ".loss.png", ".step1.pt", "_s0.pt"], rng.choice([0, 0, 1, 2])):
        if base.parent.is_dir() and base.parent != Path("/proc"):
            case.user_file(base.with_name(base.name + extra), rng.randbytes(50))
    if rng.random() < 0.15:  # an input the user got wrong: binary bytes, a name too long, nothing there
        corpus = rng.choice([case.user_file(folder / odd_name(rng, ".txt"), rng.randbytes(300) + b"\x00"),
                             folder / ("t" * 300 + ".txt"), folder / "missing.txt"])
        case.notes.append("bad --text")
    case.argv = ["--text", str(corpus), "--preset", "tiny", "--max-iters", "2", "--sample-chars", "0", "--no-compile",
                 "--out", str(out), *flags(rng, TRAIN_FLAGS, 0.3), *(["--overwrite"] if rng.random() < 0.3 else [])]
    case.expect = out
    return case


def analyze_case(rng: random.Random, folder: Path, checkpoint: Path, report: Path) -> Case:
    case = Case("analyze", [], folder)
    out = situation(case, rng, "", report)
    ckpt = checkpoint
    if rng.random() < 0.2:
        ckpt = case.user_file(folder / odd_name(rng, ".pt"), rng.randbytes(100)) if rng.random() < 0.5 else folder / "nope.pt"
    case.argv = ["--ckpt", str(ckpt), "--out", str(out), "--windows", "8", "--n-boot", "20", "--induction-windows", "2",
                 "--quiet", "--no-live-model", *flags(rng, ANALYZE_FLAGS, 0.3)]
    if rng.random() < 0.3:
        case.notes.append("save-attention")
        case.argv += ["--save-attention", str(situation(case, rng, ".npz", None))]
    case.expect = out
    return case


def temporary_files(folders: list[Path]) -> list[Path]:
    return [p for f in folders if f.is_dir() for p in f.rglob(".*.tmp")]


def run_case(case: Case, main: Callable[[list[str]], int]) -> tuple[str, Optional[str]]:
    """Run one case; (outcome, None) when every property holds, else (outcome, what failed)."""
    err, out = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                status = main(case.argv)
            except SystemExit as e:  # argparse
                status = int(e.code or 0)
    except Exception as e:  # noqa: BLE001 - a crash is what the battery looks for
        return "crash", f"{type(e).__name__}: {e}"
    finally:
        torch.set_num_threads(threads)
    lines = err.getvalue().splitlines()
    outcome = {0: "ok", 1: "non-finite", 2: "refused"}.get(status, f"exit {status}")
    problems = []
    if status not in (0, 2) and not (status == 1 and case.tool == "train"):
        problems.append(f"undocumented exit status {status}")
    if status and (len([line for line in lines if "error:" in line]) != 1 or "Traceback" in err.getvalue()):
        problems.append(f"not one error line: {lines[-3:]}")
    if status == 2 and not lines[-1].startswith(f"{case.tool}.py: error: "):
        problems.append(f"refusal line: {lines[-1]!r}")
    for path, data in case.users.items():
        if not path.is_file() or path.read_bytes() != data:
            problems.append(f"user file changed: {path}")
    if temporary_files([case.folder]):
        problems.append(f"temporary files left: {temporary_files([case.folder])}")
    if status == 0 and case.expect is not None:
        if case.tool == "train" and "--seeds" not in case.argv:
            load_checkpoint(case.expect)
        if case.tool == "analyze" and not (case.expect / MARKER).is_file():
            problems.append("no report manifest after a success")
    return outcome, "; ".join(problems) or None


@dataclass
class Fixtures:
    corpus: Path
    checkpoint: Path
    report: Path


def make_fixtures(folder: Path) -> Fixtures:
    """A --text corpus, a trained checkpoint and a report of it: the charlens files the cases start from."""
    corpus = folder / "corpus.txt"
    corpus.write_text(bible_corpus("en").train[:40_000], encoding="utf-8")
    checkpoint = folder / "trained.pt"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert train.main(["--text", str(corpus), "--preset", "tiny", "--max-iters", "2", "--sample-chars", "0",
                           "--out", str(checkpoint)]) == 0
        assert analyze.main(["--ckpt", str(checkpoint), "--out", str(folder / "report"), "--windows", "8", "--n-boot",
                             "20", "--induction-windows", "2", "--quiet", "--no-live-model"]) == 0
    return Fixtures(corpus, checkpoint, folder / "report")


def run_battery(n: int, seed: int, root: Path, fixtures: Fixtures) -> tuple[Counter, list[str]]:
    """`n` cases drawn with `seed`: outcome counts (by tool, outcome and situation) and the failures."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    failures = []
    for k in range(n):
        folder = root / f"case{k}"
        folder.mkdir()
        if rng.random() < 0.5:
            case, main = train_case(rng, folder, fixtures.corpus, fixtures.checkpoint), train.main
        else:
            case, main = analyze_case(rng, folder, fixtures.checkpoint, fixtures.report), analyze.main
        outcome, problem = run_case(case, main)
        counts[(case.tool, outcome)] += 1
        counts.update(("situation", note) for note in case.notes)
        if problem:
            failures.append(f"case {k} ({case.tool} {case.notes}): {problem}; argv {case.argv!r}")
        for ro in folder.rglob("ro"):
            os.chmod(ro, 0o755)
        shutil.rmtree(folder, ignore_errors=True)
    return counts, failures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=200, help="cases to run (default 200)")
    p.add_argument("--seed", type=int, default=1, help="seed of the cases (default 1)")
    args = p.parse_args()
    torch.set_num_threads(1)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        counts, failures = run_battery(args.cases, args.seed, Path(tmp) / "cases", make_fixtures(Path(tmp)))
    print(f"{args.cases} cases (seed {args.seed}) in {time.perf_counter() - began:.0f} s: " + ", ".join(
        f"{tool} {outcome} {n}" for (tool, outcome), n in sorted(counts.items()) if tool != "situation"))
    print("situations: " + ", ".join(f"{what} {n}" for (kind, what), n in sorted(counts.items()) if kind == "situation"))
    print(f"failures: {len(failures)}", *failures, sep="\n")


if __name__ == "__main__":
    main()
