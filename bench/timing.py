"""The benches' one timer: the median wall time of a call after warm-up, optionally bounded by a time budget."""
from __future__ import annotations

import statistics
import time
from typing import Callable, List, Optional


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 2, budget_s: Optional[float] = None) -> float:
    """Median of ``runs`` timed calls of ``fn`` in ms, after ``warmup`` untimed ones. With ``budget_s`` the number
    of runs shrinks (to no fewer than 3) so that they take about that long, judged from the last warm-up call."""
    return statistics.median(times_ms(fn, runs, warmup, budget_s))


def p90(times: List[float]) -> float:
    """The 90th percentile of sorted times (the lower neighbour, no interpolation)."""
    return times[int(0.9 * (len(times) - 1))]


def times_ms(fn: Callable[[], object], runs: int, warmup: int = 2, budget_s: Optional[float] = None) -> List[float]:
    """The sorted wall times in ms behind :func:`median_ms` (same warm-up and budget), for a median and a p90."""
    last = 0.0
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        last = time.perf_counter() - t0
    if budget_s is not None and last > 0:
        runs = max(3, min(runs, int(budget_s / last)))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)
