"""What joining a process group costs DeepSpeed on a machine without a GPU: `deepspeed.init_distributed("gloo")`
timed in this process, with DeepSpeed's CPU shared-memory op built as DeepSpeed does by default (`build`) or
skipped as sppo.package_shims.skip_deepspeed_cpu_comm_op does (`skip`). Run it with an empty TORCH_EXTENSIONS_DIR for
the cost of a first run, with the usual one (~/.cache/torch_extensions) for a later run:

    TORCH_EXTENSIONS_DIR=$(mktemp -d) python -m perf.deepspeed_init build
    TORCH_EXTENSIONS_DIR=$(mktemp -d) python -m perf.deepspeed_init skip
    python -m perf.deepspeed_init build
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    mode = (argv if argv is not None else sys.argv[1:] or ["skip"])[0]
    if mode not in ("build", "skip"):
        print("usage: python -m perf.deepspeed_init build|skip", file=sys.stderr)
        return 2
    from sppo import distributed

    distributed.single_process_group_env()
    t0 = time.perf_counter()
    import deepspeed

    if mode == "skip":
        from sppo.package_shims import skip_deepspeed_cpu_comm_op

        skip_deepspeed_cpu_comm_op()
    t1 = time.perf_counter()
    deepspeed.init_distributed("gloo")
    t2 = time.perf_counter()
    print(json.dumps({"mode": mode, "import_s": round(t1 - t0, 1), "init_distributed_s": round(t2 - t1, 1),
                      "torch_extensions_dir": os.environ.get("TORCH_EXTENSIONS_DIR", "~/.cache/torch_extensions"),
                      "load_average": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
