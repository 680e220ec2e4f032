"""lm-evaluation-harness v0.4.1 on one model: ``lm_eval.simple_evaluate`` per task with the Open LLM Leaderboard v1
few-shot counts (``benchmarks.scoring.lm_eval.TASKS``), or the project's own small offline task.

Files: ``<results>/lm_eval/<model>/results.json`` (merged), ``results_<task>.json``, ``samples_<task>.jsonl``."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sppo.cli_util import launched_rank, quiet_other_ranks
from sppo.errors import UserError, described
from sppo.files import read_json, write_jsonl, write_text

from benchmarks.tables import table_spec
from benchmarks.config import LmEvalTaskSet
from benchmarks.store import DEFAULT_VARIANT, StoreLayout, SuiteResult, checkpoint_fingerprint
from benchmarks.suites.common import ModelTarget, RunContext, Suite, SuiteOutcome, figure

log = logging.getLogger(__name__)

TINY_TASK = "sppo_tiny_mc"
TINY_FEWSHOT = 2
# A small multiple-choice task written by this project (general knowledge, one correct choice of four).
_TINY_ITEMS = [
    ("What color is the sky on a clear day?", ["blue", "green", "red", "black"], 0),
    ("How many legs does a dog have?", ["two", "four", "six", "eight"], 1),
    ("Which of these is a fruit?", ["carrot", "potato", "apple", "onion"], 2),
    ("What do bees make?", ["milk", "silk", "wool", "honey"], 3),
    ("Which planet do we live on?", ["Earth", "Mars", "Venus", "Jupiter"], 0),
    ("How many days are in a week?", ["five", "seven", "ten", "twelve"], 1),
    ("What is frozen water called?", ["steam", "sand", "ice", "glass"], 2),
    ("Which animal says 'meow'?", ["cow", "dog", "duck", "cat"], 3),
    ("What is two plus two?", ["four", "three", "five", "six"], 0),
    ("Which season is usually the coldest?", ["summer", "winter", "spring", "autumn"], 1),
    ("What do you use to write on paper?", ["spoon", "shoe", "pencil", "cup"], 2),
    ("Which of these can fly?", ["fish", "horse", "snake", "bird"], 3),
    ("What is the opposite of hot?", ["cold", "big", "fast", "loud"], 0),
    ("How many hours are in a day?", ["twelve", "twenty-four", "sixty", "seven"], 1),
    ("Which shape has three sides?", ["square", "circle", "triangle", "hexagon"], 2),
    ("What gas do people need to breathe?", ["helium", "neon", "argon", "oxygen"], 3),
]
_TINY_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: multiple_choice
test_split: test
fewshot_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
doc_to_choice: "{{{{choices}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_tiny_task(directory: Path) -> Path:
    """Write the project's small multiple-choice task (YAML + JSONL data) for lm-eval's ``include_path``."""
    data = directory / f"{TINY_TASK}.jsonl"
    write_jsonl(data, [{"question": q, "choices": c, "answer": a} for q, c, a in _TINY_ITEMS])
    write_text(directory / f"{TINY_TASK}.yaml", _TINY_YAML.format(task=TINY_TASK, data=json.dumps(str(data.resolve()))))
    return directory


_LM_EVAL_READY: set[str] = set()


def _quiet_git_hash() -> str | None:
    """lm-eval 0.4.1's ``get_git_commit_hash`` (utils.py:461-472) without git's "fatal: not a git repository" on
    the terminal when the command runs outside a git checkout."""
    import subprocess

    try:
        return subprocess.check_output(["git", "describe", "--always"], stderr=subprocess.DEVNULL).strip().decode()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def _lm_eval_tasks_ready(extra_dir: Path | None) -> None:
    from sppo.package_shims import ensure_lm_eval

    ensure_lm_eval()
    import lm_eval.evaluator
    import lm_eval.tasks

    lm_eval.evaluator.get_git_commit_hash = _quiet_git_hash

    if "builtin" not in _LM_EVAL_READY:
        lm_eval.tasks.initialize_tasks(verbosity="INFO" if launched_rank() == 0 else "ERROR")
        _LM_EVAL_READY.add("builtin")
    if extra_dir is not None and str(extra_dir) not in _LM_EVAL_READY:
        lm_eval.tasks.include_path(str(extra_dir))
        _LM_EVAL_READY.add(str(extra_dir))
    quiet_other_ranks()  # lm-eval's initialize_tasks sets its logger's level


def task_plan(task_set: LmEvalTaskSet) -> dict[str, int]:
    from benchmarks.scoring import lm_eval as le

    if task_set == "v1":
        return {task: shots for task, (_, shots) in le.TASKS.items()}
    if task_set == "tiny":
        return {TINY_TASK: TINY_FEWSHOT}
    raise UserError(f"--lm-eval-tasks: unknown task set {task_set!r}; use v1 or tiny")


def variant_of(task_set: LmEvalTaskSet) -> str:
    return DEFAULT_VARIANT if task_set == "v1" else "sppo-tiny-mc"


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


@dataclass(frozen=True)
class LmEvalJob:
    """One lm-eval task on one model, run by every rank together (``benchmarks.parallel``)."""

    path: str
    dtype: str
    task: str
    num_fewshot: int
    batch_size: int
    limit: int | None
    extra_dir: str | None  # the project's own task, for lm-eval's include_path
    trust_remote_code: bool = False  # run the checkpoint's own modelling code (auto_map)

    def serve(self) -> dict | None:
        """A `benchmarks.parallel.Job`: this rank's part of the task."""
        return lm_eval_job(self)


