"""Jobs for groupjobs.run_jobs with known outcomes (a result, a one-line error, a long sleep, a dying worker); in a
module of their own so that the worker processes can import them."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from charlens.data.errors import UsageError


@dataclass(frozen=True)
class Square:
    n: int

    def label(self) -> str:
        return f"square of {self.n}"

    def run(self, progress: bool) -> int:
        return self.n * self.n


@dataclass(frozen=True)
class Fails:
    def label(self) -> str:
        return "a failing job"

    def run(self, progress: bool) -> None:
        time.sleep(1)  # the other worker's job has started by now
        raise UsageError("planted failure")


@dataclass(frozen=True)
class SleepsThenWrites:
    seconds: float
    marker: Path

    def label(self) -> str:
        return "a long job"

    def run(self, progress: bool) -> None:
        time.sleep(self.seconds)
        self.marker.write_text("finished", encoding="utf-8")


@dataclass(frozen=True)
class Dies:
    def label(self) -> str:
        return "a worker that dies"

    def run(self, progress: bool) -> None:
        os._exit(3)
