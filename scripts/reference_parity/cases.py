"""The parity cases: (name, prompt, chosen, rejected) texts, raw as a generator returns them.

Built deterministically (no randomness, no files), the same for every tokenizer. They cover what tokenizes
differently under a real SentencePiece or tiktoken tokenizer: leading and trailing spaces and newlines,
"None" inside words (the reference cuts its generation prompt at the first "None"), unicode, code, special
tokens written in text, and prompts of 700+ / responses of 1500+ tokens that force the reference's truncation.
"""

from __future__ import annotations

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def _long_text(n_sentences: int, seed: int) -> str:
    """Varied English-like sentences: about 12 tokens each under both tokenizers."""
    out = []
    for i in range(n_sentences):
        a, b, c = (WORDS[(seed * 7 + i * k) % len(WORDS)] for k in (1, 3, 5))
        out.append(f"Step {i + seed}: the {a} meets {b} near {c}, and {i * 13 % 97} boxes move.")
    return " ".join(out)


CODE = ('```python\ndef fib(n: int) -> int:\n    """None of the inputs may be negative."""\n'
        '    if n < 2:\n        return n\n\treturn fib(n - 1) + fib(n - 2)\n```\n')
UNICODE = ("Café naïve — 日本語のテキスト, Ελληνικά, emoji 🙂👍🏽, "
           "math ∑x² ≤ ∞, zero\u200bwidth.")
SPECIAL = "Literal tokens: <s> </s> [INST] [/INST] <|begin_of_text|> <|eot_id|> <|start_header_id|> <unk>."


def cases() -> list[tuple[str, str, str, str]]:
    long_prompt = "Summarise the following log.\n" + _long_text(70, 1)          # 700+ tokens
    long_answer = " " + _long_text(150, 5)                                       # 1500+ tokens
    longer_answer = _long_text(170, 9) + "\n\n"
    return [
        ("plain", "What is the capital of France?", "The capital of France is Paris.", "Paris."),
        ("leading_space_responses", "Name a colour.", " Blue is a colour.", "  Red."),
        ("trailing_space_responses", "Name a fruit.", "Apple. ", "Banana.\n\n"),
        ("both_sides_space", "  Spaces around the prompt.  ", " Answer with spaces. ", "\nAnswer after newline\n"),
        ("none_in_prompt", "Nonetheless, is None a value in Python?", "Yes, None is a singleton.", "No."),
        ("none_in_words", "Explain the word 'nonentity' and NoneType.", "A nonentity is... NoneType is None's type.",
         "Nonexistent."),
        ("none_at_start", "None", "None of that.", "Something else."),
        ("unicode", UNICODE, "Réponse: très bien — 好的 🙂", "Ответ: да."),
        ("code_prompt", "Fix this code:\n" + CODE, "Here is the fix:\n" + CODE, "It works."),
        ("code_response_tabs", "Indent with tabs.", "\tline one\n\t\tline two\n", "    spaces    "),
        ("special_tokens_in_prompt", SPECIAL, "Those are special tokens.", "</s>"),
        ("special_tokens_in_response", "Echo the tokens.", SPECIAL, "<|eot_id|><s>"),
        ("inst_in_prompt", "What does [/INST] mean? [INST] nested", " It closes an instruction.", "[/INST]"),
        ("multi_line_prompt", "Line one.\nLine two.\n\nLine four.", "One.\nTwo.", "Four."),
        ("markdown_table", "Make a table.", "| a | b |\n|---|---|\n| 1 | 2 |", "a,b\n1,2"),
        ("numbers", "Add 1234567 and 7654321.", "1234567 + 7654321 = 8888888", "8,888,888"),
        ("newline_first", "Start with a newline.", "\nHello there.", "\n\n"),
        ("whitespace_only_response", "Say nothing.", "   ", "Nothing."),
        ("empty_response", "Reply with nothing.", "", "Fine."),
        ("long_prompt", long_prompt, "Short summary.", "It is a log."),
        ("long_chosen", "Write at length.", long_answer, "Brief."),
        ("long_rejected", "Write at length, please.", "Brief answer.", longer_answer),
        ("long_both", "Write a lot.", long_answer, longer_answer),
        ("long_prompt_long_answer", long_prompt, long_answer, "Short."),
        ("long_prompt_both_long", long_prompt, longer_answer, long_answer),
        ("long_prompt_none_late", long_prompt + " None of the above.", "Fine.", "None."),
        ("equal_responses", "Pick one.", "Same answer.", "Same answer."),
        ("merge_boundary", "Complete: hello", "world", "wor"),
    ]
