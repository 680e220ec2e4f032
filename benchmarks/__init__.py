"""Benchmarks: AlpacaEval 2, Arena-Hard v0.1, MT-Bench and lm-evaluation-harness v0.4.1 on SPPO checkpoints.

  scoring/   - the official scoring methods as pure functions on plain records
  store.py   - the results store every suite writes and `release` reads
  cli.py     - `sppo-bench`
"""
