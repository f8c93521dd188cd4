"""Typed, validated params: the generic machinery behind `pipeline.config`.

Every params.yaml section is a frozen dataclass. `build(cls, data, where)` turns a plain mapping
into one, recursively, and fails with one line naming the dotted key, the bad value and what is
allowed: an unknown key, a wrong type, or a value that the dataclass's own `validate()` rejects.

    @dataclass(frozen=True)
    class Noise:
        sigma_range: tuple[float, float] = (1.0, 30.0)
        def validate(self, where: str) -> None:
            check_interval(f"{where}.sigma_range", self.sigma_range, lo=0.0)
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ParamsError(ValueError):
    """An invalid parameter; the message is one line: `<key>: expected ..., got ...`."""


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file exactly as DVC parses params.yaml: ruamel.yaml's `YAML(typ="safe")`, YAML 1.2.

    One reading for both, so `dvc params diff`, `${...}` in dvc.yaml and `dvc exp run -S` see the values
    the stages see: `1e-3` is a float, `yes`/`no`/`on`/`off` are strings, `017` is 17 and `0o17` is 15,
    `1:30` is a string, and a duplicate key is an error (PyYAML's `safe_load` is YAML 1.1 on all of them).
    Raises ParamsError, one line naming the file, the problem and its line, on text that is not YAML.
    """
    from ruamel.yaml import YAML, YAMLError  # DVC's own parser, imported only where a file is read

    path = Path(path)
    try:
        return YAML(typ="safe").load(path.read_text())
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ParamsError(f"{path}: not valid YAML: {' '.join(str(problem).split())}{where}") from None


def build(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """Build dataclass `cls` from `data` (missing keys take defaults), then call its `validate`."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ParamsError(f"{where}: expected a mapping of keys, got {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(f"{_join(where, unknown[0])}: unknown key; allowed keys: {sorted(fields)}")
    kwargs = {name: coerce(hints[name], data[name], _join(where, name)) for name in fields if name in data}
    obj = cls(**kwargs)
    validate(obj, where)
    return obj


def validate(obj: Any, where: str) -> None:
    """Run `validate(where)` on a dataclass and, recursively, on its dataclass fields."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            validate(value, _join(where, f.name))
    hook = getattr(obj, "validate", None)
    if callable(hook):
        hook(where)


def coerce(tp: Any, value: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`, converting lists to tuples and ints to floats."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(option, value, where)
            except ParamsError as err:
                errors.append(str(err))
        raise ParamsError(errors[0] if len(errors) == 1 else f"{where}: expected {_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ParamsError(f"{where}: expected one of {list(allowed)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ParamsError(f"{where}: expected a list {_name(tp)}, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ParamsError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (dict, Mapping):
        key_t, val_t = get_args(tp) or (Any, Any)
        if not isinstance(value, Mapping):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        return {coerce(key_t, k, where): coerce(val_t, v, _join(where, str(k))) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ParamsError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is Path:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ParamsError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported annotation {tp!r}")


# ---- checks for validate() hooks: each raises ParamsError naming the key ----

def check_range(where: str, value: float, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> None:
    """`lo <= value <= hi` (strict where `*_open`)."""
    bad = (lo is not None and (value <= lo if lo_open else value < lo)) or (
        hi is not None and (value >= hi if hi_open else value > hi))
    if bad:
        left = "" if lo is None else f"{lo} {'<' if lo_open else '<='} "
        right = "" if hi is None else f" {'<' if hi_open else '<='} {hi}"
        raise ParamsError(f"{where}: expected {left}value{right}, got {value!r}")


def check_interval(where: str, pair: Sequence[float], lo: float | None = None, hi: float | None = None) -> None:
    """`[a, b]` with `lo <= a <= b <= hi`."""
    a, b = pair
    if a > b or (lo is not None and a < lo) or (hi is not None and b > hi):
        bounds = f"{'' if lo is None else f'{lo} <= '}lo <= hi{'' if hi is None else f' <= {hi}'}"
        raise ParamsError(f"{where}: expected [lo, hi] with {bounds}, got {list(pair)}")


def check_choice(where: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ParamsError(f"{where}: expected one of {list(choices)}, got {value!r}")


def check_probabilities(where: str, probs: Sequence[float], total: float | None = 1.0) -> None:
    """Each in [0, 1]; where `total` is given, they sum to it (to 1e-6)."""
    if any(p < 0 or p > 1 for p in probs) or (total is not None and abs(sum(probs) - total) > 1e-6):
        need = f"probabilities in [0, 1]{'' if total is None else f' summing to {total}'}"
        raise ParamsError(f"{where}: expected {need}, got {list(probs)}")


def check_odd(where: str, value: int, lo: int = 1, hi: int | None = None) -> None:
    if value % 2 == 0 or value < lo or (hi is not None and value > hi):
        raise ParamsError(f"{where}: expected an odd integer in [{lo}, {hi if hi is not None else 'inf'}], got {value!r}")


def to_dict(obj: Any) -> Any:
    """A dataclass as plain YAML/JSON-able data (tuples → lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