def lm_eval_job(job: LmEvalJob) -> dict | None:
    """``lm_eval.simple_evaluate`` of one task on this rank's device; the harness's results on rank 0, None on the
    others. The HF model is built here with its arguments as values (no ``key=value,...`` string)."""
    _lm_eval_tasks_ready(Path(job.extra_dir) if job.extra_dir else None)  # before lm_eval is imported
    from lm_eval import simple_evaluate

    from sppo import distributed

    device = str(distributed.device())
    lm = _shard_over_ranks(hf_model(job, device))
    return simple_evaluate(model=lm, model_args={"pretrained": job.path, "dtype": job.dtype,
                                                 "trust_remote_code": job.trust_remote_code}, tasks=[job.task],
                           num_fewshot=job.num_fewshot, batch_size=job.batch_size, device=device.split(":")[0],
                           limit=job.limit, log_samples=True)


def hf_model(job: LmEvalJob, device: str):
    """lm-eval's ``HFLM`` on exactly ``job.path``, on this rank's device, its arguments passed as values: never a
    ``key=value,...`` string (lm-eval 0.4.1 ``utils.simple_parse_args_string`` splits on commas, so a path
    containing one would add settings). The checkpoint's own modelling code (``auto_map``) runs only when
    ``job.trust_remote_code``."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=job.path, dtype=job.dtype, batch_size=job.batch_size, device=device,
                trust_remote_code=job.trust_remote_code)


def _shard_over_ranks(lm):
    """Every rank evaluates the share of its *global* rank. lm-eval 0.4.1 shares the work only with several GPUs
    on one node and by local rank (models/huggingface.py:259-302: ``self._rank = local_process_index``), so on CPU
    every rank would do all of it and on several nodes the ranks of equal local rank the same part. Its evaluator
    gathers through ``lm.accelerator`` (evaluator.py:311-443): `_Gatherer` does that over torch.distributed."""
    from sppo import distributed

    if distributed.world_size() > 1:
        lm.accelerator = _Gatherer()
        lm._rank, lm._world_size = distributed.rank(), distributed.world_size()
    return lm


class _Gatherer:
    """The part of accelerate's ``Accelerator`` lm-eval's evaluator and HFLM use, over the process group as it is
    (gloo or NCCL): ``gather`` concatenates every rank's tensor along dim 0 (a scalar counts as one element)."""

    @property
    def num_processes(self) -> int:
        from sppo import distributed

        return distributed.world_size()

    def gather(self, tensor):
        import torch

        t = tensor.reshape(1) if tensor.dim() == 0 else tensor
        parts = [torch.empty_like(t) for _ in range(self.num_processes)]
        torch.distributed.all_gather(parts, t.contiguous())
        return torch.cat(parts, dim=0)

    def pad_across_processes(self, tensor, dim: int = 0, pad_index: int = 0, pad_first: bool = False):
        import torch

        sizes = self.gather(torch.tensor([tensor.shape[dim]], device=tensor.device))
        width = int(sizes.max())
        if tensor.shape[dim] == width:
            return tensor
        shape = list(tensor.shape)
        shape[dim] = width - tensor.shape[dim]
        pad = torch.full(shape, pad_index, dtype=tensor.dtype, device=tensor.device)
        return torch.cat([pad, tensor] if pad_first else [tensor, pad], dim=dim)

    def wait_for_everyone(self) -> None:
        from sppo import distributed

        distributed.wait("lm-eval")

    @staticmethod
    def unwrap_model(model):
        return model


