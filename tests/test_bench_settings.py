"""Each suite's official settings: AlpacaEval sampling from the official model configs, the official judge of each
suite by default, and a judge without logprobs giving the official NaN preference."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bench_fake_judge import FakeJudgeServer, bench_args, tiny_checkpoints
from benchmarks.answers import AnswerSettings
from benchmarks.suites.alpaca_eval import alpaca_eval_answers, alpaca_eval_sampling
from benchmarks.cli import main as bench
from benchmarks.store import ResultsStore
from sppo.files import read_json


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("ckpts"), seeds=(0,))


class _RecordingAnswerer:
    best_of = 1

    def __init__(self):
        self.calls = []

    def identity(self):
        return {"model": "x"}

    def engine(self):
        return {"backend": "hf"}

    def answer(self, conversations, temperature, max_new_tokens, top_p=1.0, top_k=0):
        self.calls.append((temperature, top_p, max_new_tokens))
        return ["answer"] * len(conversations)


def test_alpaca_eval_sampling_comes_from_the_official_model_configs(tmp_path):
    import alpaca_eval

    cfg_file = Path(alpaca_eval.__file__).parent / "models_configs" / "SPPO-Mistral7B-PairRM" / "configs.yaml"
    kw = yaml.safe_load(cfg_file.read_text())["SPPO-Mistral7B-PairRM"]["completions_kwargs"]
    got = alpaca_eval_sampling(kw["model_name"])
    assert (got["temperature"], got["top_p"], got["max_new_tokens"]) == (kw["temperature"], kw["top_p"],
                                                                          kw["max_new_tokens"])
    # a model without an alpaca_eval config (a local checkpoint): the SPPO models' settings, as written in
    # uclaml/SPPO models_configs/Mistral7B-PairRM-SPPO-Iter3/configs.yaml (max_new_tokens 2048, T 0.7, top_p 0.9)
    local = alpaca_eval_sampling(str(tmp_path))
    assert (local["temperature"], local["top_p"], local["max_new_tokens"]) == (0.7, 0.9, 2048)
    # they are what the answers are generated with (greedy before); flags override
    examples = [{"instruction": "hi", "output": "x"}]
    answerer = _RecordingAnswerer()
    _, info = alpaca_eval_answers(answerer, examples, tmp_path / "a.json", "m", AnswerSettings(), str(tmp_path))
    assert answerer.calls == [(0.7, 0.9, 2048)] and info["temperature"] == 0.7
    answerer = _RecordingAnswerer()
    alpaca_eval_answers(answerer, examples, tmp_path / "b.json", "m",
                        AnswerSettings(alpaca_eval_temperature=0.0, alpaca_eval_top_p=1.0), str(tmp_path))
    assert answerer.calls == [(0.0, 1.0, 2048)]


def test_each_suite_has_its_official_judge_by_default(ckpts, shared_data, tmp_path):
    results = tmp_path / "results"
    with FakeJudgeServer() as server:
        argv = bench_args(server, ckpts, shared_data, results, "--alpaca-eval", "--arena-hard", "--mt-bench")
        i = argv.index("--judge-model")
        del argv[i:i + 2]
        assert bench(argv) == 0
        # AlpacaEval weighted_alpaca_eval_gpt4_turbo and Arena-Hard v0.1: gpt-4-1106-preview; FastChat MT-Bench
        # (gen_judgment.py --judge-model default): gpt-4
        by_kind = {("alpaca" if b.get("logprobs") else "arena" if "[[A>>B]]" in b["messages"][0]["content"]
                    else "mt"): b["model"] for b in server.requests}
        assert by_kind == {"alpaca": "gpt-4-1106-preview", "arena": "gpt-4-1106-preview", "mt": "gpt-4"}
        store = ResultsStore(results)
        assert store.read("tiny1", "mt_bench").judge["model"] == "gpt-4"
        assert (results / "mt_bench" / "model_judgment" / "gpt-4_single.jsonl").is_file()
        # one suite's judge overridden: only that suite is judged again
        n = server.count()
        assert bench(argv + ["--mt-bench-judge-model", "other-judge"]) == 0
        assert {b["model"] for b in server.requests[n:]} == {"other-judge"} and server.count() == n + 4


@pytest.mark.parametrize("fault", ["no-logprobs", "empty-top-logprobs"])
def test_judge_without_logprobs_gives_the_official_nan(ckpts, shared_data, tmp_path, fault):
    results = tmp_path / "results"
    with FakeJudgeServer() as server:
        server.always = fault
        assert bench(bench_args(server, ckpts, shared_data, results, "--alpaca-eval")) == 0
    ann = read_json(results / "alpaca_eval" / "tiny1" / "annotations.json")
    # alpaca_eval's logprob_parser: no m/M among the top logprobs -> NaN (never the sampled token as 1 or 2)
    assert [a["preference"] for a in ann] == [None, None]
    m = ResultsStore(results).read("tiny1", "alpaca_eval").metrics
    assert m["n_invalid"] == 2 and m["n_total"] == 0


class _Tok:
    chat_template = "the model's own template"


class _TemplateRecorder(_RecordingAnswerer):
    """Records the prompts and the chat template active while answering."""

    def __init__(self, base_model):
        super().__init__()
        self.generator = type("G", (), {"tokenizer": _Tok()})()
        self.base_model = base_model
        self.prompts = []

    def template_model(self):
        return self.base_model

    def answer(self, conversations, temperature, max_new_tokens, top_p=1.0, top_k=0):
        self.prompts.append((self.generator.tokenizer.chat_template, conversations))
        self.top_ks = getattr(self, "top_ks", []) + [top_k]
        return [f"A{len(self.prompts)}"] * len(conversations)


def test_answer_job_gives_a_rendered_prompt_to_the_model_unchanged():
    """A PromptText (a prompt FastChat's template rendered) travels through the answer job as it is - still a
    PromptText, so the generator applies no chat template - and a message list stays a message list."""
    from benchmarks.answers import ModelAnswerer
    from sppo.generate import PromptText

    class Gen:
        def __init__(self):
            self.tokenizer, self.seen = _Tok(), []

        def generate(self, conversations, params, progress=False):
            self.seen.append((conversations, params.top_k))
            return [["x"] for _ in conversations]

    answerer = ModelAnswerer("m")
    gen = Gen()
    answerer.adopt(gen)
    prompt = [{"role": "user", "content": "[INST] Q1 [/INST]"}]
    assert answerer.answer([PromptText("[INST] Q1 [/INST]")], 0.0, 4, top_k=50) == ["x"]
    assert answerer.answer([prompt], 0.0, 4) == ["x"]
    (first, k1), (second, k2) = gen.seen
    assert first == ["[INST] Q1 [/INST]"] and isinstance(first[0], PromptText) and k1 == 50
    assert second == [prompt] and k2 == 0


def test_mt_bench_prompts_use_fastchats_conversation_template(tmp_path):
    from benchmarks.suites.mt_bench import mt_bench_answers
    from sppo.generate import PromptText

    question = {"question_id": 81, "category": "writing", "turns": ["Q1", "Q2"]}
    answerer = _TemplateRecorder("mistralai/Mistral-7B-Instruct-v0.2")
    _, info = mt_bench_answers(answerer, [question], tmp_path / "a.jsonl", "m", AnswerSettings())
    # FastChat's "mistral" template (fschat 0.2.36 conversation.py: LLAMA2 style, "[INST]"/"[/INST]", sep2 "</s>"),
    # filled as gen_model_answer.py does; the text goes to the generator as it is, no chat template applied
    # (its token ids: tests/test_bench_fastchat_tokens.py)
    (_, c1), (_, c2) = answerer.prompts
    assert c1 == ["[INST] Q1 [/INST]"] and c2 == ["[INST] Q1 [/INST] A1</s>[INST] Q2 [/INST]"]
    assert all(isinstance(c, PromptText) for c in c1 + c2)
    # gen_model_answer.py:123-128 passes no top_k to HF generate: transformers' default top-k 50
    assert answerer.top_ks == [50, 50] and info["top_k"] == 50
    assert info["chat_template"] == "fastchat:mistral"
    # a model FastChat has no template for, or --chat-template hf: the model's own chat template and messages
    for base, chosen in (("HuggingFaceTB/SmolLM2-135M-Instruct", "fastchat"), ("mistralai/Mistral-7B-Instruct-v0.2", "hf")):
        answerer = _TemplateRecorder(base)
        _, info = mt_bench_answers(answerer, [question], tmp_path / f"{chosen}.jsonl", "m",
                                   AnswerSettings(chat_template=chosen))
        (t1, c1), (_, c2) = answerer.prompts
        assert t1 == _Tok.chat_template and info["chat_template"] == "hf"
        assert c2 == [[{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
                       {"role": "user", "content": "Q2"}]]


def test_arena_hard_official_cap_for_long_prompts(tmp_path):
    from benchmarks.suites.arena_hard import arena_hard_answers

    class Tok:
        def __call__(self, text):
            return {"input_ids": [1] + text.split()}  # a BOS and one id per word

    answerer = _TemplateRecorder("x")
    answerer.generator.tokenizer = Tok()
    calls = []
    answerer.answer = lambda convs, t, cap, top_p=1.0: calls.append((t, cap, len(convs))) or ["a"] * len(convs)
    qs = [{"question_id": f"q{i}", "turns": [{"content": " ".join(["w"] * n)}]} for i, n in enumerate((10, 10, 500))]
    _, info = arena_hard_answers(answerer, qs, tmp_path / "a.jsonl", "m", AnswerSettings())
    # gen_answer.py: max_tokens = 4096 - len(tokenizer(question).input_ids) - 300, greedy
    assert sorted(calls) == sorted([(0.0, 4096 - 11 - 300, 2), (0.0, 4096 - 501 - 300, 1)])
    calls.clear()
    arena_hard_answers(answerer, qs, tmp_path / "b.jsonl", "m", AnswerSettings(max_new_tokens=8))
    assert calls == [(0.0, 8, 3)]
