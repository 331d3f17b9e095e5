"""The docs cannot drift from the flags: every train.py / analyze.py command quoted in README.md and docs/*.md (in
code blocks and in `inline code`, as `python train.py ...`, `torchrun ... train.py ...`, `charlens-train ...`,
`python analyze.py ...`, `charlens-analyze ...`) must parse with the program's own argument parser (build_parser).
A failure names the file and line of the command and argparse's complaint."""
from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from charlens import analyze, train

ROOT = Path(__file__).resolve().parent.parent
PARSERS = {"train": train.build_parser, "analyze": analyze.build_parser}
PROGRAMS = {"train.py": "train", "analyze.py": "analyze", "charlens-train": "train", "charlens-analyze": "analyze"}
ELLIPSES = ("...", "…")  # an elided value after a flag that takes one, or "and the rest" anywhere else
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")


@dataclass(frozen=True)
class Command:
    path: str  # relative to the repository
    line: int
    text: str  # as quoted
    program: str  # train / analyze
    args: tuple[str, ...]


def snippets(text: str) -> list[tuple[int, str]]:
    """(line, text) of every command candidate: each line of a code block (backslash continuations joined) and
    every inline code span outside code blocks."""
    found: list[tuple[int, str]] = []
    outside = []
    last = 0
    for block in FENCE.finditer(text):
        outside.append((last, text[last:block.start()]))
        first = text.count("\n", 0, block.start()) + 2  # the line after the opening fence
        pending, start = "", first
        for k, line in enumerate(block.group(0).split("\n")[1:-1]):
            if not pending:
                start = first + k
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            found.append((start, pending + line))
            pending = ""
        last = block.end()
    outside.append((last, text[last:]))
    for offset, part in outside:
        for span in INLINE.finditer(part):
            found.append((text.count("\n", 0, offset + span.start()) + 1, span.group(1).replace("\n", " ")))
    return found


def split_commands(snippet: str) -> list[list[str]]:
    """Shell words of each simple command in a snippet (split at && ; | > and the like; comments dropped)."""
    lexer = shlex.shlex(snippet, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        words = list(lexer)
    except ValueError:  # unbalanced quotes: prose that happens to mention a program, not a command
        return []
    commands: list[list[str]] = [[]]
    for w in words:
        if w and all(c in "();<>|&" for c in w):
            commands.append([])
        else:
            commands[-1].append(w)
    return [c for c in commands if c]


def program_args(words: list[str]) -> tuple[str, list[str]] | None:
    """The program (train / analyze) and its arguments, if these words run one of them."""
    for i, w in enumerate(words):
        name = w.rsplit("/", 1)[-1] if w.endswith(".py") else w
        if name not in PROGRAMS:
            continue
        runner = words[i - 1] if i else ""
        if name.endswith(".py") and not (runner.startswith("python") or words[0] == "torchrun"):
            continue  # a file name in prose (`train.py --resume` as a phrase), not a command
        return PROGRAMS[name], words[i + 1:]
    return None


def commands_in(path: Path) -> list[Command]:
    rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    out = []
    for line, snippet in snippets(path.read_text(encoding="utf-8")):
        elsewhere = False  # after `cd nanoGPT`, `python train.py` is another project's program
        for words in split_commands(snippet):
            elsewhere = elsewhere or words[0] == "cd"
            found = None if elsewhere else program_args(words)
            if found:
                out.append(Command(rel, line, snippet.strip(), found[0], tuple(found[1])))
    return out


def takes_value(parser: argparse.ArgumentParser, flag: str) -> bool:
    action = parser._option_string_actions.get(flag.split("=")[0])
    return action is not None and action.nargs != 0 and "=" not in flag


def problem(command: Command) -> str | None:
    """argparse's complaint about the command, or None when it parses."""
    parser = PARSERS[command.program]()
    parser.allow_abbrev = False  # the docs spell every flag in full, as --help does
    args: list[str] = []
    for w in command.args:
        if w in ELLIPSES or w.endswith(ELLIPSES) and w.strip(".…") == "":
            if args and takes_value(parser, args[-1]):
                args.append("X")
            continue
        args.append(w)
    if "-h" in args or "--help" in args:
        return None
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(args)
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1]
    return None


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_quoted_command_parses_with_its_programs_flags():
    commands = [c for f in doc_files() for c in commands_in(f)]
    assert len(commands) >= 40, f"only {len(commands)} commands found: the extraction is broken"
    assert {c.program for c in commands} == {"train", "analyze"}
    bad = [f"{c.path}:{c.line}: `{c.text}`: {p}" for c in commands if (p := problem(c))]
    assert not bad, "commands in the docs that the programs would refuse:\n" + "\n".join(bad)


def test_a_drifted_flag_is_reported_with_its_file_and_line(tmp_path):
    doc = tmp_path / "guide.md"
    doc.write_text("Train:\n```bash\npython train.py --lang en \\\n  --max-iter 10   # old spelling\n```\n"
                   "Then `python analyze.py --ckpt checkpoints/en.pt --windows many` or\n"
                   "`torchrun --nproc_per_node 2 train.py --lang en --seeds 2 && charlens-analyze --compare A… --vs B…`\n"
                   "(`train.py --resume` is prose; `python bench/train_speed.py --rounds 3` is another program,\n"
                   "and so is `cd nanoGPT && python train.py --compile=False`).\n",
                   encoding="utf-8")
    commands = commands_in(doc)
    assert [(c.line, c.program) for c in commands] == [(3, "train"), (6, "analyze"), (7, "train"), (7, "analyze")]
    assert commands[0].args == ("--lang", "en", "--max-iter", "10")
    problems = [problem(c) for c in commands]
    assert problems[0].endswith("unrecognized arguments: --max-iter 10")  # a prefix of --max-iters is not its name
    assert "--windows" in problems[1] and "many" in problems[1]
    assert problems[2] is None and problems[3] is None


@pytest.mark.parametrize("snippet, expected", [
    ("python train.py --lang en && python train.py --lang he", [["python", "train.py", "--lang", "en"],
                                                                ["python", "train.py", "--lang", "he"]]),
    ("python analyze.py --ckpt a.pt > out.txt 2>&1   # note", [["python", "analyze.py", "--ckpt", "a.pt"],
                                                               ["out.txt", "2"], ["1"]]),
    ("python analyze.py --sentences \"The cat; sat.\" 'x y'", [["python", "analyze.py", "--sentences", "The cat; sat.",
                                                                 "x y"]]),
])
def test_snippets_split_into_shell_commands(snippet, expected):
    assert split_commands(snippet) == expected
