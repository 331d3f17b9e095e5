"""Train a character-level TransformerLM on English or Hebrew text.

    python train.py --lang en                       # the King James Bible (39 OT books), small preset
    python train.py --lang he                       # the Hebrew Bible, niqqud removed (--keep-niqqud keeps it)
    python train.py --lang en --drop-vowels         # English without a, e, i, o, u (an abjad, like unpointed Hebrew)
    python train.py --text corpus.txt --out checkpoints/mine.pt
    python train.py --resume checkpoints/en.pt --max-iters 4000
    python train.py --lang en --seeds 3             # seeds 0, 1, 2 -> checkpoints/en_s0.pt, en_s1.pt, en_s2.pt
    torchrun --standalone --nproc_per_node 2 train.py --lang en    # one model in 2 processes (DDP)

Writes checkpoints/<name>.pt and, beside it, <name>.loss.png and <name>.log.jsonl. --out never
replaces the corpus file or a file that is not a charlens checkpoint, and replaces a checkpoint
other than the --resume file only with --overwrite.
Ctrl-C or SIGTERM saves a checkpoint and exits (status 130 or 143); --resume continues
bit-identically on CPU, because batches are drawn from a torch.Generator whose state (with torch's
global RNG for dropout) is stored in the checkpoint.
"""
from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

from charlens.data.corpora import LANGS, Corpus, bible_corpus, corpus_from_identity, file_corpus, task_corpus
from charlens.data.errors import CharlensError, OneLineParser, UsageError, interrupt_status, raise_terminated, visible
from charlens.data.induction_task import LETTERS, TASK_NAME, InductionTask
from charlens.data.tokenizer import CharTokenizer, Tokenizer, tokenizer_from_dict
from charlens.model.atomic import sweep_stale_temps
from charlens.model.checkpoint import load_checkpoint
from charlens.model.transformer import PRESETS
from charlens.training import ddp, seeds, snapshots
from charlens.training.task_source import source_for
from charlens.training.config import (COMMON, DTYPES, SETTING_RANGES, TRAIN_PRESETS, TrainSettings, check_memory,
                                      check_vocabulary, resolve_device, settings_from_flags)
from charlens.training.engine import INTERRUPTED, train
from charlens.training.outputs import check_output
from charlens.training.log import log_paths
from charlens.training.runtime import CPU_COMPILE_MIN_STEPS

MAX_SEED_PROCS = 256
TASKS = (TASK_NAME,)
NUMERIC_FLAGS = [
    ("n-layer", "transformer blocks"), ("n-head", "attention heads per block"),
    ("n-embd", "embedding width (divisible by --n-head)"), ("block-size", "context length in characters"),
    ("dropout", "dropout probability"), ("batch-size", "sequences per step"),
    ("max-iters", "total optimizer steps; also the length of the cosine schedule"),
    ("lr", "peak learning rate"), ("min-lr", "learning rate at the end of the cosine decay"),
    ("warmup-iters", "linear warm-up steps"), ("weight-decay", "AdamW weight decay (matrices only)"),
    ("beta2", "AdamW beta2"), ("grad-clip", "clip the gradient norm to this (0 = off)"),
    ("eval-interval", "evaluate, log and checkpoint every this many steps"),
    ("eval-iters", "batches per split in each evaluation"), ("seed", "random seed"),
]


