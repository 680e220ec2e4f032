"""The one config machinery of the toolkit: settings are dataclasses whose fields carry their documentation and their
valid range (`doc`), and whose types drive validation - ``int``, ``float`` (finite), ``str``, ``bool``, ``list`` /
``tuple[X, ...]``, ``Path``, a choice (``Literal``), optionally ``| None``, a nested section (another such dataclass).
`sppo-train` (`sppo.config.Config`), `sppo-bench` (`benchmarks.config.BenchConfig`) and the settings of
`sppo-bench score`, `sppo-bench table` and `sppo-release` are all built and checked here.

    doc(text, default, ge=, gt=, le=, lt=)   a documented field and its range
    from_mapping(cls, data, source)          a settings object from a YAML mapping (unknown keys refused,
                                             numbers written as strings coerced, lists as tuples, paths as Path)
    check(obj)                               every field's type, choice and range, sections included
    SettingError                             the one error spelling: ``<field>: <problem>``; `located` puts the
                                             file (or the flag, or the override) in front: ``<where>: <field>:
                                             <problem>``
    read_yaml_mapping(path)                  a YAML file whose top level is a mapping

Rules between fields (``first_iteration <= iterations``, ...) stay with each settings class, raising `SettingError`
too.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import UserError, io_failure, shown
from .files import load_yaml

_TYPE_NAMES = {"str": "a string", "int": "an integer", "float": "a finite number", "bool": "true or false",
               "list": "a list", "tuple": "a list", "dict": "a mapping", "Path": "a path"}


@dataclass(frozen=True)
class Range:
    """A number field's valid range: bounds ``ge`` / ``gt`` below, ``le`` / ``lt`` above (None: unbounded)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def holds(self, x: float) -> bool:
        return ((self.ge is None or x >= self.ge) and (self.gt is None or x > self.gt)
                and (self.le is None or x <= self.le) and (self.lt is None or x < self.lt))

    def text(self) -> str:
        """``>= 1``, ``> 0``, ``in [0, 1)``, ``in (0, 1]``, ``<= 10``."""
        low = (f"[{_g(self.ge)}" if self.ge is not None else f"({_g(self.gt)}" if self.gt is not None else None)
        high = (f"{_g(self.le)}]" if self.le is not None else f"{_g(self.lt)})" if self.lt is not None else None)
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">= " if low[0] == "[" else "> ") + low[1:]
        return ("<= " if high[-1] == "]" else "< ") + high[:-1]


def _g(x: float) -> str:
    return f"{x:g}"


def doc(text: str, default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
        le: float | None = None, lt: float | None = None, **kw):
    """A dataclass field with its documentation (shown by ``--print-config`` and ``--help``) and, for a number,
    its valid range."""
    metadata = {"doc": text}
    if (ge, gt, le, lt) != (None, None, None, None):
        metadata["range"] = Range(ge, gt, le, lt)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=metadata, **kw)
    return dataclasses.field(default=default, metadata=metadata, **kw)


def section(cls: type, text: str):
    """A nested section of settings, documented."""
    return dataclasses.field(default_factory=cls, metadata={"doc": text})


def choices(choice_type: Any) -> tuple[str, ...]:
    """The values of a choice type (a ``Literal``, or an optional one)."""
    if get_origin(choice_type) in (Union, UnionType):
        return next(choices(a) for a in get_args(choice_type) if a is not type(None))
    return get_args(choice_type)


class SettingError(UserError):
    """A bad setting: ``<field>: <problem>``; ``field`` is its dotted name (``training.lora.r``)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem

    def located(self, where: str) -> UserError:
        """The same error naming where the value came from: ``<where>: <field>: <problem>``."""
        return UserError(f"{where}: {self}")


# --- types --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Kind:
    """A field's declared type, taken apart: its main kind (int, float, str, bool, list, tuple, Path, choice,
    section), whether None is allowed, the choices of a Literal, the kind of a tuple's items."""

    name: str
    optional: bool
    options: tuple = ()
    item: "_Kind | None" = None
    section: type | None = None


