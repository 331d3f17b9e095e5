"""The entry point of a seed's process (training/seeds.py runs one per seed, spawned: a fresh interpreter).

It imports nothing heavy at the top, and receives its job as pickled bytes that it unpacks itself, so that
the seconds of start-up (importing torch) run inside `main`, where Ctrl-C and SIGTERM are caught: a signal
that reaches the seed while it starts gives its exit status (130, 143), never a traceback. The interpreter's own
start, before `main` runs, happens with both signals ignored (seeds.start_shielded); a stop that came then is read
from `stop` once the handlers are in place.
"""
from __future__ import annotations

import pickle
import signal
import sys
from multiprocessing.sharedctypes import Synchronized

from charlens.data.errors import CharlensError, interrupt_status, raise_terminated
from charlens.data.progress import write_whole_lines


def main(job: bytes, stop: Synchronized) -> None:
    """Train one seed: `job` is pickle.dumps((run, corpus, tokenizer_dict, threads, position)) for
    training.seeds.run_child; `stop` is 0, or the run's exit status once the run was stopped. Exits with the
    training's status, 130 / 143 when interrupted before the training loop took over the signals (nothing to save
    yet), 2 with one line for a CharlensError."""
    write_whole_lines()  # the other seeds write to the same terminal or log
    try:  # the handlers go in first, inside the try: a signal may come the moment each is installed
        signal.signal(signal.SIGTERM, raise_terminated)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM))  # the start may leave them blocked
        if stop.value:  # stopped while this process started, its signals ignored
            sys.exit(stop.value)
        from charlens.training.seeds import run_child

        status = run_child(*pickle.loads(job))
    except KeyboardInterrupt as e:
        status = interrupt_status(e)
    except CharlensError as e:
        print(f"error: {e}", file=sys.stderr)
        status = 2
    sys.exit(status)
