"""How the process allocates CPU memory (``cpu_malloc``): let freed large blocks be reused instead of unmapped.

glibc's ``malloc`` serves a request above its mmap threshold (adjusted at run time, at most 32 MiB on 64-bit
systems) with a fresh ``mmap`` and returns it to the kernel (``munmap``) when it is freed. A CPU training step
allocates its activations and their gradients anew every step, and at 224 px and batch 32 most of them are larger
than that (EfficientNet-Lite0's first expanded activation is 154 MB), so every step faults every page of them in
again: 655,000 minor page faults per Lite0 step at batch 32 on the 2-core development VM, where a fault costs
~5 us, and a step 2-4x slower than without them (``results/bench/train_throughput.md``). Evaluation's forward passes
pay the same in proportion.

``reuse`` (the default of every job on CPU) raises the mmap threshold to 1 GiB and the trim threshold to 2 GiB with
``mallopt``: freed blocks stay in the heap and the next step takes the same ones, so after the first steps a step
faults nothing; the numbers do not change. The price is memory: the process keeps its peak heap mapped until it
exits, and torch's 64-byte-aligned requests do not always fit the blocks they freed, so peak RSS grows (Lite0 step:
12-14 %; VGG16 at batch 16: 44 %; a small model's ILSVRC-sized evaluation: ~60 %, flat in the number of images).
``system`` leaves glibc's defaults.

The setting is process-wide and, once applied, stays (glibc cannot go back to its dynamic threshold). On a C
library that is not glibc (macOS, musl) ``reuse`` does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

from wsol.choices import CPU_MALLOC

__all__ = ["CPU_MALLOC", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "cpu_malloc_in_effect", "set_cpu_malloc"]

log = logging.getLogger(__name__)

#: Requests up to this size come from the heap (glibc's ``M_MMAP_THRESHOLD``).
MMAP_THRESHOLD = 1 << 30
#: Free memory at the top of the heap is given back only above this (``M_TRIM_THRESHOLD``; an ``int``).
TRIM_THRESHOLD = 2**31 - 1
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>

_in_effect = "system"


def cpu_malloc_in_effect() -> str:
    """``reuse`` once :func:`set_cpu_malloc` has applied it in this process, else ``system``."""
    return _in_effect


def set_cpu_malloc(mode: str) -> str:
    """Apply ``mode`` (one of :data:`CPU_MALLOC`) to this process; returns the mode in effect afterwards.

    ``system`` after ``reuse`` in the same process changes nothing (and returns ``reuse``); ``reuse`` without glibc
    logs a warning and returns ``system``.

    Raises:
        ValueError: ``mode`` is not one of :data:`CPU_MALLOC`.
    """
    global _in_effect
    if mode not in CPU_MALLOC:
        raise ValueError(f"cpu_malloc={mode!r}: expected one of {list(CPU_MALLOC)}")
    if _in_effect == "reuse":
        if mode == "system":
            log.warning("cpu_malloc=system: this process already runs with cpu_malloc=reuse; it stays")
        return _in_effect
    if mode == "system":
        return _in_effect
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = getattr(libc, "mallopt", None)
    gnu = getattr(libc, "gnu_get_libc_version", None)
    if mallopt is None or gnu is None:
        log.warning("cpu_malloc=reuse: the C library is not glibc; its allocator is left as it is")
        return _in_effect
    # Trim first: setting the mmap threshold alone would leave the dynamic trim threshold in place.
    ok = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    if not ok:
        log.warning("cpu_malloc=reuse: glibc's mallopt refused the thresholds; its allocator is left as it is")
        return _in_effect
    _in_effect = "reuse"
    return _in_effect
