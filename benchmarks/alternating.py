"""Alternating timed epochs, the measurement every speed benchmark here shares.

Each method (an object with ``epoch()``) runs one untimed warm-up epoch (set-up, capture),
then ``repeats`` timed epochs, the methods interleaved so that a change in the machine's
load reaches all of them alike. Prints every epoch's seconds and the medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(loop: Any, synchronize: Callable[[], None] = lambda: None) -> float:
    """Seconds of one ``loop.epoch()`` (``synchronize`` waits for a device before and after)."""
    synchronize()
    start = time.perf_counter()
    loop.epoch()
    synchronize()
    return time.perf_counter() - start


def alternate(
    loops: dict[str, Any],
    repeats: int,
    steps: int,
    synchronize: Callable[[], None] = lambda: None,
) -> dict[str, float]:
    """Warm up, time ``repeats`` interleaved epochs of each loop, print them and the median
    seconds per epoch and per step (``steps`` per epoch); return the medians by name."""
    width = max(len(name) for name in loops)
    for name, loop in loops.items():
        print(f"warm-up {name:{width}s} {timed(loop, synchronize):7.3f} s")
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    for repeat in range(repeats):
        for name, loop in loops.items():
            seconds[name].append(timed(loop, synchronize))
        print(
            f"epoch {repeat + 1}: "
            + "  ".join(f"{name} {seconds[name][-1]:.3f} s" for name in loops)
        )
    median = {name: statistics.median(values) for name, values in seconds.items()}
    for name, value in median.items():
        print(f"median {name:{width}s} {value:7.3f} s/epoch  {1e3 * value / steps:7.3f} ms/step")
    return median
