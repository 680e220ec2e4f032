"""The stage pattern, written once: finished? -> compute -> publish rows and manifest -> clear chunks.

A stage of iteration N lives in ``<run>/iterN/<name>/`` (`sppo.run_dir`); it is finished once its manifest.json
exists, and then its output file is read instead of computed again. Every decision that depends on files on
disk is taken by rank 0 and shared (`distributed.decide`), so all ranks meet every collective in the same order.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, Sequence

from . import chunks, distributed
from .files import read_jsonl, write_jsonl
from .rows import R, Row
from .run_dir import Run, stage_done, write_manifest


class Stage(Generic[R]):
    """One stage of one iteration: its directory, its output file of `row` rows and its manifest."""

    def __init__(self, run: Run, iteration: int, name: str, row: type[R]):
        self.run, self.iteration, self.name, self.row = run, iteration, name, row
        self.dir = run.stage(iteration, name)
        self.output = run.layout.stage_output(iteration, name)
        self.label = f"iteration {iteration} {name}"

    def done(self) -> bool:
        """Whether the stage is finished, as rank 0 sees it: the same answer on every rank."""
        return distributed.decide(f"{self.label}: is it finished?", lambda: stage_done(self.dir))

    def read(self) -> list[R]:
        return [self.row.from_json(r) for r in read_jsonl(self.output)]

    def write(self, rows: Sequence[R], manifest: dict[str, Any]) -> None:
        """The merged output, then the manifest (which marks the stage finished), then the chunks go."""
        write_jsonl(self.output, [r.to_json() for r in rows])
        write_manifest(self.dir, stage=self.name, iteration=self.iteration, **manifest)
        chunks.clear(self.dir)

    def chunked(self, items: Sequence[Row], fn: Callable[[list], list[R]], min_size: int = 1,
                many: Callable[[list[list]], list[list[R]]] | None = None, group_items: int = 0) -> list[R]:
        """`fn` over chunks of `items` (rows with an id), spread over the ranks and resumable chunk by chunk
        (`chunks.run_chunked`, `min_size`: the fewest items a small stage's chunk keeps together; `many`: several
        chunks in one call, up to `group_items` items); the outputs in the order of `items`, on every rank."""
        by_id = {item.id: item for item in items}

        def rows_of(chunk: list[dict]) -> list:
            return [by_id[c["id"]] for c in chunk]

        def on_dicts(chunk: list[dict]) -> list[dict]:
            return [r.to_json() for r in fn(rows_of(chunk))]

        def many_on_dicts(group: list[list[dict]]) -> list[list[dict]]:
            return [[r.to_json() for r in out] for out in many([rows_of(c) for c in group])]

        out = chunks.run_chunked(self.dir, [{"id": item.id} for item in items], on_dicts,
                                 self.run.cfg.run.chunk_size, self.label, min_size,
                                 many_on_dicts if many else None, group_items)
        return [self.row.from_json(r) for r in out]


def run_stage(stage: Stage[R], compute: Callable[[], tuple[list[R], dict[str, Any]]], collective: bool = False,
              publishing: str | None = None) -> list[R]:
    """The stage's rows: read when it is finished, else computed and published.

    collective: every rank computes (its share of the chunks, `Stage.chunked`) and rank 0 publishes; otherwise
    rank 0 computes and publishes alone. Either way every rank waits until the output is there, and an error
    on rank 0 is raised on every rank. `publishing` says what rank 0 does meanwhile (for the waiting ranks'
    log), by default that it writes the output file."""
    if stage.done():
        return stage.read()
    label = f"{stage.label}: rank 0 {publishing or 'writes ' + stage.output.name}"
    if not collective:
        distributed.decide(label, lambda: stage.write(*compute()))
        return stage.read()
    rows, manifest = compute()
    distributed.decide(label, lambda: stage.write(rows, manifest))
    return rows
