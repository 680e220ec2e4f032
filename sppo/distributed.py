"""The processes of a run: who am I, decisions taken once and shared, waits that say what they wait for.

`sppo-train` runs the same program on every process a launcher starts (`torchrun`, `accelerate launch`,
`deepspeed`; one node or several). The rule that keeps such a run from deadlocking: every collective is
reached by all ranks in the same order, whatever files exist on disk. So a rank never branches on the
filesystem alone: rank 0 looks, and `decide` hands its answer to every rank. Errors raised while deciding
reach every rank too, so no rank is left waiting for one that has already failed.

`wait` is a barrier that logs, after `run.wait_log_seconds`, which stage it waits in and for which ranks
(through the launcher's rendezvous store), then again at doubling intervals, and that stops as soon as another
rank reports a failure (`peers`: no rank waits for a dead one). No collective waits longer than the collective
timeout (`setup`).

With one process (no launcher) every function here is a no-op or a plain call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from datetime import timedelta
from typing import Callable, Sequence, TypeVar

import torch

from .errors import MachineError, UserError, io_failure

log = logging.getLogger(__name__)
T = TypeVar("T")

# seconds a rank waits before it logs what it waits for (then at doubling intervals); set by `setup`
_wait_log_seconds = 300.0
_wait_count = 0


def launched_world_size() -> int:
    """Processes started by the launcher (WORLD_SIZE, 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(timeout_minutes: float = 120.0, wait_log_seconds: float = 300.0) -> None:
    """Join the launcher's process group through accelerate's PartialState (gloo on CPU, NCCL on GPUs, the
    local device selected per rank). `timeout_minutes` bounds any single collective wait."""
    global _wait_log_seconds
    _wait_log_seconds = wait_log_seconds
    if launched_world_size() > 1 and not initialized():
        from accelerate import PartialState

        PartialState(timeout=timedelta(minutes=timeout_minutes))
    if initialized():
        from . import peers

        peers.start()


def single_process_group_env() -> None:
    """Launcher variables for a one-process group (DeepSpeed needs a process group even alone)."""
    if "MASTER_PORT" not in os.environ:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(sock.getsockname()[1])
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)


def teardown() -> None:
    """Leave the process group cleanly once every rank is done (an abandoned gloo group can abort the
    interpreter at exit)."""
    if initialized():
        from . import peers

        wait("the end of the run")
        peers.stop()
        torch.distributed.destroy_process_group()


def initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if initialized() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if initialized() else 1


def is_main() -> bool:
    return rank() == 0


def device() -> torch.device:
    """This rank's device: its own GPU (cuda:LOCAL_RANK) under a launcher, cuda or cpu otherwise."""
    if initialized():
        from accelerate import PartialState

        return PartialState().device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _store():
    """The launcher's rendezvous key-value store, to tell which ranks reached a wait (None if unavailable)."""
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()  # the store every launcher's env:// rendezvous creates
    except Exception:  # noqa: BLE001 - only used for a more helpful log line
        return None


def rendezvous_store():
    """A connection of its own to the launcher's rendezvous store (`peers`: heartbeats and failure reports), or
    None without a process group."""
    store = _store() if initialized() else None
    try:
        return store.clone() if store is not None else None
    except Exception:  # noqa: BLE001 - an older torch without Store.clone: share the process group's connection
        return store


def _missing_ranks(store, key: str) -> str:
    if store is None:
        return "the other ranks"
    try:
        missing = [r for r in range(world_size()) if not store.check([f"{key}/{r}"])]
    except Exception:  # noqa: BLE001
        return "the other ranks"
    return "rank(s) " + ", ".join(map(str, missing)) if missing else "the collective to complete"


def wait(label: str) -> None:
    """Barrier over all ranks; logs which stage it waits in and for whom when it takes long."""
    global _wait_count
    if world_size() == 1:
        return
    _wait_count += 1
    key = f"sppo/wait/{_wait_count}"
    store = _store()
    if store is not None:
        try:
            store.set(f"{key}/{rank()}", "1")
        except Exception:  # noqa: BLE001
            store = None
    from . import peers

    work = torch.distributed.barrier(async_op=True)
    start, next_log = time.monotonic(), _wait_log_seconds
    while not work.is_completed():
        time.sleep(0.02)
        failed = peers.failed_elsewhere()
        if failed:
            raise peers.RankFailed(failed)
        waited = time.monotonic() - start
        if waited >= next_log:
            log.warning("rank %d has waited %.0f s in '%s' for %s", rank(), waited, label, _missing_ranks(store, key))
            next_log *= 2
    work.wait()