def run(ctx: RunContext, target: ModelTarget) -> SuiteOutcome:
    """``lm_eval.simple_evaluate`` per task with its v1 few-shot count, every rank taking its share; the harness's
    results JSON (merged over the tasks) and the samples are kept. Each finished task is kept, so a rerun resumes
    with the next one."""
    import torch

    plan = task_plan(ctx.lm_eval_tasks)
    extra = write_tiny_task(ctx.layout.lm_eval_tasks) if ctx.lm_eval_tasks == "tiny" else None
    _lm_eval_tasks_ready(extra)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "bfloat16" if device == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    limit = ctx.answer_settings.limit
    merged: dict[str, Any] = {"results": {}, "groups": {}, "configs": {}, "versions": {}, "n-shot": {}, "config": {}}
    for task, shots in plan.items():
        job = LmEvalJob(target.path, dtype, task, shots, ctx.lm_eval_batch_size, limit, str(extra) if extra else None,
                        ctx.trust_remote_code)
        res = _task_results(job, ctx.layout, target.name, device)
        for key in ("results", "groups", "configs", "versions", "n-shot"):
            merged[key].update(res.get(key) or {})
        merged["config"] = res.get("config") or {}
    merged["config"]["num_fewshot"] = plan
    results_path = write_text(ctx.layout.lm_eval_results(target.name),
                              json.dumps(merged, indent=2, default=_json_default) + "\n")
    settings = {"task_set": ctx.lm_eval_tasks, "num_fewshot": plan, "limit": limit, "device": device, "dtype": dtype,
                "batch_size": ctx.lm_eval_batch_size, "trust_remote_code": ctx.trust_remote_code,
                "results_json": str(results_path)}
    return SuiteOutcome(SuiteResult(model=target.name, suite="lm_eval", metrics=_metrics(ctx.lm_eval_tasks, merged,
                                                                                           results_path),
                                    variant=variant_of(ctx.lm_eval_tasks), settings=settings, judge=None,
                                    checkpoint=target.checkpoint()))


def _task_results(job: LmEvalJob, layout: StoreLayout, model: str, device: str) -> dict[str, Any]:
    """The harness's results of one task (``results_<task>.json``), kept from an earlier run under the same key,
    else computed by every rank (the samples written beside them)."""
    from benchmarks import parallel

    tpath = layout.lm_eval_results(model, job.task)
    run_key = {"model": job.path, "fingerprint": checkpoint_fingerprint(job.path), "num_fewshot": job.num_fewshot,
               "limit": job.limit, "dtype": job.dtype, "device": device, "batch_size": job.batch_size,
               **({"trust_remote_code": True} if job.trust_remote_code else {})}
    res = read_json(tpath) if tpath.exists() else None
    if res is not None and res.get("sppo_run_key") == run_key:
        return res
    log.info("lm-eval %s (%d-shot) on %s", job.task, job.num_fewshot, model)
    try:
        res = parallel.run(job)
    except Exception as e:  # the harness raises plain exceptions (missing dataset, no network, ...)
        raise UserError(f"lm-eval task {job.task} failed on {model}: {described(e)}") from None
    samples = res.pop("samples", {}) or {}
    for name, rows in samples.items():
        text = "".join(json.dumps(r, default=_json_default, ensure_ascii=False) + "\n" for r in rows)
        write_text(layout.lm_eval_samples(model, name), text)
    res["sppo_run_key"] = run_key
    res.setdefault("config", {})["model_args"] = {"pretrained": job.path, "dtype": job.dtype,
                                                  "trust_remote_code": job.trust_remote_code}
    write_text(tpath, json.dumps(res, indent=2, default=_json_default, ensure_ascii=False) + "\n")
    return res


def _metrics(task_set: str, merged: dict[str, Any], results_path: Path) -> dict[str, Any]:
    """The Open LLM Leaderboard v1 figures, or the project's own task's accuracies."""
    if task_set == "v1":
        from benchmarks.scoring import lm_eval as le

        return le.score_results(merged, source=str(results_path))
    r = merged["results"][TINY_TASK]
    return {TINY_TASK: r["acc_norm,none"] * 100, f"{TINY_TASK}_acc": r["acc,none"] * 100,
            "average": r["acc_norm,none"] * 100, "n_shot": merged["n-shot"],
            "notes": [f"{TINY_TASK}: the project's own {len(_TINY_ITEMS)}-question multiple-choice task "
                      "(offline smoke test), not an Open LLM Leaderboard task"]}


def headline(m: dict[str, Any]) -> str:
    return f"average {figure(m, 'average')}"


SUITE = Suite("lm_eval", run, table_spec("lm_eval"), headline)
