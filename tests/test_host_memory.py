"""sppo.host_memory: on a CPU under glibc, blocks of 1 MiB and more freed by training go back to the OS (the RSS
falls), where glibc's default keeps them once a larger block has raised its threshold; other devices are untouched."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sppo.host_memory import release_large_blocks

# a fresh process: a 16 MiB block freed (glibc then serves blocks up to 16 MiB from its heaps), then 200 blocks of
# 2 MiB, every 7th kept alive (a fragmented heap); the RSS beyond the live blocks, in MiB
PROBE = r"""
import json, sys, torch
from perf.timing import current_rss_mb
if sys.argv[1] == "set":
    from sppo.host_memory import release_large_blocks
    assert release_large_blocks("cpu")
big = torch.ones(4 * 2**20); del big
start = current_rss_mb()
blocks = [torch.ones(2**19) for _ in range(200)]
keep = blocks[::7]
del blocks
print(json.dumps({"kept_mb": current_rss_mb() - start - 2 * len(keep)}))
"""


def kept(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["kept_mb"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_large_blocks_leave_the_process():
    default, ours = kept("default"), kept("set")
    assert default > 100  # glibc's heaps keep the freed blocks between the live ones (~330 MiB)
    assert ours < 20


def test_only_a_cpu_is_changed():
    assert release_large_blocks("cuda") is False
