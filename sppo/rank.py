"""Pairwise rankers (step 2 of an SPPO iteration): for each prompt, a K x K matrix of pairwise preferences.

Every ranker follows the `Ranker` protocol:
    name                                 a string for manifests
    compare(prompts, candidates)         per prompt, a K x K float matrix C; C[i, j] is the ranker's
                                         logit/score that candidate i beats candidate j (diagonal 0)
    pairwise_probabilities(prompts, candidates)   optional: per prompt, P[i, j] = P(i beats j) directly,
                                         with P + P.T = 1 and 0.5 on the diagonal
Scores s_i = (1/K) sum_j (C_ij - C_ji) are computed by `sppo.probs.scores_from_comparisons`.

Rankers here:
- `PairRMRanker`: PairRM (`llm-blender/PairRM`) through llm-blender. The full K x K matrix for every prompt; the
  K(K-1) ordered pairs of all prompts are pooled, sorted by token length and scored in batches (the reference
  implementation called `Blender.rank` one prompt at a time). Tokenization is llm-blender's own collator, applied
  to one prompt at a time, so truncation is exactly that of `Blender.rank(..., batch_size=1)`.
- `LocalJudgeRanker`: a local chat model asked "which response is better, A or B?", both orders, reading the
  probabilities of the answer tokens: p_ij = (P(A | i first) + P(B | i second)) / 2, so position bias cancels and
  P + P.T = 1 holds exactly; C = logit(P).
- Anything else: `make_ranker("python:module:Class", model, **kw)` builds a user plug-in (e.g. a reward model
  whose C[i, j] = r_i - r_j).

`checked_compare` / `checked_probabilities` validate inputs and a ranker's outputs; the pipeline calls those.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import warnings
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from .errors import UserError, first_line

log = logging.getLogger(__name__)

PAIRRM_HUB_ID = "llm-blender/PairRM"
# PairRM's own defaults (its config.json); used only when a ranker directory does not set them.
PAIRRM_SOURCE_MAX_LENGTH = 1224
PAIRRM_CANDIDATE_MAX_LENGTH = 412


@runtime_checkable
class Ranker(Protocol):
    name: str

    def compare(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per prompt, a K x K matrix C: C[i, j] is the logit/score that candidate i beats candidate j."""


# ----------------------------------------------------------------------------------------------- validation

