"""The one config machinery (`sppo.settings`): validation driven by the field types and their declared ranges, one
error spelling for sppo-train, sppo-bench and the typed settings of score, table and release."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from sppo.errors import UserError
from sppo.settings import SettingError, check, choices, doc, from_flags, from_mapping, kinds


@dataclass(frozen=True)
class Toy:
    mode: Literal["a", "b"] = doc("a choice", "a")
    n: int = doc("a count", 1, ge=1)
    p: float | None = doc("a probability", None, gt=0, le=1)
    dirs: tuple[Path, ...] = doc("directories", ())


@pytest.mark.parametrize("values, message", [
    ({"mode": "c"}, "mode: unknown value 'c'; use a, b"),
    ({"n": 0}, "n: must be >= 1, got 0"),
    ({"p": 0.0}, "p: must be in (0, 1], got 0.0"),
    ({"p": float("nan")}, "p: must be a finite number, got nan"),
    ({"n": True}, "n: must be an integer, got True"),
    ({"dirs": ("x", 5)}, "dirs: must be a list of paths, got ('x', 5)"),
])
def test_types_choices_and_ranges_drive_validation(values, message):
    with pytest.raises(SettingError) as e:
        check(Toy(**values))
    assert str(e.value) == message


def test_one_spelling_from_a_file_and_from_flags(tmp_path):
    with pytest.raises(UserError, match=r"^t\.yaml: n: must be an integer, got 'x'$"):
        from_mapping(Toy, {"n": "x"}, "t.yaml")
    with pytest.raises(UserError, match=r"^t\.yaml: unknown key 'm'$"):
        from_mapping(Toy, {"m": 1}, "t.yaml")
    assert from_mapping(Toy, {"n": "3", "dirs": ["d"]}, "t.yaml") == Toy(n=3, dirs=(Path("d"),))
    with pytest.raises(UserError, match=r"^--n: must be >= 1, got 0$"):
        from_flags(Toy, {"n": 0, "unrelated": 1})
    assert from_flags(Toy, {"n": None, "p": "0.5"}) == Toy(p=0.5)  # an absent flag keeps the default


@pytest.mark.parametrize("cls", ["sppo.config.Config", "benchmarks.config.BenchConfig"])
def test_every_choice_field_of_train_and_bench_is_checked_by_its_type(cls):
    """No hand-written list of checks: every Literal field of sppo-train's and sppo-bench's settings refuses a
    value outside its choices, naming the field."""
    import importlib

    module, name = cls.rsplit(".", 1)
    root = getattr(importlib.import_module(module), name)
    base = root(models=("embedded",)) if name == "BenchConfig" else root()
    found = 0

    def walk(obj, prefix):
        nonlocal found
        for f, kind in zip(dataclasses.fields(obj), kinds(type(obj)).values()):
            value = getattr(obj, f.name)
            if kind.name == "section":
                yield from walk(value, f"{prefix}{f.name}.")
            elif kind.name == "choice":
                found += 1
                yield prefix + f.name, dataclasses.replace(obj, **{f.name: "no-such-choice"})

    for dotted, bad in walk(base, ""):
        top = base
        parts = dotted.split(".")
        if len(parts) == 2:
            top = dataclasses.replace(base, **{parts[0]: bad})
        elif len(parts) == 3:
            mid = dataclasses.replace(getattr(base, parts[0]), **{parts[1]: bad})
            top = dataclasses.replace(base, **{parts[0]: mid})
        else:
            top = bad
        with pytest.raises(SettingError) as e:
            top.validate()
        assert e.value.field == dotted and "unknown value 'no-such-choice'" in str(e.value), dotted
    assert found >= (17 if name == "Config" else 4)
    assert choices(Literal["x", "y"] | None) == ("x", "y")