def _kind(declared: Any) -> _Kind:
    members = get_args(declared) if get_origin(declared) in (Union, UnionType) else (declared,)
    optional = type(None) in members
    main = next((m for m in members if m is not type(None)), type(None))
    origin = get_origin(main)
    if origin is Literal:
        return _Kind("choice", optional, get_args(main))
    if origin is tuple:
        return _Kind("tuple", optional, item=_kind(get_args(main)[0]))
    if dataclasses.is_dataclass(main):
        return _Kind("section", optional, section=main)
    return _Kind(getattr(origin or main, "__name__", str(main)), optional)


def kinds(cls: type) -> dict[str, _Kind]:
    """Every field's declared type, by name."""
    hints = get_type_hints(cls)
    return {f.name: _kind(hints[f.name]) for f in fields(cls)}


def _type_ok(value: Any, kind: _Kind) -> bool:
    if kind.name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind.name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind.name in ("str", "choice"):
        return isinstance(value, str) or (kind.name == "choice" and isinstance(value, bool))
    if kind.name == "tuple":
        return isinstance(value, tuple) and all(_type_ok(v, kind.item) for v in value)
    return isinstance(value, {"bool": bool, "list": list, "dict": dict, "Path": Path}.get(kind.name, object))


def _choice_problem(value: Any, kind: _Kind) -> str | None:
    """A choice field's problem, if any. YAML reads true/false as booleans: a choice compares them as
    'true' / 'false'."""
    text = str(value).lower() if isinstance(value, bool) else value
    if text in kind.options:
        return None
    return f"unknown value {shown(value)}; use {', '.join(kind.options)}"


def check(obj: Any, prefix: str = "") -> None:
    """Every field of `obj` holds a value of its declared type, one of its choices, inside its range; sections
    are checked in turn. Raises SettingError naming the first bad field."""
    for f, kind in zip(fields(obj), kinds(type(obj)).values()):
        value, name = getattr(obj, f.name), f"{prefix}{f.name}"
        if kind.name == "section":
            if not dataclasses.is_dataclass(value):
                raise SettingError(name, f"must be a mapping, got {shown(value)}")
            check(value, name + ".")
            continue
        if value is None and kind.optional:
            continue
        if not _type_ok(value, kind):
            what = _TYPE_NAMES.get(kind.item.name if kind.name == "tuple" and isinstance(value, tuple)
                                   else kind.name, "one of " + ", ".join(kind.options))
            if kind.name == "tuple" and isinstance(value, tuple):
                what = f"a list of {what.split(' ', 1)[1]}s"
            raise SettingError(name, f"must be {what}, got {shown(value)}")
        items = value if kind.name == "tuple" else (value,)
        for v in items:
            sub = kind.item if kind.name == "tuple" else kind
            problem = _choice_problem(v, sub) if sub.name == "choice" else None
            if problem:
                raise SettingError(name, problem)
        bounds = f.metadata.get("range")
        if bounds is not None and not bounds.holds(value):
            raise SettingError(name, f"must be {bounds.text()}, got {shown(value)}")


# --- building -----------------------------------------------------------------------------------------------------