def check_inputs(prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> None:
    """One prompt per candidate list, at least two candidates each, all strings (empty strings are allowed)."""
    if isinstance(prompts, str) or isinstance(candidates, str):
        raise UserError("ranking: prompts and candidates must be lists, not a single string")
    if len(prompts) != len(candidates):
        raise UserError(f"ranking: {len(prompts)} prompts but {len(candidates)} candidate lists")
    for n, (p, cands) in enumerate(zip(prompts, candidates)):
        if not isinstance(p, str):
            raise UserError(f"ranking: prompt {n} is {type(p).__name__}, not a string")
        if isinstance(cands, str) or len(cands) < 2:
            k = 1 if isinstance(cands, str) else len(cands)
            raise UserError(f"ranking: prompt {n} has {k} candidate(s); K must be at least 2 to compare")
        for i, c in enumerate(cands):
            if not isinstance(c, str):
                raise UserError(f"ranking: candidate {i} of prompt {n} is {type(c).__name__}, not a string")


def _check_matrices(mats, candidates, ranker_name: str, what: str) -> list[np.ndarray]:
    if mats is None or len(mats) != len(candidates):
        got = "None" if mats is None else str(len(mats))
        raise UserError(f"ranker {ranker_name}: {what} returned {got} matrices for {len(candidates)} prompts")
    out = []
    for n, (m, cands) in enumerate(zip(mats, candidates)):
        m = np.array(m, dtype=np.float64)
        k = len(cands)
        if m.shape != (k, k):
            raise UserError(f"ranker {ranker_name}: {what} gave a {m.shape} matrix for prompt {n}, expected {k}x{k}")
        off = ~np.eye(k, dtype=bool)
        if not np.isfinite(m[off]).all():
            raise UserError(f"ranker {ranker_name}: {what} gave non-finite values for prompt {n}")
        out.append(m)
    return out


def checked_compare(ranker: Ranker, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """`ranker.compare` with validated inputs and outputs (float64, K x K, finite, diagonal set to 0)."""
    check_inputs(prompts, candidates)
    mats = _check_matrices(ranker.compare(prompts, candidates), candidates, _name(ranker), "compare")
    for m in mats:
        np.fill_diagonal(m, 0.0)
    return mats


def checked_probabilities(ranker: Ranker, prompts: Sequence[str],
                          candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
    """The ranker's direct P(i beats j) matrices, validated (in [0, 1], P + P.T = 1, diagonal 0.5).
    UserError when the ranker has no `pairwise_probabilities`."""
    fn = getattr(ranker, "pairwise_probabilities", None)
    if fn is None:
        raise UserError(f"ranker {_name(ranker)} gives no direct pairwise probabilities; "
                        "use ranking.probabilities: scores")
    check_inputs(prompts, candidates)
    mats = _check_matrices(fn(prompts, candidates), candidates, _name(ranker), "pairwise_probabilities")
    for n, m in enumerate(mats):
        np.fill_diagonal(m, 0.5)
        if (m < 0).any() or (m > 1).any() or not np.allclose(m + m.T, 1.0, atol=1e-6):
            raise UserError(f"ranker {_name(ranker)}: pairwise probabilities for prompt {n} are not in [0, 1] "
                            "with P + P.T = 1")
    return mats


def _name(ranker) -> str:
    return str(getattr(ranker, "name", type(ranker).__name__))


def _device(device: str | None) -> str:
    import torch

    if device in (None, "auto"):
        if torch.cuda.is_available():
            from . import distributed

            return str(distributed.device())  # under a launcher: this rank's own GPU
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    return device


class LastCall:
    """Remembers the result of the last (prompts, candidates) so compare + pairwise_probabilities on the same
    input run the model once."""

    def __init__(self):
        self.key, self.value = None, None

    def get(self, prompts, candidates, compute):
        key = (tuple(prompts), tuple(tuple(c) for c in candidates))
        if key != self.key:
            self.key, self.value = None, None  # never keep a stale result if compute fails
            value = compute()
            self.key, self.value = key, value
        return self.value


# ------------------------------------------------------------------------------------------------- PairRM

def _resolve_pairrm(model: str, revision: str | None = None) -> Path:
    """A local ranker directory (config.json + weights), downloading a Hub id (at `revision`, if given) into the
    Hugging Face cache."""
    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise UserError(f"{p}: not a PairRM ranker directory (no config.json)")
        return p
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise UserError(f"{model}: PairRM ranker directory does not exist")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=model, revision=revision))
    except Exception as e:  # offline, unknown repo, gated...
        raise UserError(f"{model}: cannot download the PairRM ranker ({first_line(e)}); "
                        "give ranking.model a local copy of it") from None


class PairRMRanker:
    """PairRM through llm-blender, the full K x K matrix per prompt, batched across prompts.

    model: Hub id (default `llm-blender/PairRM`) or a local ranker directory (llm-blender's layout: config.json
    naming ranker_type "pairranker" and the base model, plus model.safetensors or pytorch_model.bin).
    source_max_length / candidate_max_length: PairRM's own (from its config: 1224 / 412) unless given.
    fp16: None keeps llm-blender's choice (half precision on cuda/mps when the config says fp16).
    revision: Hub branch, tag or commit to pin when `model` is a Hub id.
    """

    def __init__(self, model: str = PAIRRM_HUB_ID, *, device: str | None = "auto", batch_size: int = 16,
                 source_max_length: int | None = None, candidate_max_length: int | None = None,
                 fp16: bool | None = None, progress: bool = True, revision: str | None = None):
        from .package_shims import ensure_llm_blender

        ensure_llm_blender()
        from llm_blender import Blender, BlenderConfig

        if batch_size < 1:
            raise UserError("ranking.batch_size: must be at least 1")
        path = _resolve_pairrm(model, revision)
        self.model = model
        self.batch_size = batch_size
        self.progress = progress
        self.device = _device(device)
        # Blender.__init__ only stores three configs and logs (through the root logger, which calls
        # logging.basicConfig as a side effect) that none was given; set them directly instead.
        blender = Blender.__new__(Blender)
        blender.blender_config = BlenderConfig(device=self.device, use_tqdm=progress)
        blender.ranker_config = blender.fuser_config = None
        overrides = {k: v for k, v in (("source_maxlength", source_max_length),
                                       ("candidate_maxlength", candidate_max_length), ("fp16", fp16))
                     if v is not None}
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                # it prints "Successfully loaded ranker"; dataclasses_json warns about every field that
                # config.json leaves unset (cache_dir, load_checkpoint, device), which loadranker fills in
                warnings.filterwarnings("ignore", category=RuntimeWarning, module="dataclasses_json")
                blender.loadranker(str(path), device=self.device, **overrides)
        except (OSError, ValueError, RuntimeError) as e:
            raise UserError(f"{model}: cannot load the PairRM ranker ({first_line(e)})") from None
        cfg = blender.ranker_config
        if cfg.ranker_type != "pairranker":
            raise UserError(f"{model}: ranker_type is {cfg.ranker_type!r}, PairRMRanker needs 'pairranker'")
        cfg.source_maxlength = cfg.source_maxlength or PAIRRM_SOURCE_MAX_LENGTH
        cfg.candidate_maxlength = cfg.candidate_maxlength or PAIRRM_CANDIDATE_MAX_LENGTH
        collator = blender.ranker_collator
        collator.source_maxlength, collator.candidate_maxlength = cfg.source_maxlength, cfg.candidate_maxlength
        self.blender = blender
        self.source_max_length, self.candidate_max_length = cfg.source_maxlength, cfg.candidate_maxlength
        tok = blender.ranker_tokenizer
        self._markers = [t for t in (tok.source_prefix, tok.candidate1_prefix, tok.candidate2_prefix,
                                     tok.candidate_prefix) if t]
        self.last_call = LastCall()

    @property
    def name(self) -> str:
        return f"pairrm:{self.model}"

    # -- tokenization: llm-blender's collator on one prompt (all K candidates) at a time
    def _clean(self, text: str) -> str:
        # the ranker locates <|source|>, <|candidate1|>... by token id; the same strings inside a text would
        # add a second marker and break its indexing, so they are blanked out (llm-blender would crash)
        for m in self._markers:
            if m in text:
                text = text.replace(m, " ")
        return text

    def _encode_prompt(self, prompt: str, cands: Sequence[str]):
        batch = self.blender.ranker_collator([{"source": self._clean(prompt),
                                               "candidates": [self._clean(c) for c in cands]}])
        src = batch["source_ids"][0][batch["source_attention_mask"][0].bool()]
        cand = [ids[m.bool()] for ids, m in zip(batch["candidate_ids"][0], batch["candidate_attention_mask"][0])]
        return src, cand

    def _raw(self, prompts, candidates) -> list[np.ndarray]:
        import torch

        encoded = [self._encode_prompt(p, c) for p, c in zip(prompts, candidates)]
        pairs = [(n, i, j) for n, (_, cand) in enumerate(encoded)
                 for i in range(len(cand)) for j in range(len(cand)) if i != j]

        def length(pair):
            n, i, j = pair
            src, cand = encoded[n]
            return len(src) + len(cand[i]) + len(cand[j])

        pairs.sort(key=length)  # similar lengths share a batch: little padding
        out = [np.zeros((len(c), len(c)), dtype=np.float64) for c in candidates]
        ranker = self.blender.ranker
        pad = self.blender.ranker_tokenizer.pad_token_id
        device = next(ranker.parameters()).device
        batches = [pairs[s:s + self.batch_size] for s in range(0, len(pairs), self.batch_size)]

        def padded(rows):
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for row, r in enumerate(rows):
                ids[row, :len(r)], mask[row, :len(r)] = r, 1
            return ids.to(device), mask.to(device)

        with torch.no_grad():
            for batch in tqdm(batches, desc="rank (PairRM)", unit="batch", disable=not self.progress):
                src = padded([encoded[n][0] for n, _, _ in batch])
                left = padded([encoded[n][1][i] for n, i, _ in batch])
                right = padded([encoded[n][1][j] for n, _, j in batch])
                logits = ranker._forward(*src, *left, *right)["logits"].float().cpu().numpy()
                for (n, i, j), value in zip(batch, logits):
                    out[n][i, j] = float(value)
        return out

    def compare(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """C[i, j]: PairRM's logit for "i (shown first) beats j (shown second)". C is not antisymmetric; the
        score (1/K) sum_j (C_ij - C_ji) averages both orders, as llm-blender's `rank` does."""
        check_inputs(prompts, candidates)
        return [m.copy() for m in self.last_call.get(prompts, candidates, lambda: self._raw(prompts, candidates))]

    def pairwise_probabilities(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """P[i, j] = sigmoid((C_ij - C_ji) / 2): PairRM's probability with both presentation orders averaged in
        logit space (llm-blender's "[A,B]+[B,A]" compare mode); P + P.T = 1."""
        out = []
        for C in self.compare(prompts, candidates):
            P = 1.0 / (1.0 + np.exp(-(C - C.T) / 2.0))
            np.fill_diagonal(P, 0.5)
            out.append(P)
        return out


# --------------------------------------------------------------------------------------------- local judge

# Short on purpose: every ordered pair is one forward pass. On 12 obvious good-vs-bad pairs the embedded 135M model
# scored 50-67% with this and three longer wordings alike (margins ~0.01): it is a weak judge whatever the prompt.
JUDGE_TEMPLATE = (
    "[Instruction]\n{instruction}\n\n"
    "[Response A]\n{response_a}\n\n"
    "[Response B]\n{response_b}\n\n"
    "Which response is better? Answer with a single letter: A or B."
)


def answer_token_ids(tokenizer, letter: str) -> list[int]:
    """Ids of the single tokens that spell `letter` as a reply's first token ('A', ' A', '▁A'...), so a
    tokenizer that writes the answer with or without a leading space is read the same way."""
    ids = set()
    for text in (letter, " " + letter):
        enc = tokenizer.encode(text, add_special_tokens=False)
        if len(enc) == 1:
            ids.add(int(enc[0]))
    for token in (letter, "Ġ" + letter, "▁" + letter):  # byte-level BPE / SentencePiece spellings
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            if tokenizer.decode([tid]).strip() == letter:
                ids.add(tid)
    return sorted(ids)


def candidate_logprobs(chat, groups, token_ids: Sequence[int], progress: bool = False) -> list[np.ndarray]:
    """Per group of conversations, (rows, len(token_ids)) log-probabilities of the reply's first token being each
    of `token_ids`, normalised over those tokens only, for a `LocalChatModel` (`grouped_token_logprobs`: a group's
    shared opening is read once)."""
    out = []
    for lp in chat.grouped_token_logprobs(groups, list(token_ids), progress=progress):
        lp = np.asarray(lp, dtype=np.float64)
        out.append(lp - np.logaddexp.reduce(lp, axis=1, keepdims=True))
    return out


class LocalJudgeRanker:
    """A local chat model as a pairwise judge (the offline default, e.g. the embedded SmolLM2).

    For every ordered pair (i, j), i != j, the judge sees i as response A and j as response B; q_ij is the
    probability of answering A, normalised over the A and B answer tokens. Then
        P[i, j] = (q_ij + (1 - q_ji)) / 2     (i first: answers A;  i second: answers B)
    so P + P.T = 1 exactly, identical responses tie at 0.5, and a constant position bias cancels.
    C[i, j] = logit(P[i, j]). Instructions and responses are cut to max_instruction_tokens /
    max_response_tokens (keeping their start) before they enter the judge prompt, so the question stays whole.
    """

    def __init__(self, model="embedded", *, batch_size: int = 8, max_instruction_tokens: int = 512,
                 max_response_tokens: int = 512, template: str = JUDGE_TEMPLATE, dtype: str = "auto",
                 progress: bool = True):
        from .local_judge import LocalChatModel

        if batch_size < 1:
            raise UserError("ranking.batch_size: must be at least 1")
        for key in ("{instruction}", "{response_a}", "{response_b}"):
            if key not in template:
                raise UserError(f"judge template: missing the field {key}")
        if isinstance(model, str):
            max_prompt = max_instruction_tokens + 2 * max_response_tokens + 256
            self.chat = LocalChatModel.load(model, dtype=dtype, batch_size=batch_size, max_prompt_length=max_prompt)
            self.model = model
        else:
            self.chat = model
            self.model = model.name
        self.template = template
        self.max_instruction_tokens = max_instruction_tokens
        self.max_response_tokens = max_response_tokens
        self.progress = progress
        tok = self.chat.tokenizer
        self.a_ids, self.b_ids = answer_token_ids(tok, "A"), answer_token_ids(tok, "B")
        if not self.a_ids or not self.b_ids or set(self.a_ids) & set(self.b_ids):
            raise UserError(f"{self.model}: the tokenizer has no distinct single tokens for the answers A and B")
        self.last_call = LastCall()

    @property
    def name(self) -> str:
        return f"local-judge:{self.model}"

    def _cut(self, text: str, limit: int, cache: dict) -> str:
        if text not in cache:
            ids = self.chat.tokenizer.encode(text, add_special_tokens=False)
            cache[text] = text if len(ids) <= limit else \
                self.chat.tokenizer.decode(ids[:limit], skip_special_tokens=True) + " [...]"
        return cache[text]

    def conversation(self, instruction: str, response_a: str, response_b: str) -> list[dict]:
        return [{"role": "user", "content": self.template.format(
            instruction=instruction, response_a=response_a, response_b=response_b)}]

    def _first_position_probabilities(self, prompts, candidates) -> list[np.ndarray]:
        """q[n][i, j] = P(answer A | i shown as A, j as B), normalised over A and B; diagonal 0.5. The pairs
        that show the same response i first form one group: their prompts open alike (instruction, response A)."""
        cache: dict = {}
        groups, where = [], []
        for n, (p, cands) in enumerate(zip(prompts, candidates)):
            p = self._cut(p, self.max_instruction_tokens, {})
            cands = [self._cut(c, self.max_response_tokens, cache) for c in cands]
            for i in range(len(cands)):
                others = [j for j in range(len(cands)) if j != i]
                groups.append([self.conversation(p, cands[i], cands[j]) for j in others])
                where += [(n, i, j) for j in others]
        parts = candidate_logprobs(self.chat, groups, self.a_ids + self.b_ids, progress=self.progress)
        lp = np.concatenate(parts) if parts else np.zeros((0, len(self.a_ids + self.b_ids)))
        na = len(self.a_ids)
        log_a = np.logaddexp.reduce(lp[:, :na], axis=1)
        log_b = np.logaddexp.reduce(lp[:, na:], axis=1)
        q_a = np.exp(log_a - np.logaddexp(log_a, log_b))
        q = [np.full((len(c), len(c)), 0.5) for c in candidates]
        for (n, i, j), v in zip(where, q_a):
            q[n][i, j] = v
        return q

    def _probabilities(self, prompts, candidates) -> list[np.ndarray]:
        out = []
        for q in self._first_position_probabilities(prompts, candidates):
            P = (q + (1.0 - q.T)) / 2.0
            np.fill_diagonal(P, 0.5)
            out.append(P)
        return out

    def pairwise_probabilities(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        check_inputs(prompts, candidates)
        return [P.copy() for P in self.last_call.get(prompts, candidates,
                                                 lambda: self._probabilities(prompts, candidates))]

    def compare(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        out = []
        for P in self.pairwise_probabilities(prompts, candidates):
            Pc = np.clip(P, 1e-12, 1.0 - 1e-12)
            C = np.log(Pc) - np.log1p(-Pc)
            np.fill_diagonal(C, 0.0)
            out.append(C)
        return out


# ------------------------------------------------------------------------------------------------- factory


def make_ranker(kind: str, model: str | None = None, **kwargs) -> Ranker:
    """Build a ranker. kind: "pairrm" (model: Hub id or directory, default llm-blender/PairRM), "local-judge"
    (model: a chat model, default "embedded"), or "python:module:Class" for a plug-in: `Class(model, **kwargs)`
    (or `Class(**kwargs)` when model is None), any object with `compare` (and optionally
    `pairwise_probabilities`); a missing `name` is set to the kind string."""
    if kind == "pairrm":
        return PairRMRanker(model or PAIRRM_HUB_ID, **kwargs)
    if kind == "local-judge":
        return LocalJudgeRanker(model or "embedded", **kwargs)
    if isinstance(kind, str) and kind.startswith("python:"):
        parts = kind.split(":")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise UserError(f"ranking.kind: {kind!r} should read python:module:Class")
        _, module_name, attr = parts
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise UserError(f"ranking.kind: cannot import {module_name} ({e})") from None
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise UserError(f"ranking.kind: {module_name} has no class or function {attr}")
        try:
            ranker = factory(model, **kwargs) if model is not None else factory(**kwargs)
        except TypeError as e:
            raise UserError(f"ranking.kind: cannot build {module_name}:{attr} ({e})") from None
        if not callable(getattr(ranker, "compare", None)):
            raise UserError(f"ranking.kind: {module_name}:{attr} has no compare(prompts, candidates) method")
        if getattr(ranker, "name", None) is None:
            try:
                ranker.name = kind
            except AttributeError:
                pass
        return ranker
    raise UserError(f"ranking.kind: unknown ranker {kind!r}; use pairrm, local-judge or python:module:Class")
