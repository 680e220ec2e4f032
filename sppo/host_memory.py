"""Host memory of training on a CPU: large blocks straight from the OS, handed back to it when freed.

glibc's malloc serves a request of at least its mmap threshold with a mapping of its own, unmapped on free, and
smaller ones from its heaps, which keep freed memory for reuse. The threshold starts at 128 KiB but rises to the size
of each large block freed (up to 32 MiB): after the first step's logits and activations are freed, every activation
of a small model comes from the heaps, and the process keeps what fragmentation leaves in them. On the embedded model
(SmolLM2-135M, 4 pairs a step) that is about 220 MiB of a ~3 GiB peak. A fixed threshold of 1 MiB keeps activations in
mappings of their own: the peak RSS while training falls by ~7%, the step takes ~5% longer (mapping fresh pages);
`perf/results/latest.md` measures the peak both ways. Only glibc (Linux) has the knob; elsewhere nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # glibc malloc.h
MMAP_THRESHOLD = 1 << 20  # bytes


def release_large_blocks(device_type: str, threshold: int = MMAP_THRESHOLD) -> bool:
    """For training on a CPU (`device_type` "cpu"): blocks of `threshold` bytes or more mapped from the OS and
    returned on free (glibc's `mallopt(M_MMAP_THRESHOLD)`, which also stops the threshold's rise). Whether it was
    set; a process-wide setting that stays."""
    if device_type != "cpu" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt is not None and mallopt(M_MMAP_THRESHOLD, threshold) == 1)
