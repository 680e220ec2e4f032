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
  pipeline.py  - iterations over prompt splits, stages, manifests, resume
"""

__version__ = "0.1.0"
