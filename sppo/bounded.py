"""Bounds on work that input decides: a time limit for a block of Python code, and Jinja templates rendered in a
sandbox with a time and an output-size bound.

A template is code that someone else wrote (a checkpoint's chat template, a model card template given with
``--template``). Jinja's sandbox stops it from reaching Python's internals (``cycler.__init__.__globals__.os``), but
not from looping for ever: ``{% for i in range(100000) %}{% for j in range(100000) %}...`` runs for hours, and
``'x' * 10**10`` asks for 10 GB. So every render of a template the toolkit did not write runs under
``time_limit``, and ``render_template`` also refuses an output past ``max_chars`` and large repetitions before
they are made.

``time_limit`` raises an exception inside the thread running the block when the time is up (CPython's
``PyThreadState_SetAsyncExc``: the running Python code stops at its next instruction, in any thread); code that
spends the whole time in one C call (a single regular expression, one huge allocation) is stopped when that call
returns.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import threading
import time
from typing import Any, Callable, Iterator

from .errors import UserError, first_line

CHAT_TEMPLATE_SECONDS = 10.0  # rendering one conversation takes milliseconds
CARD_TEMPLATE_SECONDS = 30.0
CARD_MAX_CHARS = 2_000_000  # a model card is some tens of kB


class _TimeUp(BaseException):
    """Raised inside the block whose time is up (a BaseException: no ``except Exception`` swallows it)."""


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


class _Watchdog:
    """One daemon thread that raises ``_TimeUp`` in each thread whose time limit has passed (a limit costs a few
    microseconds, not a thread: chat templates are rendered thousands of times)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.limits: dict[int, list] = {}  # id(entry) -> entry: [deadline, thread id, fired]
        self.thread: threading.Thread | None = None

    def start(self, seconds: float, thread_id: int) -> list:
        entry = [time.monotonic() + seconds, thread_id, False]
        with self.cond:
            self.limits[id(entry)] = entry
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="sppo-time-limit", daemon=True)
                self.thread.start()
            self.cond.notify()
        return entry

    def stop(self, entry: list) -> bool:
        """Remove a limit (again: a no-op); True when it fired, its exception withdrawn if not yet raised."""
        with self.cond:
            if self.limits.pop(id(entry), None) is not None and entry[2]:
                _raise_in(entry[1], None)
            return entry[2]

    def _run(self) -> None:
        with self.cond:
            while True:
                now = time.monotonic()
                for entry in self.limits.values():
                    if not entry[2] and entry[0] <= now:
                        entry[2] = True
                        _raise_in(entry[1], _TimeUp)
                waiting = [e[0] for e in self.limits.values() if not e[2]]
                self.cond.wait(min(waiting) - now if waiting else None)


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=lambda: globals().update(_WATCHDOG=_Watchdog()))  # no thread after fork


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Run the block in at most `seconds`; past that it is stopped and UserError(``{what}: took longer than ...``)
    raised. Usable in any thread; nested limits each keep their own time."""
    entry = _WATCHDOG.start(seconds, threading.get_ident())
    try:
        try:
            yield
        finally:
            _WATCHDOG.stop(entry)
    except _TimeUp:
        if not _WATCHDOG.stop(entry):
            raise  # an enclosing limit's: it reports
    if entry[2]:
        raise UserError(f"{what}: took longer than {seconds:g} s (a template that loops?); stopped")


def _too_big(values: Any, limit: int) -> bool:
    """An int argument beyond `limit` (a width, a count): what makes one C call build a huge string."""
    return any(isinstance(v, int) and not isinstance(v, bool) and abs(v) > limit for v in values)


def _wide_format(text: Any, limit: int) -> bool:
    """A format string (``%`` or ``str.format``) naming a width or precision beyond `limit`."""
    return isinstance(text, str) and any(int(run) > limit for run in re.findall(r"\d{7,}", text))


def _bounded_filter(fn: Callable, limit: int) -> Callable:
    @functools.wraps(fn)  # keeps Jinja's pass_context/pass_environment marks
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if _too_big([*args[1:], *kwargs.values()], limit):  # args[0]: the value filtered (or the context)
            from jinja2.exceptions import SecurityError

            raise SecurityError(f"filter {fn.__name__}: an argument larger than {limit}")
        return fn(*args, **kwargs)

    return bounded


def _sandbox(max_chars: int):
    """A Jinja ``SandboxedEnvironment`` that refuses, before making it, anything larger than `max_chars`: a
    repetition (``*``), a power (``**``), a width or count passed to a call or filter (``center(10**9)``), a
    format with such a width (``'%1000000000d' % 1``)."""
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import SandboxedEnvironment

    class Bounded(SandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**", "%"])

        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            self.filters = {name: _bounded_filter(f, max_chars) for name, f in self.filters.items()}

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(left, int) and isinstance(right, int):
                if right > 0 and abs(left) > 1 and right * max(abs(left).bit_length() - 1, 1) > 4 * max_chars:
                    raise SecurityError(f"{left} ** {right} is too large")
            elif operator == "*":
                size = next((len(x) for x in (left, right) if isinstance(x, (str, list, tuple))), 1)
                times = next((x for x in (left, right) if isinstance(x, int) and not isinstance(x, bool)), 1)
                if size * times > max_chars:
                    raise SecurityError(f"a repetition of {size} x {times} is larger than {max_chars}")
            elif operator == "%" and _wide_format(left, max_chars):
                raise SecurityError(f"a format wider than {max_chars}")
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's
            if _too_big([*args, *kwargs.values()], max_chars):
                raise SecurityError(f"a call with an argument larger than {max_chars}")
            return super().call(__context, __obj, *args, **kwargs)

        def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
            if (getattr(value, "__name__", None) in ("format", "format_map")
                    and _wide_format(getattr(value, "__self__", None), max_chars)):
                def refuse(*args: Any, **kwargs: Any) -> str:
                    raise SecurityError(f"a format wider than {max_chars}")

                return refuse
            return super().wrap_str_format(value)

    return Bounded


def render_template(source: str, context: dict[str, Any], name: str, *, max_chars: int = CARD_MAX_CHARS,
                    seconds: float = CARD_TEMPLATE_SECONDS, **options: Any) -> str:
    """`source` rendered with `context` in Jinja's sandbox (no attribute of Python's internals, no ``include``
    or ``import`` of files), within `seconds` and `max_chars`. Any failure is one UserError naming `name` (and
    the template line when Jinja knows it). `options`: Jinja environment options (``trim_blocks``, ...)."""
    import jinja2

    env = _sandbox(max_chars)(loader=None, **options)
    try:
        with time_limit(seconds, name):
            parts, size = [], 0
            for piece in env.from_string(source).generate(**context):
                size += len(piece)
                if size > max_chars:
                    raise UserError(f"{name}: the rendered text is longer than {max_chars} characters; stopped")
                parts.append(piece)
            return "".join(parts)
    except jinja2.TemplateError as e:
        lineno = getattr(e, "lineno", None)
        what = "blocked by the sandbox" if isinstance(e, jinja2.exceptions.SecurityError) else "template error"
        raise UserError(f"{name}{f':{lineno}' if lineno else ''}: {what} ({first_line(e)})") from None
    except (ArithmeticError, ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError,
            MemoryError) as e:
        raise UserError(f"{name}: template error ({type(e).__name__}: {first_line(e)[:200]})") from None
