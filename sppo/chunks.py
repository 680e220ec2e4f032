"""Resumable, data-parallel stages: generation, ranking and the reference pass, split into chunks across ranks.

The items of a stage (prompts, or training pairs) are cut into chunks of `run.chunk_size` in item order (a
small stage into up to `MIN_CHUNKS` smaller ones, so several processes share it). The chunking depends only
on the items and the chunk size, never on the number of processes, and each chunk is
processed with a seed derived from its own first id — so a chunk's output is the same whichever rank, and
however many ranks, computed it. Rank 0 lists the chunks already on disk and hands out the others round-robin
(chunk j of the to-do list to rank j mod world size); every rank writes each finished chunk atomically as
`<stage>/chunks/<chunk_size>-<index>.jsonl`. After all ranks are done, every rank reads the chunks back in
item order. A crash loses at most the chunks in flight; rerunning the same command (with any number of
processes) redoes only those.

Several nodes: the run directory must be on a filesystem all nodes share (rank 0 lists what the others wrote).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Sequence

from . import distributed
from .errors import UserError
from .files import write_jsonl

log = logging.getLogger(__name__)

CHUNKS = "chunks"


# A small stage is still cut into this many chunks (when it has that many items), so that up to this many
# processes share it. A constant, not the world size: the chunking must not depend on the number of processes.
MIN_CHUNKS = 8

# Generation keeps at least this many sequences (prompts x samples) in one chunk: one generate call. Decoding a
# batch of 24 costs little more per step than one of 8 (perf/README.md), so a small stage is not cut finer than
# this. A constant, like MIN_CHUNKS: the chunking, and so the samples, never depend on the number of processes.
MIN_GENERATE_SEQUENCES = 24

# One process may decode several of its generation chunks in one loop (each chunk still sampled with its own seed,
# as alone: sppo.generate.HFGenerator.sample_many), up to this many sequences a call: on a CPU a decoding step has a
# fixed cost that a bigger batch shares. A crash loses the chunks of the call in flight.
GROUP_SEQUENCES = 256


def effective_chunk_size(n_items: int, chunk_size: int, min_size: int = 1) -> int:
    """`chunk_size`, or less for a small stage: min(chunk_size, max(min_size, ceil(n_items / MIN_CHUNKS))), at
    least 1. `min_size` keeps a few items together where batching them matters more than spreading a tiny stage
    (the benchmarks' answers on one process)."""
    return max(1, min(chunk_size, max(min_size, -(-n_items // MIN_CHUNKS))))


def plan(items: Sequence[dict], chunk_size: int) -> list[list[dict]]:
    """The chunks of `items`, in order; independent of the number of processes."""
    return [list(items[i:i + chunk_size]) for i in range(0, len(items), chunk_size)]


def chunk_seed(seed: int, iteration: int, chunk: Sequence[dict]) -> int:
    """A chunk's sampling seed: a function of the run seed, the iteration and the chunk's first id only."""
    h = hashlib.sha256(f"{seed}:{iteration}:{chunk[0]['id']}".encode()).hexdigest()
    return int(h[:8], 16)


def _chunk_path(stage_dir: Path, chunk_size: int, index: int) -> Path:
    return stage_dir / CHUNKS / f"{chunk_size}-{index:06d}.jsonl"


def _read_chunk(path: Path) -> list[dict]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise UserError(f"{path}:{lineno}: corrupt chunk file; delete it to redo that chunk") from None
    return rows


def finished_rows(stage_dir: Path, chunk_size: int) -> dict[str, dict]:
    """Rows on disk by id. Chunks written with the current chunk size win over those of an earlier size."""
    files = sorted((stage_dir / CHUNKS).glob("*.jsonl")) if (stage_dir / CHUNKS).is_dir() else []
    current = f"{chunk_size}-"
    done: dict[str, dict] = {}
    for path in sorted(files, key=lambda p: p.name.startswith(current)):
        done.update((r["id"], r) for r in _read_chunk(path))
    return done


def _todo(stage_dir: Path, chunks: list[list[dict]], chunk_size: int) -> list[int]:
    done = finished_rows(stage_dir, chunk_size)
    return [i for i, c in enumerate(chunks) if any(x["id"] not in done for x in c)]


# one line per chunk; rank 0 writes those of every rank (the others log warnings only)
_CHUNK_LINE = "%s: chunk %d/%d on rank %d (%d items)"


Many = Callable[[list[list[dict]]], list[list[dict]]]  # several chunks in one call: each chunk's output, in order


def _run_mine(desc: str, chunks: list[list[dict]], mine: list[int], fn: Callable[[list[dict]], list[dict]],
              keep: Callable[[int, list[dict]], None], many: Many | None = None, group: int = 1) -> None:
    """This rank's chunks through `fn` (or `group` at a time through `many`), each output handed to
    `keep(index, rows)`; then every rank waits for the others and rank 0 logs the chunks they made."""
    rank = distributed.rank()
    made = []
    for first in range(0, len(mine), max(1, group)):
        indices = mine[first:first + max(1, group)]
        for n, index in enumerate(indices, first + 1):
            if rank == 0:
                log.info(_CHUNK_LINE, desc, n, len(mine), rank, len(chunks[index]))
        outs = many([chunks[i] for i in indices]) if many and len(indices) > 1 else [fn(chunks[i]) for i in indices]
        for n, (index, rows) in enumerate(zip(indices, outs), first + 1):
            keep(index, rows)
            made.append((n, len(mine), len(chunks[index])))
    distributed.wait(f"{desc}: every rank's chunks")
    _log_other_ranks(desc, distributed.gather(made))


def _log_other_ranks(desc: str, made_by_rank: list[list[tuple[int, int, int]]]) -> None:
    """Rank 0 logs the chunks the other ranks made, each with the rank that made it."""
    if not distributed.is_main():
        return
    for r, made in enumerate(made_by_rank[1:], 1):
        for n, total, size in made:
            log.info(_CHUNK_LINE, desc, n, total, r, size)


def run_chunked(stage_dir: Path, items: Sequence[dict], fn: Callable[[list[dict]], list[dict]],
                chunk_size: int, desc: str, min_size: int = 1, many: Many | None = None,
                group_items: int = 0) -> list[dict]:
    """Apply `fn(chunk)` to every chunk of `items`, spread over all ranks; returns the outputs in
    the order of `items` (matched on "id") on every rank. With `many`, a rank hands its chunks to `many` several at
    a time (up to `group_items` items a call), which must give each chunk the output `fn` would: the chunks, their
    seeds and files stay as they are, only the work is batched (a crash loses the call's chunks)."""
    chunk_size = effective_chunk_size(len(items), chunk_size, min_size)
    chunks = plan(items, chunk_size)
    todo = distributed.decide(f"{desc}: listing finished chunks", lambda: _todo(stage_dir, chunks, chunk_size))
    rank, world = distributed.rank(), distributed.world_size()
    mine = todo[rank::world]
    if len(todo) < len(chunks) and distributed.is_main():
        log.info("%s: resuming, %d of %d chunks already done", desc, len(chunks) - len(todo), len(chunks))

    def keep(index: int, rows: list[dict]) -> None:
        if [r["id"] for r in rows] != [x["id"] for x in chunks[index]]:
            raise RuntimeError(f"{desc}: chunk {index} returned rows out of order")
        write_jsonl(_chunk_path(stage_dir, chunk_size, index), rows)

    _run_mine(desc, chunks, mine, fn, keep, many, group_items // chunk_size if many else 1)
    done = finished_rows(stage_dir, chunk_size)
    missing = [x["id"] for x in items if x["id"] not in done]
    if missing:
        raise UserError(f"{stage_dir}: {len(missing)} items have no output (first: {missing[0]}); rerun to redo them")
    distributed.wait(f"{desc}: every rank has read the chunks")  # before rank 0 may clear them
    return [done[x["id"]] for x in items]


def share(items: Sequence[dict], fn: Callable[[list[dict]], list[dict]], chunk_size: int, desc: str,
          min_size: int = 1) -> list[dict]:
    """`run_chunked` without files, for work whose results are kept elsewhere: the same chunks, rank r takes
    the r-th, (r+N)-th, ... chunk, and every rank gets all outputs in the order of `items` (matched on "id")."""
    chunks = plan(items, effective_chunk_size(len(items), chunk_size, min_size))
    mine = list(range(len(chunks)))[distributed.rank()::distributed.world_size()]
    rows: dict[str, dict] = {}
    _run_mine(desc, chunks, mine, fn, lambda index, out: rows.update((r["id"], r) for r in out))
    everyone: dict[str, dict] = {}
    for part in distributed.gather(rows):
        everyone.update(part)
    return [everyone[x["id"]] for x in items]


def clear(stage_dir: Path) -> None:
    """Remove the chunk files once the stage's merged output and manifest are written."""
    import shutil

    shutil.rmtree(stage_dir / CHUNKS, ignore_errors=True)
