"""Benchmarks: AlpacaEval 2, Arena-Hard v0.1, MT-Bench and lm-evaluation-harness v0.4.1 on SPPO checkpoints.

  scoring/      - the official scoring methods as pure functions on plain records (no file, socket or glob)
  judge/        - the judge clients (OpenAI-compatible endpoint with cache and retries, or a local model)
  judging.py    - the one judging engine: keyed rows reused, batches, write-through, failure records
  data.py       - benchmark data: --data-dir copies, or Hub downloads cached once
  inputs.py     - the edge: every read, download and glob of judgment, answer and annotation files
  answers.py    - answer generation shared by the suites (one checkpoint, best-of-N, artifact keys)
  suites/       - one module per suite (its prompts, verdict parser and scorer call) behind the Suite interface
  store.py      - the results store every suite writes and `release` reads
  config.py     - BenchConfig: the settings of `sppo-bench [run]` (command line and --config YAML), documented
  run_cmd.py    - `sppo-bench --all MODEL...`
  score_cmd.py  - `sppo-bench score SUITE FILE`
  table_cmd.py  - `sppo-bench table`
  tables.py     - the table model (columns, rounding, row names, cells, the console/card View), shared with `release`
  cli.py        - `sppo-bench` argparse subcommands run (default), score, table
"""
