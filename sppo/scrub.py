"""The one secret scrubber of the toolkit: API keys, Hub tokens and URL passwords never reach a log line, an error
message or a file.

A secret is registered once where it is read (``register_secret``: the judge's API key, the Hub token, the
password of a URL's userinfo, found by ``public_url``). ``scrub`` then removes it in every encoding it may take on
the way out: raw, JSON-escaped (a key containing ``"`` or ``\\``), URL-encoded, and base64 (of the key alone and
of ``user:password``, as HTTP basic authentication sends it, at any alignment inside a longer base64 text).
``scrub`` also removes what it can recognise without being told: ``Authorization``/``Bearer`` values, the
userinfo of URLs (``http://user:pass@host/v1`` -> ``http://host/v1``) and the values of URL query parameters named
like a secret (``?api_key=``, ``token``, ``sig``, ...). The file writers of ``sppo.files`` pass everything they
write through ``scrub_obj(..., patterns=False)`` (registered secrets only: data such as prompts that merely mention
a URL with a user name is kept as it is).

``install_log_scrubber`` puts the scrubber where every line leaves the process: on every log record as it is made
(so every handler sees it scrubbed, the ones libraries such as huggingface_hub and transformers attach to their
own loggers included), on Python warnings, and on uncaught exceptions' tracebacks.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import threading
import traceback
import warnings
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

REDACTED = "[REDACTED]"
MIN_SECRET = 4  # shorter values are not secrets worth scrubbing (and would match everywhere)

_SECRETS: set[str] = set()
_forms: re.Pattern | None = None  # every encoded form of every registered secret, longest first
_AUTH_VALUE = re.compile(r"((?i:authorization)[\"']?\s*[:=]\s*[\"']?)(?:(?i:bearer|basic)\s+)?[^\s\"',}]+"
                         r"|\bBearer\s+[A-Za-z0-9._~+/=-]{12,}")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@\"'<>]+@")
# a query parameter whose name says it holds a secret: api_key, apiKey, access_token, X-Amz-Signature, password...
_SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "passwd", "pass", "pwd", "sig", "signature", "auth",
                 "authorization", "credential", "credentials", "session", "sessionid"}
_URL_PARAM = re.compile(r"([?&])([^=&#\s\"'<>]+)=([^&#\s\"'<>]+)")


def _base64_fragments(raw: bytes) -> set[str]:
    """The base64 characters that encode only `raw`, whatever bytes precede it in the encoded text (three byte
    alignments, standard and URL-safe alphabets)."""
    out = {base64.b64encode(raw).decode("ascii"), base64.urlsafe_b64encode(raw).decode("ascii")}
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * shift + raw).decode("ascii").rstrip("=")
            start = -(-shift * 4 // 3)  # characters that also carry bits of the preceding bytes
            end = len(text) - (1 if (shift + len(raw)) % 3 else 0)  # the last one may carry following bytes
            if end - start >= MIN_SECRET:
                out.add(text[start:end])
    return out


def encoded_forms(secret: str) -> set[str]:
    """`secret` as it may appear in text: raw, JSON-escaped, URL-encoded, base64."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             quote(secret, safe=""), quote(secret), quote_plus(secret, safe="")}
    forms |= _base64_fragments(secret.encode("utf-8"))
    return {f for f in forms if len(f) >= MIN_SECRET}


def register_secret(value: str | None) -> None:
    """Remember a secret so that ``scrub`` removes it (in every encoding) from every later text."""
    global _forms
    if not value or len(value) < MIN_SECRET or value in _SECRETS:
        return
    _SECRETS.add(value)
    forms = set().union(*(encoded_forms(s) for s in _SECRETS))
    _forms = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))


def public_url(url: str) -> str:
    """`url` as every record, key and log line shows it: without its userinfo (``http://user:pass@host/v1`` ->
    ``http://host/v1``) and with the values of query parameters named like a secret replaced
    (``?api_key=XYZ`` -> ``?api_key=[REDACTED]``; ``?api-version=2024-06-01`` is kept). The password (and
    ``user:pass``, as basic authentication encodes it) and those values are registered as secrets."""
    parts = urlsplit(url)
    host = parts.netloc
    if "@" in host:
        userinfo, _, host = host.rpartition("@")
        user, _, password = userinfo.partition(":")
        register_secret(userinfo)
        if password:
            register_secret(password)
            register_secret(unquote(password))
            register_secret(f"{user}:{password}")
            register_secret(f"{unquote(user)}:{unquote(password)}")
    return urlunsplit(parts._replace(netloc=host, query=_public_query(parts.query)))