def decide(label: str, fn: Callable[[], T]) -> T:
    """`fn()` evaluated on rank 0 only and its result given to every rank (after a `wait`). A UserError, a
    MachineError or an I/O failure (``errors.io_failure``) raised by `fn` is raised on every rank."""
    if world_size() == 1:
        return fn()
    result: list = [None]
    if is_main():
        try:
            result[0] = ("ok", fn())
        except Exception as e:
            err = io_failure(e)
            if err is None:
                raise
            result[0] = (type(err).__name__, str(err))
    wait(label)
    torch.distributed.broadcast_object_list(result, src=0)
    status, value = result[0]
    if status != "ok":
        raise (MachineError if status == "MachineError" else UserError)(value)
    return value


def gather(value: T) -> list[T]:
    """`value` of every rank, in rank order, on every rank (a picklable object; `[value]` with one process)."""
    if world_size() == 1:
        return [value]
    out: list = [None] * world_size()
    torch.distributed.all_gather_object(out, value)
    return out


def main_first(label: str, fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0, then on the other ranks (a one-time conversion or download whose result is cached)."""
    value = decide(label, fn)
    return value if is_main() else fn()


def _all_reduce(values: Sequence[float], op) -> list[float]:
    """Element-wise reduction of `values` over all ranks (on the GPU under NCCL, which reduces nothing else)."""
    if world_size() == 1:
        return [float(v) for v in values]
    where = device() if torch.distributed.get_backend() == "nccl" else "cpu"
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=where)
    torch.distributed.all_reduce(t, op=op)
    return t.tolist()


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is true on any rank (e.g. a SIGTERM that reached some ranks first)."""
    return _all_reduce([1.0 if flag else 0.0], torch.distributed.ReduceOp.MAX)[0] > 0


def max_over_ranks(value: float) -> float:
    """The largest `value` of any rank (e.g. the peak memory of the fullest rank)."""
    return _all_reduce([value], torch.distributed.ReduceOp.MAX)[0]


def mean_over_ranks(values: Sequence[float]) -> list[float]:
    """Element-wise mean of `values` over all ranks (for logging global figures)."""
    return [v / world_size() for v in _all_reduce(values, torch.distributed.ReduceOp.SUM)]


@contextlib.contextmanager
def own_gpu_for_child_processes(gpus: int = 1):
    """While a library starts worker processes of its own (vLLM's engine), make them see this rank's share of the
    machine only, as a one-process job: LOCAL_RANK/RANK 0, WORLD_SIZE 1 (vLLM picks its device from LOCAL_RANK and
    would otherwise take GPU 0 on every rank) and, on GPUs, CUDA_VISIBLE_DEVICES = this rank's `gpus` physical GPUs
    (local rank r: GPUs r*gpus .. r*gpus+gpus-1 of its node, so tensor parallelism over `gpus` GPUs needs
    GPUs/gpus processes per node); on CPUs, VLLM_CPU_OMP_THREADS_BIND = this rank's share of the cores this process
    may use (`cpu_share`; vLLM's own binding would put every rank's engine on the same cores), unless it is set.
    Restored afterwards. A no-op with one process."""
    if world_size() == 1:
        yield
        return
    changes = {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
               "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}
    if torch.cuda.is_available():
        changes["CUDA_VISIBLE_DEVICES"] = ",".join(_own_gpus(gpus))
    elif not os.environ.get("VLLM_CPU_OMP_THREADS_BIND"):
        changes["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cpu_share()))
    saved = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _own_gpus(gpus: int) -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    node_gpus = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    first = torch.cuda.current_device() * gpus
    mine = node_gpus[first:first + gpus]
    if len(mine) < gpus:
        raise UserError(f"rank {rank()}: {gpus} GPUs per process need GPUs {first}..{first + gpus - 1} of this node, "
                        f"which has {len(node_gpus)}; start (GPUs per node / {gpus}) processes per node")
    return mine


def cpu_share() -> list[int]:
    """This rank's cores on a CPU-only node: the cores this process may use, cut in LOCAL_WORLD_SIZE equal shares,
    share LOCAL_RANK (at least one core; ranks share cores when there are fewer cores than ranks)."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world_size())))
    per = max(1, len(cores) // local_world)
    start = (local_rank * per) % len(cores)
    return cores[start:start + per]
