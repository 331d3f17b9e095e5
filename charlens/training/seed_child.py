"""The entry point of a seed's process (training/seeds.py runs one per seed, spawned: a fresh interpreter).

It imports nothing heavy at the top, and receives its job as pickled bytes that it unpacks itself, so that
the seconds of start-up (importing torch) run inside `main`, where Ctrl-C and SIGTERM are caught: a signal
that reaches the seed while it starts gives its exit status (130, 143), never a traceback. What remains is
the interpreter's own start (about 0.1 s) before `main` runs.
"""
from __future__ import annotations

import pickle
import signal
import sys

from charlens.data.errors import CharlensError, interrupt_status, raise_terminated


def main(job: bytes) -> None:
    """Train one seed: `job` is pickle.dumps((run, corpus, tokenizer_dict, threads, position)) for
    training.seeds.run_child. Exits with the training's status, 130 / 143 when interrupted before the
    training loop took over the signals (nothing to save yet), 2 with one line for a CharlensError."""
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        from charlens.training.seeds import run_child

        status = run_child(*pickle.loads(job))
    except KeyboardInterrupt as e:
        status = interrupt_status(e)
    except CharlensError as e:
        print(f"error: {e}", file=sys.stderr)
        status = 2
    sys.exit(status)
