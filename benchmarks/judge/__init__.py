"""Judge clients: an OpenAI-compatible chat-completions endpoint, or a local chat model in-process.

Both backends share one interface::

    judge.complete([JudgeRequest(messages, max_tokens, temperature, top_logprobs)]) -> [JudgeReply]

and one on-disk cache. One concept per module:

    types.py   JudgeRequest, JudgeReply, JudgeStats
    cache.py   the SQLite cache (JudgeCache) and its key (cache_key)
    base.py    Judge: cache lookup, accounting (calls, tokens, cost) around a backend
    client.py  OpenAIJudge: the OpenAI-compatible HTTP client (retries, backoff, deadline, size cap, Ctrl-C)
    local.py   LocalJudge: a local chat model (sppo.local_judge), its jobs shared by every rank
    spec.py    the ``--judge`` values and the name of a local judge

Secrets (the API key, a base URL's password) are handled by the toolkit's one scrubber, ``sppo.scrub``.
"""

from sppo.scrub import install_log_scrubber, register_secret, scrub

from .base import PRICES_PER_MILLION, Judge
from .cache import CACHE_FILE, JudgeCache, cache_key
from .client import OpenAIJudge, parse_completion, recorded_base_url
from .local import LOCAL_JUDGE_CHUNK, LOCAL_JUDGE_MIN_CHUNK, LocalJudge, LocalJudgeJob, serve_local_judge_job
from .spec import local_judge_name, parse_judge_spec
from .types import JudgeReply, JudgeRequest, JudgeStats

__all__ = ["CACHE_FILE", "LOCAL_JUDGE_CHUNK", "LOCAL_JUDGE_MIN_CHUNK", "PRICES_PER_MILLION", "Judge", "JudgeCache",
           "JudgeReply", "JudgeRequest", "JudgeStats", "LocalJudge", "LocalJudgeJob", "OpenAIJudge", "cache_key",
           "install_log_scrubber", "local_judge_name", "parse_completion", "parse_judge_spec", "recorded_base_url",
           "register_secret", "scrub", "serve_local_judge_job"]
