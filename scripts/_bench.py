"""Helpers shared by the benchmark scripts: time one call, and say how busy the machine was."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fn()
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    return t1 - t0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def load_conditions() -> str:
    """Load average and CPU pressure now (a shared machine inflates wall times)."""
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    try:
        pressure = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        pressure = "n/a"
    return f"loadavg {load}; cpu pressure: {pressure}"