def from_mapping(cls: type, data: Any, source: str, prefix: str = "", unknown_hint: str = "") -> Any:
    """A `cls` from a mapping (a YAML file's sections): unknown keys refused, each value read as its field's type
    (`coerce`). Errors name ``source`` and the dotted key; nothing is range-checked here (`check`)."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: {shown(prefix.rstrip('.') or 'top level', 200)} must be a mapping")
    known = kinds(cls)
    kwargs = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise UserError(f"{source}: unknown key {shown(name, 200)}{unknown_hint}")
        kind = known[key]
        if kind.name == "section":
            kwargs[key] = from_mapping(kind.section, value or {}, source, name + ".", unknown_hint)
        else:
            try:
                kwargs[key] = coerce(kind, value)
            except SettingError as e:
                raise SettingError(name, e.problem).located(source) from None
    return cls(**kwargs)


def coerce(kind: _Kind, value: Any) -> Any:
    """A value read (from YAML or a flag) as its field's type: a number field takes numbers and numbers written as
    strings (YAML 1.1 reads ``1e-6`` as a string) as its own type (``10`` as ``10.0`` for a float, ``2.0`` as ``2``
    for an integer), a tuple field a list, a path field a string. Null for a field that takes none, a non-number for
    a number field and a non-boolean for a boolean are refused here; anything else is left for `check` to name."""
    if value is None or isinstance(value, bool):
        if value is None and not kind.optional:
            raise SettingError("", "cannot be null")
        return value
    if kind.name in ("float", "int") and isinstance(value, (str, int, float)):
        try:
            if kind.name == "float":
                return float(value)
            if float(value) == int(float(value)):
                return int(float(value))
        except (ValueError, OverflowError):
            pass
        raise SettingError("", f"must be {'a number' if kind.name == 'float' else 'an integer'}, got {shown(value)}")
    if kind.name == "bool":
        raise SettingError("", f"must be true or false, got {shown(value)}")
    if kind.name == "tuple" and isinstance(value, list):
        return tuple(coerce(kind.item, v) if v is not None else v for v in value)
    if kind.name == "Path" and isinstance(value, (str, os.PathLike)):
        return Path(value)
    return value


def flag(name: str) -> str:
    """A field's command-line flag: ``judge_base_url`` -> ``--judge-base-url``."""
    return "--" + name.replace("_", "-")


def from_flags(cls: type, values: dict[str, Any], positional: tuple[str, ...] = ()) -> Any:
    """A `cls` from parsed command-line values (an argparse namespace's ``vars``; names that are no field of `cls`
    are ignored), each read as its field's type and checked; a bad one is one line naming its flag (``--num-rounds:
    must be >= 1, got 0``), or its name for a positional argument."""
    known = kinds(cls)
    try:
        built = {}
        for k, v in values.items():
            if k in known and not (v is None and not known[k].optional):  # an absent flag: the field's default
                try:
                    built[k] = coerce(known[k], v)
                except SettingError as e:
                    raise SettingError(k, e.problem) from None
        obj = cls(**built)
        check(obj)
        return obj
    except SettingError as e:
        raise UserError(f"{e.field if e.field in positional else flag(e.field)}: {e.problem}") from None


def read_yaml_mapping(path: Path) -> dict:
    """A YAML file whose top level is a mapping (empty file: {}); anything else is one line naming the file."""
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), str(path))  # bounded: no alias bomb, no deep nesting
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file (byte {e.start})") from None
    except OSError as e:
        raise io_failure(e, path) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config must be a YAML mapping of sections, got {type(data).__name__} {shown(data)}")
    return data


def documented_yaml(obj: Any) -> str:
    """The settings as YAML with each field's documentation as a comment above it."""
    lines: list[str] = []

    def emit(o, indent: int) -> None:
        for f in fields(o):
            value = getattr(o, f.name)
            pad = "  " * indent
            lines.append(f"{pad}# {f.metadata.get('doc', '')}")
            if dataclasses.is_dataclass(value):
                lines.append(f"{pad}{f.name}:")
                emit(value, indent + 1)
            else:
                dumped = yaml.safe_dump({f.name: value}, default_flow_style=True, width=1000).strip()
                lines.append(f"{pad}{dumped[1:-1] if dumped.startswith('{') else dumped}")

    emit(obj, 0)
    return "\n".join(lines) + "\n"


def help_of(cls: type, name: str) -> str:
    """A field's documentation (its ``--help`` text)."""
    return next(f.metadata["doc"] for f in fields(cls) if f.name == name)
