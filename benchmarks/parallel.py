"""`sppo-bench` on several processes (`torchrun`, `accelerate launch`; one node or several).

Global rank 0 runs the benchmark plan: it reads and writes every file, is the only process that talks to a judge
endpoint, and writes the results store. The other ranks serve it (`serve`). For each piece of work the ranks share,
rank 0 hands every rank a job (`run`, through `sppo.distributed.decide`: rank 0 decides, every rank follows), and
every rank runs it - a job is a `Job`, a picklable value whose ``serve()`` is what a serving rank does with it:

- answers (`benchmarks.answers`, best-of-N sampling and its ranking included): `sppo.chunks.run_chunked`, as the
  training stages do: the conversations cut into chunks that do not depend on the number of processes, rank r
  takes every N-th unfinished chunk and writes it atomically under ``<results>/.chunks/``, every rank reads them
  back, rank 0 removes them; an interrupted job resumes at its first unfinished chunk;
- a local judge's replies (`benchmarks.judge.LocalJudge`): `sppo.chunks.share`, the same chunks in memory (the
  judge cache on rank 0 keeps every reply);
- an lm-eval task (`benchmarks.suites.lm_eval`): lm-eval shards the requests over the global ranks itself.

Each chunk is logged by rank 0 with the rank that made it. With one process every job runs in place through the
same chunks, so the results do not depend on the number of processes. Rank 0 ends the service with `stop`, also
when it fails. Several nodes need the results directory on a filesystem every node shares.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable


@runtime_checkable
class Job(Protocol):
    """A piece of work every rank runs: a picklable value (it travels from rank 0 to every rank) whose ``serve()``
    is what a serving rank does with it. The jobs: `benchmarks.answers.AnswerJob`,
    `benchmarks.judge.LocalJudgeJob`, `benchmarks.suites.lm_eval.LmEvalJob`."""

    def serve(self) -> Any: ...


class Stop:
    """Rank 0's last message: the serving ranks may leave."""

    def serve(self) -> None:
        return None


_LOADED: dict[str, tuple[Any, Any]] = {}  # slot -> (key, object): the one model of each kind a rank keeps


def run(job: Job, here: Callable[[Any], Any] | None = None) -> Any:
    """Rank 0 (the only caller): hand the job to every rank, then run it here too (`here(job)` when given: the
    caller's own loaded objects, else ``job.serve()``). Returns this rank's result."""
    from sppo import distributed

    if distributed.world_size() > 1:
        distributed.decide(f"sppo-bench: rank 0 hands out a job ({type(job).__name__})", lambda: job)
    return here(job) if here is not None else job.serve()


def serve() -> None:
    """Ranks other than 0: run the jobs rank 0 hands out until it says stop."""
    from sppo import distributed

    while True:
        job = distributed.decide("sppo-bench: the next job from rank 0", lambda: None)
        if isinstance(job, Stop):
            return
        job.serve()


def stop() -> None:
    """Rank 0: the serving ranks may leave."""
    from sppo import distributed

    if distributed.world_size() > 1 and distributed.is_main():
        distributed.decide("sppo-bench: the end of the jobs", Stop)


def loaded(slot: str, key: Any, make: Callable[[], Any]) -> Any:
    """The object of `slot` for `key`, made on first use; a new key replaces (frees) the previous object, so a
    serving rank holds one model of each kind, as rank 0 does."""
    held = _LOADED.get(slot)
    if held is not None and held[0] == key:
        return held[1]
    _LOADED.pop(slot, None)
    obj = make()
    _LOADED[slot] = (key, obj)
    return obj