def build_parser() -> argparse.ArgumentParser:
    presets = "\n".join(f"  {name:6s} {', '.join(f'{k}={v}' for k, v in {**PRESETS[name], **TRAIN_PRESETS[name]}.items())}"
                        for name in PRESETS)
    p = OneLineParser(
        prog="train.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a character-level transformer (see docs/training.md). Before any work, every number "
                    "is checked against the range its help gives ('(' and ')' exclude the bound), and on CPU the run's "
                    "estimated memory against the memory available.",
        epilog=f"presets (and, unless a preset says otherwise, {', '.join(f'{k}={v}' for k, v in COMMON.items())}):\n{presets}")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--lang", choices=LANGS, help="default corpus: en = King James Bible, he = Hebrew Bible")
    src.add_argument("--text", metavar="FILE", help="train on a UTF-8 text file; its last 10%% is the validation split")
    src.add_argument("--task", choices=TASKS,
                     help="train on a synthetic task instead of text: induction = random letters in which a segment is "
                          "copied to a random later position, drawn fresh every step (docs/training.md); its preset is "
                          "the default")
    p.add_argument("--task-segment", type=int, metavar="N",
                   help=f"with --task induction: letters copied, 2 to half of --block-size (default {InductionTask.segment})")
    p.add_argument("--task-letters", type=int, metavar="N",
                   help=f"with --task induction: alphabet size, 1..{len(LETTERS)} (default {InductionTask.letters})")
    p.add_argument("--task-follow", type=float, metavar="P",
                   help="with --task induction: chance in [0, 1] that a letter is its predecessor's successor, one "
                        "random successor per letter and sequence (an in-context bigram map, which pays only a head "
                        f"on the previous letter); 0 = independent letters (default {InductionTask.follow})")
    p.add_argument("--keep-niqqud", action="store_true", help="with --lang he: keep the vowel points (writes he_niqqud)")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="model size and schedule (default small; with --task induction, induction)")
    p.add_argument("--attn-only", action=argparse.BooleanOptionalAction,
                   help="attention-only blocks, no MLP (default: from the preset; on in the induction preset)")
    p.add_argument("--drop-vowels", action="store_true",
                   help="with --lang en: remove the vowel letters a, e, i, o, u in both cases, so English is written as "
                        "an abjad like unpointed Hebrew; y stays, as Hebrew keeps yod, a consonant letter that also writes "
                        "vowels; a word of vowels only (a, I, O) goes with its space (writes en_novowel)")
    for name, what in NUMERIC_FLAGS:
        allowed = SETTING_RANGES[name.replace("-", "_")]
        p.add_argument(f"--{name}", type=allowed.kind, metavar="N" if allowed.kind is int else "X",
                       help=f"{what}; in {allowed} (default: from the preset)".replace("%", "%%"))
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", choices=DTYPES,
                   help="auto = bfloat16 autocast on a GPU or CPU with native bfloat16 (AVX-512 BF16, AMX), else float32 "
                        "(default: auto; with --resume, the checkpoint's)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="torch.compile the model: faster steps after a warm-up of up to a minute (default: on CUDA, "
                        f"and on a CPU for runs of {CPU_COMPILE_MIN_STEPS:,}+ steps)")
    p.add_argument("--threads", type=int, metavar="N", help=f"CPU threads for torch, in {SETTING_RANGES['threads']} "
                   "(default: torch's choice); 1 is often faster on a busy machine")
    p.add_argument("--seeds", type=int, nargs="+", metavar="N",
                   help=f"train one model per seed: --seeds 3 = seeds 0, 1, 2 (N in 1..{seeds.MAX_SEEDS:,}); --seeds 5 7 = "
                        f"seeds 5 and 7 (at most {seeds.MAX_SEEDS:,}, each in {SETTING_RANGES['seed']}); seed k is written to "
                        "<name>_s<k>.pt; rerunning the command skips finished seeds and resumes interrupted ones; Ctrl-C "
                        "or SIGTERM stops every seed with its checkpoint saved")
    p.add_argument("--seed-procs", type=int, metavar="N",
                   help=f"with --seeds: seeds trained at once, each in its own process, 1..{MAX_SEED_PROCS} (default: one "
                        "per CPU core, at most one per seed; 1 on a GPU); 1 = one after another")
    p.add_argument("--out", help="checkpoint path (default checkpoints/<name>.pt, or the --resume file)")
    p.add_argument("--overwrite", action="store_true",
                   help="let --out replace an existing charlens checkpoint (never the corpus or any other file)")
    p.add_argument("--resume", metavar="CKPT", help="continue from this checkpoint with its settings")
    p.add_argument("--timeline", action=argparse.BooleanOptionalAction,
                   help="record every head's detector scores on a fixed probe set of held-out windows at log-spaced "
                        "steps and every evaluation, into the checkpoint's history and the log (default: on; "
                        "docs/timeline.md)")
    p.add_argument("--snapshots", type=int, metavar="N",
                   help=f"also keep full checkpoints at N log-spaced steps as <name>.step<k>.pt, in "
                        f"{SETTING_RANGES['snapshots']} and at most --max-iters (default 0)")
    p.add_argument("--sample-chars", type=int, default=300, metavar="N",
                   help=f"characters to generate at the end, in {SETTING_RANGES['sample_chars']} (0 = none)")
    return p


def given_flags(args: argparse.Namespace) -> dict:
    """The settings the user set (not the multi-seed flags, which are not settings of one run)."""
    return {k: v for k, v in vars(args).items() if v is not None and k not in ("seeds", "seed_procs")}


def preset_of(args: argparse.Namespace) -> str:
    """--preset, else the task's own, else small."""
    return args.preset or ("induction" if args.task else "small")


def make_corpus(args: argparse.Namespace, s: TrainSettings) -> Corpus:
    """The corpus the flags name (not on --resume, which takes the checkpoint's)."""
    if args.task:
        given = {k: v for k, v in (("segment", args.task_segment), ("letters", args.task_letters),
                                   ("follow", args.task_follow)) if v is not None}
        try:
            return task_corpus(InductionTask(length=s.block_size, **given))
        except ValueError as e:
            raise UsageError(f"--task induction: {e} (--task-segment, --task-letters, --task-follow, --block-size)") from None
    return (bible_corpus(args.lang, args.keep_niqqud, args.drop_vowels) if args.lang
            else file_corpus(args.text, s.block_size))


def check_seed_flags(args: argparse.Namespace) -> None:
    if args.resume:
        raise UsageError("--seeds starts or continues every seed itself (rerun the same command); "
                         "to continue one seed alone use --resume <name>_s<k>.pt without --seeds")
    if args.seed is not None:
        raise UsageError("--seed trains one model and --seeds several; give one of them")
    if ddp.from_env().active:
        raise UsageError("--seeds runs its own processes; start it with python, not torchrun")
    if args.seed_procs is not None and not 1 <= args.seed_procs <= MAX_SEED_PROCS:
        raise UsageError(f"--seed-procs must be in 1..{MAX_SEED_PROCS}, got {args.seed_procs}")
    seeds.seed_list(args.seeds)  # the count and every value, before any work


