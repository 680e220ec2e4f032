"""sppo.host_memory: on a CPU under glibc, blocks of 1 MiB and more freed by training go back to the OS (the RSS
falls), where glibc's default keeps them once a larger block has raised its threshold; afterwards they come from the
heaps again; other devices are untouched."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sppo.host_memory import large_blocks_released

# a fresh process: a 16 MiB block freed (glibc then serves blocks up to 16 MiB from its heaps), then 200 blocks of
# 2 MiB, every 7th kept alive (a fragmented heap); the RSS beyond the live blocks, in MiB
PROBE = r"""
import json, sys, torch
from perf.timing import current_rss_mb
from sppo.host_memory import large_blocks_released
big = torch.ones(4 * 2**20); del big
def fragment():
    start = current_rss_mb()
    blocks = [torch.ones(2**19) for _ in range(200)]
    keep = blocks[::7]
    del blocks
    return current_rss_mb() - start - 2 * len(keep), keep
with large_blocks_released("cpu" if sys.argv[1] == "set" else "none") as applied:
    assert applied == (sys.argv[1] == "set")
    kept, live = fragment()
after, _ = fragment()
print(json.dumps({"kept_mb": kept, "after_mb": after}))
"""


def kept(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_large_blocks_leave_the_process_while_set():
    default, ours = kept("default"), kept("set")
    assert default["kept_mb"] > 100  # glibc's heaps keep the freed blocks between the live ones (~330 MiB)
    assert ours["kept_mb"] < 20
    assert ours["after_mb"] > 100  # afterwards: from the heaps again, as by default


def test_only_a_cpu_is_changed():
    with large_blocks_released("cuda") as applied:
        assert applied is False