def secret_param(name: str) -> bool:
    """A URL query parameter whose name says it holds a secret (a word of it: ``key``, ``token``, ``secret``,
    ``password``, ``sig``, ``auth``, ``session``...; ``api-version`` is none)."""
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return any(w in _SECRET_WORDS for w in words)


def _public_query(query: str) -> str:
    """A query string with the values of secret-named parameters registered and replaced by ``[REDACTED]``."""
    pieces = []
    for piece in query.split("&") if query else []:
        name, eq, value = piece.partition("=")
        if eq and value and secret_param(unquote_plus(name)):
            register_secret(value)
            register_secret(unquote_plus(value))
            value = REDACTED
        pieces.append(f"{name}{eq}{value}")
    return "&".join(pieces)


def url_credentials(url: str) -> tuple[str, str] | None:
    """(user, password) of a URL's userinfo, decoded, for HTTP basic authentication (registered as secrets by
    ``public_url``); None without userinfo."""
    netloc = urlsplit(url).netloc
    if "@" not in netloc:
        return None
    user, _, password = netloc.rpartition("@")[0].partition(":")
    return unquote(user), unquote(password)


def scrub(text: str, patterns: bool = True) -> str:
    """`text` without any registered secret in any encoding; with `patterns`, also without ``Authorization`` /
    ``Bearer`` values and the userinfo of URLs."""
    if _forms is not None:
        text = _forms.sub(REDACTED, text)
    if patterns:
        text = _URL_USERINFO.sub(r"\1", text)
        text = _URL_PARAM.sub(lambda m: m.group(0) if not secret_param(unquote_plus(m.group(2)))
                              else f"{m.group(1)}{m.group(2)}={REDACTED}", text)
        text = _AUTH_VALUE.sub(lambda m: (m.group(1) or "Bearer ") + REDACTED, text)
    return text


def scrub_obj(obj: Any, patterns: bool = True) -> Any:
    """``scrub`` applied to every string (keys included) of a JSON-like object; other values unchanged."""
    if not patterns and _forms is None:
        return obj
    if isinstance(obj, str):
        return scrub(obj, patterns)
    if isinstance(obj, dict):
        return {scrub_obj(k, patterns): scrub_obj(v, patterns) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_obj(v, patterns) for v in obj]
    return obj


class ScrubFilter(logging.Filter):
    """A logging filter that passes every record's final message through ``scrub``."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """`record` with its final message, exception text and stack scrubbed (the message formatted once, here)."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed format: logging reports it itself, with the handler
        return record
    clean = scrub(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    return record


def _scrubbing_factory(make):
    def factory(*args, **kwargs):
        return scrub_record(make(*args, **kwargs))

    factory.scrubs = True
    return factory


def _scrubbing_formatwarning(format_warning):
    def formatwarning(*args, **kwargs):
        return scrub(format_warning(*args, **kwargs))

    formatwarning.scrubs = True
    return formatwarning


def _print_scrubbed(exc_type, exc, tb) -> None:
    sys.stderr.write(scrub("".join(traceback.format_exception(exc_type, exc, tb))))


def _thread_excepthook(args) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "thread"
    sys.stderr.write(f"Exception in {name}:\n")
    _print_scrubbed(args.exc_type, args.exc_value, args.exc_traceback)


def install_log_scrubber() -> None:
    """Scrub every line the process prints (idempotent): every log record as it is made, whichever logger and
    handler (huggingface_hub's and transformers' own handlers included), Python warnings and the tracebacks of
    uncaught exceptions, in the main thread and in others."""
    if not getattr(logging.getLogRecordFactory(), "scrubs", False):
        logging.setLogRecordFactory(_scrubbing_factory(logging.getLogRecordFactory()))
    if not getattr(warnings.formatwarning, "scrubs", False):
        warnings.formatwarning = _scrubbing_formatwarning(warnings.formatwarning)
    sys.excepthook = _print_scrubbed
    threading.excepthook = _thread_excepthook
