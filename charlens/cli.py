"""Entry points of the console scripts (charlens-train, charlens-analyze) and of the checkout's
train.py / analyze.py.

Importing a CLI module loads torch, which takes a second or more; a Ctrl-C or SIGTERM in that time must
give one line and the shell's exit status (130, 143), not a traceback, so the module is imported here
under a guard before its main() runs."""
from __future__ import annotations

import importlib
import signal
import sys
from typing import Callable, Optional

from charlens.data.errors import interrupt_status, raise_terminated


def launch(module: str, task: str, argv: Optional[list[str]] = None) -> int:
    """Import `module` (a CLI with main(argv) -> exit status) with Ctrl-C and SIGTERM turned into one
    line, then run its main."""
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    started = False
    try:
        main: Callable[[Optional[list[str]]], int] = importlib.import_module(module).main
        started = True
        return main(argv)  # (each CLI handles its own interruptions; this catches what escapes at its very end)
    except KeyboardInterrupt as e:
        print("interrupted" if started else f"interrupted before {task}; nothing was written", file=sys.stderr)
        return interrupt_status(e)
    finally:
        signal.signal(signal.SIGTERM, previous)


def train() -> int:
    """charlens-train: the same flags as python train.py."""
    return launch("charlens.train", "training")


def analyze() -> int:
    """charlens-analyze: the same flags as python analyze.py."""
    return launch("charlens.analyze", "analysis")
