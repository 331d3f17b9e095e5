"""The one exception base of charlens, and how the CLIs say what went wrong. Every error a user can cause (a bad
flag, an unusable file, a damaged checkpoint, an output that cannot be written) is a `CharlensError` subclass with a
one-line message; the CLIs catch the base, print the line (`visible`: control characters in a name can neither
break it nor reorder it) and exit with status 2, as their argument parser (`OneLineParser`) does for a bad flag.
SIGTERM is raised as `Terminated`, a KeyboardInterrupt, so that it takes Ctrl-C's path (one line, status 143)."""
from __future__ import annotations

import argparse
import re
import signal
from multiprocessing.process import BaseProcess
from typing import NoReturn

# C0 and C1 controls but the tab, and the bidirectional formatting characters (Unicode's Bidi_Control).
CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class CharlensError(Exception):
    """A problem with the user's input or environment, explained in one line (no traceback)."""


class UsageError(CharlensError):
    """Bad command-line arguments, refused before any work."""


class CorpusError(CharlensError):
    """A corpus or text file that cannot be read or used."""


class OutputError(CharlensError):
    """An output path that cannot or may not be written (refused before any work where it can be)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that both take one path (exit status 143, not 130)."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: `signal.signal(signal.SIGTERM, raise_terminated)`."""
    raise Terminated()


def interrupt_status(e: KeyboardInterrupt) -> int:
    """The exit status a shell reports for the signal behind `e`: 143 for SIGTERM, 130 for Ctrl-C."""
    return 143 if isinstance(e, Terminated) else 130


SHIELDED = (signal.SIGINT, signal.SIGTERM)


def start_shielded(child: BaseProcess) -> None:
    """Start a spawned child process with Ctrl-C and SIGTERM ignored until it sets its own handlers (a signal during
    the interpreter's start would print a traceback; an ignored disposition survives the exec, a handler does not).
    The parent blocks both meanwhile, so one that arrives now is raised as this returns: register the child with
    whatever stops it before the call, not after. A child that never sets a SIGTERM handler must be stopped with
    SIGKILL."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, SHIELDED)
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in SHIELDED}
    try:
        child.start()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def visible(text: str) -> str:
    """`text` with every control character shown as <U+XXXX>: one line on a console, and nothing (a line break,
    a terminal escape, a bidi override such as U+202E) that makes a name read as another."""
    return CONTROLS.sub(lambda m: f"<U+{ord(m.group()):04X}>", str(text))


class OneLineParser(argparse.ArgumentParser):
    """The CLIs' argument parser: a bad flag is one line and exit status 2, like every other refusal (argparse
    would print the whole usage first; --help shows it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {visible(message)}\n")
