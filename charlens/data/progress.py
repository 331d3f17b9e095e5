"""Progress of long work, on stderr: a tqdm bar on a terminal; elsewhere (a log file, CI, a scheduler) one plain
line every EVERY_S seconds (or $CHARLENS_PROGRESS_EVERY) instead of a bar's redraws, so that a job's log holds
lines, not bar frames.

    bar = progress(total=n, desc="seed 0", unit="it")
    bar.update(1); bar.set_postfix_str("loss=1.23"); bar.write("a message"); bar.close()

Every bar of charlens (trainer, seeds, reading a text, the analyzer's passes) is made here.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Optional, TextIO

EVERY_S = 30.0  # seconds between progress lines when stderr is not a terminal
EVERY_ENV = "CHARLENS_PROGRESS_EVERY"  # overrides EVERY_S


def every_s() -> float:
    """Seconds between progress lines: $CHARLENS_PROGRESS_EVERY if it is a positive number, else EVERY_S."""
    try:
        value = float(os.environ.get(EVERY_ENV, ""))
    except ValueError:
        return EVERY_S
    return value if value > 0 else EVERY_S


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


def write_whole_lines() -> None:
    """Make stdout and stderr write each line in one write call, for processes that share a terminal or a log
    (the seeds side by side): print writes a text and its newline separately when the text layer writes through
    (PYTHONUNBUFFERED, python -u), so two processes' lines would merge into one and leave an empty one."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # a TextIOWrapper (not a replacement without it)
            stream.reconfigure(line_buffering=True, write_through=False)


class LineProgress:
    """A bar's interface (update, set_postfix_str, write, close) that writes one plain line to stderr at most
    every `every` seconds: '<desc>: 1,200/2,000 it (60%), 10.5 it/s, 1:54 elapsed, about 1:16 left, <postfix>'."""

    def __init__(self, total: Optional[float], desc: Optional[str], unit: str, initial: float = 0, leave: bool = True,
                 every: Optional[float] = None, unit_scale: bool = False) -> None:
        self.total, self.desc, self.unit, self.leave = total, desc, unit, leave
        self.every = every_s() if every is None else every
        self.n, self.start_n, self.unit_scale = initial, initial, unit_scale
        self.began = self.last = time.monotonic()
        self.postfix, self.printed, self.closed = "", False, False

    def update(self, n: float = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._line()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def write(self, s: str) -> None:
        print(s, flush=True)  # as tqdm.write: messages go to stdout

    def close(self) -> None:
        """A last line if any was written (or the bar is kept, `leave`) and time went by."""
        if not self.closed and (self.printed or (self.leave and time.monotonic() - self.began >= self.every)):
            self._line()
        self.closed = True

    def _line(self) -> None:
        now = time.monotonic()
        elapsed, rate = now - self.began, (self.n - self.start_n) / max(now - self.began, 1e-9)
        count = _amount(self.n, self.unit_scale) + (f"/{_amount(self.total, self.unit_scale)}" if self.total else "")
        parts = [f"{count} {self.unit}" + (f" ({self.n / self.total:.0%})" if self.total else ""),
                 f"{_amount(rate, self.unit_scale, 1)} {self.unit}/s", f"{_clock(elapsed)} elapsed"]
        if self.total and rate > 0:
            parts.append(f"about {_clock((self.total - self.n) / rate)} left")
        if self.postfix:
            parts.append(self.postfix)
        print(f"{self.desc + ': ' if self.desc else ''}{', '.join(parts)}", file=sys.stderr, flush=True)
        self.last, self.printed = now, True

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _amount(x: float, scale: bool, digits: int = 0) -> str:
    """1,234 (or with unit_scale 1.2M)."""
    if scale:
        for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(x) >= factor:
                return f"{x / factor:.1f}{suffix}"
    return f"{x:,.{digits}f}"


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"


def progress(total: Optional[float] = None, desc: Optional[str] = None, unit: str = "it", initial: float = 0,
             leave: bool = True, enabled: bool = True, position: int = 0, unit_scale: bool = False) -> Any:
    """A progress bar on stderr (tqdm) when it is a terminal, else a LineProgress; with enabled=False, a bar
    that shows nothing. `position` is the bar's line among bars shown at once (seeds side by side)."""
    if enabled and not is_terminal(sys.stderr):
        return LineProgress(total, desc, unit, initial, leave, unit_scale=unit_scale)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave, disable=not enabled, position=position,
                dynamic_ncols=True, unit_scale=unit_scale)
