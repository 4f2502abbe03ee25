"""A workload of known per-item cost, for the executors' tests and ``benchmarks/bench_scale.py``:
with ``seconds`` per item and N workers the ideal wall time is ``items * seconds / N``, so
what is measured above it is the executor's own overhead."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SleepWork:
    """A worker factory (picklable): each item sleeps ``seconds`` and comes back as
    ``(item, pid of the worker)``; an item equal to ``fail_on`` raises."""

    seconds: float = 0.05
    fail_on: Any = None

    def __call__(self):
        def work(item: Any) -> tuple[Any, int]:
            if self.fail_on is not None and item == self.fail_on:
                raise ValueError(f"item {item!r} fails on purpose")
            time.sleep(self.seconds)
            return item, os.getpid()

        return work
