"""SPPO: Self-Play Preference Optimization (Wu et al. 2024, arXiv 2405.00675).

One file per idea:
  config.py    - the YAML config, every field documented, CLI overrides
  models.py    - loading policies (Hub id, local path, or the embedded SmolLM2 GGUF)
  prompts.py   - prompt splits (embedded set, or snorkelai/Snorkel-Mistral-PairRM-DPO-Dataset)
  generate.py  - K responses per prompt (Hugging Face generate, or vLLM when installed)
  rank.py      - pairwise rankers (PairRM through llm-blender, a local chat-model judge)
  probs.py     - win-probability targets from a K x K preference matrix
  sequences.py - tokenization (one BOS, one EOS) and summed response log-probs
  loss.py      - the SPPO loss, a pure function
  train.py     - the optimisation loop (single process, or DeepSpeed ZeRO-3)
  run_dir.py   - the run directory: layout, recorded config, runs/latest
  rows.py      - the typed rows each stage writes
  stage.py     - the stage pattern: finished? -> compute -> publish rows and manifest -> clear chunks
  pipeline.py  - iterations over prompt splits: prompts, generate, rank, dataset
  train_stage.py - reference log-probs, training, the checkpoint
  checkpoint.py  - checkpoints and their manifest (the contract with sppo-release)
"""

__version__ = "0.1.0"
