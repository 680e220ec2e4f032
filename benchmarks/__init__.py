"""Benchmarks: AlpacaEval 2, Arena-Hard v0.1, MT-Bench and lm-evaluation-harness v0.4.1 on SPPO checkpoints.

  scoring/      - the official scoring methods as pure functions on plain records
  judge.py      - the judge client (OpenAI-compatible endpoint with cache and retries, or a local model)
  data.py       - benchmark data: --data-dir copies, or Hub downloads cached once
  answers.py    - answer generation per suite, in each benchmark's own file format (best-of-N too)
  suites.py     - judging and scoring of each suite; lm-eval through the harness
  store.py      - the results store every suite writes and `release` reads
  run_cmd.py    - `sppo-bench --all MODEL...`
  score_cmd.py  - `sppo-bench score SUITE FILE`
  table_cmd.py  - `sppo-bench table`
  cli.py        - `sppo-bench` dispatch
"""