def prepare(args: argparse.Namespace) -> tuple[TrainSettings, Corpus, Tokenizer, Optional[dict]]:
    """Everything that can fail because of the arguments, before any training work."""
    if args.keep_niqqud and args.lang != "he" and not args.resume:
        raise UsageError("--keep-niqqud only applies to --lang he")
    if any(v is not None for v in (args.task_segment, args.task_letters, args.task_follow)) and not args.task:
        raise UsageError("--task-segment, --task-letters and --task-follow only apply to --task induction")
    if args.drop_vowels and args.lang != "en":
        raise UsageError("--drop-vowels only applies to --lang en" + (" (a resumed run keeps its corpus)" if args.resume else ""))
    if args.seeds is not None:
        check_seed_flags(args)
    checkpoint = None
    if args.resume:
        checkpoint = load_checkpoint(args.resume)
        if not {"train_args", "optimizer", "rng"} <= checkpoint.keys() or not {"batch", "torch"} <= checkpoint["rng"].keys():
            raise UsageError(f"{args.resume} holds no training state to resume from")
        if args.lang or args.text or args.task:
            raise UsageError("--resume takes its corpus from the checkpoint; drop --lang/--text/--task")
    elif not (args.lang or args.text or args.task):
        raise UsageError("choose a corpus: --lang en, --lang he, --text FILE or --task induction")
    s = settings_from_flags(given_flags(args), preset_of(args), checkpoint, args.resume)
    device = resolve_device(s.device)
    ddp.check_batch(ddp.from_env(), s.batch_size)
    if checkpoint is not None:
        corpus = corpus_from_identity(checkpoint["corpus"])
        tokenizer = tokenizer_from_dict(checkpoint["tokenizer"])
    else:
        corpus = make_corpus(args, s)
        chars = sorted(corpus.chars())
        check_vocabulary(len(chars) + 1)  # (+ the unknown token) before anything is sized by it
        tokenizer = CharTokenizer(chars)
    if s.out is None:
        s = replace(s, out=f"checkpoints/{corpus.name}.pt")
    out = Path(str(s.out))
    sources = [Path(p) for p in (args.text, corpus.identity.get("path"), corpus.identity.get("source")) if p]
    # With --seeds the outputs are the seeds' own files; a seed's existing checkpoint is continued (seeds.plan).
    outs = [seeds.seed_path(out, k) for k in seeds.seed_list(args.seeds)] if args.seeds is not None else [out]
    done = checkpoint["iter"] if checkpoint is not None else 0  # snapshots up to here are not written again
    steps = sorted(k for k in snapshots.snapshot_steps(s.snapshots, s.max_iters) if k > done)
    for path in outs:
        resume = path if args.seeds is not None else (Path(args.resume) if args.resume else None)
        check_output(path, sources, resume, args.overwrite, tuple(snapshots.snapshot_path(path, k) for k in steps))
    if device.type == "cpu":
        check_memory(s, tokenizer.vocab_size, corpus.size("train") + corpus.size("val"))
    snapshots.check_room(s, tokenizer.vocab_size, corpus.lang, outs)
    for path in outs:
        for written in (path, *log_paths(path)):
            sweep_stale_temps(written)  # debris of a killed run writing the same files
    return s, corpus, tokenizer, checkpoint


def file_state(path: Path) -> Optional[tuple[int, int]]:
    """(inode, mtime) of a file, to tell whether this run replaced it; None if absent."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def main(argv: Optional[list[str]] = None, stop_at: Optional[int] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        return run(args, parser.prog, stop_at)
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace, prog: str, stop_at: Optional[int]) -> int:
    """prepare, then train; Ctrl-C or SIGTERM outside the training steps (which save and exit
    themselves) gives one line and exit status 130 or 143."""
    try:
        s, corpus, tokenizer, checkpoint = prepare(args)
        if args.seeds is not None:
            runs = seeds.plan(seeds.seed_list(args.seeds), s, given_flags(args), preset_of(args), corpus)
    except CharlensError as e:
        print(f"{prog}: error: {visible(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # while reading the corpus or checkpoint
        print("interrupted before training; nothing was written", file=sys.stderr)
        return interrupt_status(e)
    out = Path(str(s.out))
    before = file_state(out)
    try:
        if args.seeds is not None:
            procs = args.seed_procs or seeds.default_procs(len(runs), resolve_device(s.device))
            return seeds.run_seeds(runs, corpus, tokenizer, procs)
        return train(s, source_for(corpus, tokenizer, s), tokenizer, checkpoint, stop_at)
    except KeyboardInterrupt as e:  # set-up, the sample at the end
        written = file_state(out) not in (None, before)
        print(f"interrupted; {f'the last checkpoint this run wrote is {out}' if written else 'this run wrote no checkpoint'}",
              file=sys.stderr)
        return interrupt_status(e)

