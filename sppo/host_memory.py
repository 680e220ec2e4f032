"""Host memory of training on a CPU: large blocks straight from the OS, handed back to it when freed.

glibc's malloc serves a request of at least its mmap threshold with a mapping of its own, unmapped on free, and
smaller ones from its heaps, which keep freed memory for reuse. The threshold starts at 128 KiB but rises to the size
of each large block freed (up to 32 MiB): after the first step's logits and activations are freed, every activation
of a small model comes from the heaps, and the process keeps what fragmentation leaves in them. On the embedded model
(SmolLM2-135M, 4 pairs a step) that is about 220 MiB of a ~3 GiB peak. A fixed threshold of 1 MiB keeps activations in
mappings of their own: the peak RSS while training falls by ~7%, the step takes ~5% longer (mapping fresh pages);
`perf/results/latest.md` measures the peak both ways. The setting holds while the optimisation runs
(`sppo.train.train_iteration`); mapping fresh pages slows the rest of an iteration too (ranking, generation), so it
ends with it. Only glibc (Linux) has the knob; elsewhere nothing changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # glibc malloc.h
MMAP_THRESHOLD = 1 << 20  # bytes, while training
AFTER_THRESHOLD = 32 << 20  # bytes, afterwards: the most glibc's own threshold rises to (DEFAULT_MMAP_THRESHOLD_MAX)


def _mallopt(threshold: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt is not None and mallopt(M_MMAP_THRESHOLD, threshold) == 1)


@contextlib.contextmanager
def large_blocks_released(device_type: str):
    """While training on a CPU (`device_type` "cpu"): blocks of MMAP_THRESHOLD bytes or more mapped from the OS and
    returned on free (glibc's `mallopt(M_MMAP_THRESHOLD)`). Afterwards the threshold is AFTER_THRESHOLD, where
    glibc's own rises to, so that what follows (the next iteration's generation and ranking) allocates as before.
    Yields whether it was set."""
    applied = device_type == "cpu" and _mallopt(MMAP_THRESHOLD)
    try:
        yield applied
    finally:
        if applied:
            _mallopt(AFTER_THRESHOLD)
