"""Ctrl-C as a CLI starts: run a checkout launcher (train.py, analyze.py) as a script in which Ctrl-C arrives as it
starts importing torch. (The KeyboardInterrupt is raised by the import hook itself: a real SIGINT is handled
wherever the interpreter next checks for signals, which may be inside torch's own start-up code.) And Ctrl-C as a
child process starts (ctrl_c_as_the_nth_process_starts)."""
from __future__ import annotations

import subprocess
import sys
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Callable

from charlens.data.errors import start_shielded

ROOT = Path(__file__).resolve().parents[1]
DURING_IMPORT = """
import builtins, runpy, sys
real_import = builtins.__import__
def interrupting_import(name, *args, **kwargs):
    if name == "torch":
        builtins.__import__ = real_import
        raise KeyboardInterrupt
    return real_import(name, *args, **kwargs)
builtins.__import__ = interrupting_import
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def ctrl_c_while_torch_loads(launcher: str, *argv: str) -> subprocess.CompletedProcess:
    """The launcher's exit status and output when Ctrl-C arrives as it imports torch."""
    return subprocess.run([sys.executable, "-c", DURING_IMPORT, launcher, *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def ctrl_c_as_the_nth_process_starts(n: int) -> tuple[list[BaseProcess], Callable[[BaseProcess], None]]:
    """A stand-in for start_shielded that starts the process, then raises KeyboardInterrupt once the n-th has
    started, as start_shielded does when a Ctrl-C came while it held signals back; and the processes it started."""
    started: list[BaseProcess] = []

    def start(process: BaseProcess) -> None:
        start_shielded(process)
        started.append(process)
        if len(started) == n:
            raise KeyboardInterrupt

    return started, start
