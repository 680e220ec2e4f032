"""How a judge is named: the ``--judge`` values and the name of a local judge in results and cache keys."""

from __future__ import annotations

from sppo.errors import UserError


def local_judge_name(model: str | None) -> str:
    """The judge name of a local model (its cache key and results label): ``local:embedded`` or ``local:MODEL``."""
    from sppo.models import EMBEDDED_ALIASES

    return "local:embedded" if model is None or model in EMBEDDED_ALIASES else f"local:{model}"


def parse_judge_spec(spec: str | None) -> tuple[str, str | None]:
    """``--judge`` values: ``local`` / ``local:MODEL`` -> ("local", MODEL or None); ``openai`` -> ("openai", None)."""
    if spec is None or spec == "openai":
        return "openai", None
    if spec == "local":
        return "local", None
    if spec.startswith("local:"):
        return "local", spec[len("local:"):] or None
    raise UserError(f"--judge: unknown value {spec!r}; use local, local:MODEL or openai")
