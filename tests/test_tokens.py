"""`sppo-train --tokens`, generation.response_text, prompts.rows and model.tokenizer_config on a tiny model.
(Token-for-token parity with the reference on real tokenizers: test_reference_parity.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perf.fixtures import make_tiny_checkpoint
from sppo.cli import main as train_main
from sppo.config import load_config
from sppo.errors import UserError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", seed=3)


def tokens(capsys, tmp_path, tiny, rows, *overrides) -> tuple[int, list[dict], str]:
    path = tmp_path / "in.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    capsys.readouterr()
    code = train_main(["--tokens", str(path), f"model.name={tiny}", *overrides])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()] if code == 0 else [], err


def test_tokens_prints_ids_and_labels_training_uses(capsys, tmp_path, tiny):
    from sppo.models import load_tokenizer
    from sppo.sequences import encode_examples

    row = {"prompt": "Why is the sky blue?", "chosen": "Rayleigh scattering.", "rejected": "Because."}
    short = ["training.max_length=12", "training.max_prompt_length=8", "generation.max_new_tokens=4"]
    code, (out,), _ = tokens(capsys, tmp_path, tiny, [row], *short)
    assert code == 0
    cfg = load_config(None, short)
    (example,), _ = encode_examples(load_tokenizer(str(tiny), padding_side="right"),
                                    [{**row, "p_win": 0.6, "p_lose": 0.4}], cfg.training)
    assert out["chosen_input_ids"] == example.chosen.input_ids and len(out["chosen_input_ids"]) == 12
    start = example.rejected.response_start
    assert out["rejected_labels"] == [-100] * start + example.rejected.input_ids[start:]
    assert out["prompt_input_ids"] == example.chosen.input_ids[:start]
    assert out["generation_prompt"].endswith("Why is the sky blue?") or "Why is the sky blue?" in \
        out["generation_prompt"]


def test_response_text_verbatim_keeps_surrounding_whitespace(capsys, tmp_path, tiny):
    rows = [{"prompt": "Name a colour.", "chosen": " Blue. ", "rejected": "Red."},
            {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Red."}]
    _, (spaced, bare), _ = tokens(capsys, tmp_path, tiny, rows)  # default: strip
    assert spaced["chosen_input_ids"] == bare["chosen_input_ids"]
    _, (spaced, bare), _ = tokens(capsys, tmp_path, tiny, rows, "generation.response_text=verbatim")
    assert spaced["chosen_input_ids"] != bare["chosen_input_ids"]
    assert spaced["rejected_input_ids"] == bare["rejected_input_ids"]


@pytest.mark.parametrize("line, message", [
    ("not json", "in.jsonl:1: invalid JSON"),
    ('["a list"]', "in.jsonl:1: expected an object"),
    ('{"prompt": "p", "chosen": "c"}', "in.jsonl:1: field 'rejected' must be a string (missing)"),
    ('{"prompt": "p", "chosen": 3, "rejected": "r"}', "in.jsonl:1: field 'chosen' must be a string (got int)"),
    ('{"prompt": "p", "chosen": "c", "rejected": "r", "chosen_finish_reason": "eos"}',
     "in.jsonl:1: field 'chosen_finish_reason' must be"),
])
def test_tokens_bad_input_is_one_line_naming_file_line_and_field(capsys, tmp_path, tiny, line, message):
    good = '{"prompt": "p", "chosen": "c", "rejected": "r"}'
    code, _, err = tokens(capsys, tmp_path, tiny, [line, good])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_tokens_missing_and_empty_files(capsys, tmp_path, tiny):
    assert train_main(["--tokens", str(tmp_path / "nope.jsonl"), f"model.name={tiny}"]) == 2
    assert "nope.jsonl: file not found" in capsys.readouterr().err
    code, _, err = tokens(capsys, tmp_path, tiny, [])
    assert code == 2 and "no input lines" in err


def _prompt_file(tmp_path, texts):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": t, "split": "s"}) + "\n" for t in texts))
    return path


def test_prompts_rows_reference_keeps_empty_and_repeated_prompts(tmp_path):
    from sppo.prompts import load_split

    path = _prompt_file(tmp_path, ["Say hi.", "", "Say hi.", "Say bye."])
    base = [f"prompts.source={path}", "prompts.splits=[s]", "run.iterations=1"]
    clean = load_split(load_config(None, base).prompts, 1)
    assert [r["prompt"] for r in clean] == ["Say hi.", "Say bye."]
    kept = load_split(load_config(None, base + ["prompts.rows=reference"]).prompts, 1)
    assert [r["prompt"] for r in kept] == ["Say hi.", "", "Say hi.", "Say bye."]
    assert len({r["id"] for r in kept}) == 4 and kept[2]["id"] == kept[0]["id"] + "#1"


def test_tied_prompts_train_as_the_reference_kept_them():
    """compute_prob.py:85-92: argmax = argmin = the first response, so chosen = rejected, P_win = P_lose."""
    from sppo.pipeline import build_dataset_rows
    from sppo.rows import ComparisonRow, ResponseRow

    generated = [ResponseRow("a", "p", ["x", "y", "z"]), ResponseRow("b", "q", ["u", "v", "w"])]
    ranked = [ComparisonRow("a", np.zeros((3, 3)).tolist()), ComparisonRow("b", [[0, 1, 1], [0, 0, 1], [0, 0, 0]])]
    rows, ties = build_dataset_rows(generated, ranked, use_direct=False)
    assert ties == 1 and [r.id for r in rows] == ["b"]
    rows, ties = build_dataset_rows(generated, ranked, use_direct=False, keep_ties=True)
    assert ties == 1 and [r.id for r in rows] == ["a", "b"]
    tie = rows[0]
    assert tie.chosen == tie.rejected == "x" and tie.p_win == tie.p_lose == 0.5


def test_tokenizer_config_replaces_template_unless_revision_pins(tmp_path, tiny):
    from sppo.models import load_tokenizer
    from sppo.run_dir import Run

    custom = tmp_path / "tokenizer_config.json"
    custom.write_text(json.dumps({"chat_template": "SHIPPED {{ messages[0]['content'] }}"}))
    tok = load_tokenizer(str(tiny), tokenizer_config=str(custom))
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "SHIPPED hi"
    run = Run(load_config(None, [f"model.name={tiny}", f"model.tokenizer_config={custom}"]))
    assert run.tokenizer(str(tiny)).chat_template.startswith("SHIPPED")
    pinned = Run(load_config(None, [f"model.name={tiny}", f"model.tokenizer_config={custom}",
                                    "model.revision=abc123"]))
    assert not pinned.tokenizer(str(tiny)).chat_template.startswith("SHIPPED")
    with pytest.raises(UserError, match="model.tokenizer_config: no-such: neither a shipped template"):
        load_tokenizer(str(tiny), tokenizer_config="no-such")
    with pytest.raises(UserError, match="_token '<.*>' is not in the model's vocabulary"):
        load_tokenizer(str(tiny), tokenizer_config="meta-llama-3-8b-instruct")


def test_shipped_templates_are_the_published_ones():
    from sppo.models import shipped_tokenizer_config

    mistral = shipped_tokenizer_config("mistral-7b-instruct-v0.2")
    assert "message['content'] + eos_token}}" in mistral["chat_template"]  # no trailing space after </s>
    assert mistral["add_bos_token"] is True and mistral["legacy"] is True
    llama = shipped_tokenizer_config("meta-llama-3-8b-instruct")
    assert llama["eos_token"] == "<|eot_id|>" and "| trim" in llama["chat_template"]
    gemma = shipped_tokenizer_config("gemma-2-9b-it")
    assert (gemma["bos_token"], gemma["eos_token"], gemma["add_bos_token"]) == ("<bos>", "<eos>", True)
    assert "'<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n'" in gemma["chat_template"]


def test_hf_backend_decodes_a_response_as_vllm_returns_it(tmp_path):
    """With the real Mistral tokenizer a response token "▁Sure" reads " Sure" after the prompt (vLLM's text,
    which reference mode trains on verbatim); decoded alone it would lose the space."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "reference_parity"))
    from tokenizer_files import build_tokenizer_dir

    from sppo.generate import decode_in_context, encode_prompt
    from sppo.models import load_tokenizer

    tok = load_tokenizer(str(build_tokenizer_dir("mistral", tmp_path / "mistral")))
    prompt = encode_prompt(tok, "Say yes.", "reference")
    new = tok("Sure, yes.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert tok.convert_ids_to_tokens(new[0]) == "▁Sure"
    assert tok.decode(new, skip_special_tokens=True) == "Sure, yes."
    assert decode_in_context(tok, prompt, new) == " Sure, yes."


GEMMA_TURN_TOKENS = ("<start_of_turn>", "<end_of_turn>")


@pytest.fixture(scope="module")
def gemma_like(tmp_path_factory) -> Path:
    """A tiny tokenizer with Gemma's special tokens (no real Gemma tokenizer is available offline) and a
    Mistral-style template of its own, which --config gemma-2 replaces with the shipped gemma-2-9b-it one."""
    from perf.fixtures import make_tiny_tokenizer

    path = tmp_path_factory.mktemp("gemma") / "tokenizer"
    make_tiny_tokenizer(bos="<bos>", eos="<eos>", extra_special=GEMMA_TURN_TOKENS).save_pretrained(path)
    return path


@pytest.mark.parametrize("config", ["gemma-2", "gemma-2-27b"])
def test_gemma_tokens_are_the_reference_layout(capsys, tmp_path, gemma_like, config):
    """Expected strings written by hand from uclaml/SPPO 5e61c4e and the gemma-2-9b-it template (which trims each
    message): scripts/generate.py:40-44 renders [user, assistant "None"] and cuts at "None"; alignment/data.py:57-65
    (`add_generate_prompt` misspelt, so no generation prompt) makes the prompt text the user turn alone and the
    response text the rest of the [user, assistant] rendering; trainer.py:637-640 puts a BOS in front of the
    prompt, trainer.py:646-651 an EOS after the response; only response tokens are labelled."""
    from transformers import AutoTokenizer

    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"prompt": "  Why is the sky blue? ", "chosen": " Rayleigh scattering.\n",
                                "rejected": "Because."}) + "\n")
    capsys.readouterr()
    assert train_main(["--tokens", str(path), "--config", config, f"model.name={gemma_like}"]) == 0
    (out,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert out["generation_prompt"] == "<bos><start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n" \
                                       "<start_of_turn>model\n"
    tok = AutoTokenizer.from_pretrained(str(gemma_like))
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    bos, eos = tok.convert_tokens_to_ids(["<bos>", "<eos>"])
    prompt = [bos] + enc("<bos><start_of_turn>user\nWhy is the sky blue?<end_of_turn>\n")
    chosen = enc("<start_of_turn>model\nRayleigh scattering.<end_of_turn>\n") + [eos]
    rejected = enc("<start_of_turn>model\nBecause.<end_of_turn>\n") + [eos]
    assert out["prompt_input_ids"] == prompt
    assert out["chosen_input_ids"] == prompt + chosen and out["rejected_input_ids"] == prompt + rejected
    assert out["chosen_labels"] == [-100] * len(prompt) + chosen
    assert out["rejected_labels"] == [-100] * len(prompt) + rejected
    pieces = tok.convert_ids_to_tokens(out["chosen_input_ids"])
    assert pieces[:3] == ["<bos>", "<bos>", "<start_of_turn>"] and pieces[-3:] == ["<end_of_turn>", "Ċ", "<eos>"]


def test_gemma_recipes_keep_the_reference_settings_of_llama3():
    """The Gemma-2 recipes reproduce the reference exactly as `llama-3` does; they differ only in the model, its
    template, the per-device batch of their scripts and Gemma-2's attention and precision."""
    import dataclasses

    def flat(name):
        sections = dataclasses.asdict(load_config(name))
        return {f"{s}.{k}": v for s, d in sections.items() if isinstance(d, dict) for k, v in d.items()}

    intended = {"run.output_dir", "model.name", "model.tokenizer_config", "model.attn_implementation",
                "training.per_device_train_batch_size", "training.gradient_accumulation_steps", "training.bf16"}
    llama = flat("llama-3")
    for name in ("gemma-2", "gemma-2-27b"):
        gemma = flat(name)
        assert {k for k in llama.keys() | gemma.keys() if llama.get(k) != gemma.get(k)} == intended, name
        assert gemma["model.tokenizer_config"] == "gemma-2-9b-it"  # generate.py:70-71, rank.py:58-59
        for key, value in [("training.special_tokens", "reference"), ("training.truncation", "reference"),
                           ("prompts.rows", "reference"), ("generation.response_text", "verbatim"),
                           ("ranking.source", "template"), ("training.max_grad_norm", 0)]:
            assert gemma[key] == value, (name, key)
