"""Typed, validated params: the generic machinery behind `pipeline.config`, on pydantic v2.

Every params.yaml section is a `Model`: a frozen pydantic model that refuses unknown keys. Scalars use
the strict aliases below (YAML `1` is no bool, `2.5` no integer, `'3'` no number; an integer is a fine
float), bounds are field constraints, and checks across fields are `model_validator`s that raise
`invalid(key, text)` with the key relative to their model:

    class Noise(Model):
        prob: Prob = 1.0
        sigma_range: Annotated[tuple[Float, Float], interval(lo=0.0)] = (1.0, 30.0)

`build(cls, data, where)` validates a mapping and turns pydantic's report into one `ParamsError` line:
the dotted key (list items as `[i]`), the value and what is allowed. `merge(cls, base, over)` is the
one rule by which a preset or recipe is overridden: a nested section merges key by key, anything else
(a number, a list, a mapping-valued option such as `opts`) is replaced as a whole.
"""
from __future__ import annotations

import copy
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import annotated_types as at
from pydantic import (AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Field, Strict,
                      ValidationError)
from pydantic.fields import FieldInfo

T = TypeVar("T", bound=BaseModel)

Int = Annotated[int, Strict()]                        # not a bool, not 2.0
Float = Annotated[float, Strict(), AllowInfNan(False)]  # an int is taken (as a float); not a bool, not inf
Bool = Annotated[bool, Strict()]                      # true/false only (YAML 1.2 `yes` is a string)
Str = Annotated[str, Strict()]
Prob = Annotated[Float, Field(ge=0.0, le=1.0)]


class ParamsError(ValueError):
    """An invalid parameter; the message is one line: `<key>: expected ..., got ...`."""

    key: str | None = None   # set by `invalid`: the key relative to the model that raised it
    text: str = ""


def invalid(key: str, text: str) -> ParamsError:
    """The error a check raises: `key` relative to the model being validated ('' for the value itself)."""
    err = ParamsError(f"{key}: {text}" if key else text)
    err.key, err.text = key, text
    return err


class Model(BaseModel):
    """A params section: frozen, unknown keys refused, defaults trusted (not re-validated)."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


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
    """Validate `data` as model `cls` (missing keys take defaults); raises one ParamsError line."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ParamsError(f"{where}: expected a mapping of keys, got {data!r}")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise one_line(err, cls, where) from None


def merge(cls: type[BaseModel], base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` (a preset's or recipe's values) with the user's `over` applied, guided by model `cls`.

    A key whose field is a nested model merges key by key (an empty one, YAML `blur2:`, changes
    nothing); any other value replaces the base's as a whole, so a user's `kernel_probs` or `opts`
    is the complete mapping, never a blend of two. Validation comes after, on the result.
    """
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        section = _section(cls, key)
        if section is not None and value is None:
            continue
        if section is not None and isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(section, out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _section(cls: type[BaseModel], key: Any) -> type[BaseModel] | None:
    field = cls.model_fields.get(key) if isinstance(key, str) else None
    tp = field.annotation if field is not None else None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def to_dict(obj: Any) -> Any:
    """A model as plain YAML/JSON-able data (tuples → lists; the checkpoint's config hash reads it)."""
    if isinstance(obj, BaseModel):
        return {name: to_dict(getattr(obj, name)) for name in type(obj).model_fields}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# ---- pydantic's report → one line ----------------------------------------------------------------

_TYPE_TEXT = {"int_type": "an integer", "float_type": "a finite number", "finite_number": "a finite number",
              "bool_type": "true or false", "string_type": "a string", "path_type": "a path",
              "model_type": "a mapping of keys", "dict_type": "a mapping", "tuple_type": "a list"}


def one_line(err: ValidationError, cls: type[BaseModel], where: str) -> ParamsError:
    """The first error (an unknown key first, as a typo explains the rest) as `where.key: text`."""
    errors = err.errors(include_url=False)
    e = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc, kind, value, ctx = tuple(e["loc"]), e["type"], e.get("input"), e.get("ctx") or {}
    tp, meta = _node(cls, loc)
    if kind == "value_error" and isinstance(ctx.get("error"), ParamsError) and ctx["error"].key is not None:
        key, text = ctx["error"].key, ctx["error"].text
        return ParamsError(f"{_dotted(where, loc + ((key,) if key else ()))}: {text}")
    if kind == "missing" and loc and isinstance(loc[-1], int):  # a short list for a fixed-length tuple
        loc, (tp, _) = loc[:-1], _node(cls, loc[:-1])
        text = f"expected a list of {len(get_args(tp))} values"
    elif kind == "too_long" and ctx.get("field_type") == "Tuple" and get_args(tp)[-1:] != (Ellipsis,):
        text = f"expected a list of {ctx['max_length']} values"
    elif kind == "too_short":
        text = f"expected at least {ctx['min_length']} value{'s' * (ctx['min_length'] != 1)}"
    elif kind == "extra_forbidden":
        owner, _ = _node(cls, loc[:-1])
        return ParamsError(f"{_dotted(where, loc)}: unknown key; allowed keys: {sorted(owner.model_fields)}")
    elif kind == "literal_error":
        text = f"expected one of {list(get_args(tp))}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        text = f"expected {_bounds(meta)}"
    elif kind == "missing":
        return ParamsError(f"{_dotted(where, loc)}: missing; this key has no default")
    else:
        text = f"expected {_TYPE_TEXT[kind]}" if kind in _TYPE_TEXT else e["msg"]
    if tp is float and type(value) is int:
        value = float(value)  # as the model holds it
    return ParamsError(f"{_dotted(where, loc)}: {text}, got {value!r}")


def _dotted(where: str, loc: Sequence[Any]) -> str:
    out = where
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "[key]":
            out = f"{out}.{part}" if out else str(part)
    return out


def _strip(tp: Any) -> tuple[Any, list[Any]]:
    """`Annotated[X, ...]` / `X | None` → X and the constraints found on the way."""
    meta: list[Any] = []
    while True:
        if get_origin(tp) is Annotated:
            meta += tp.__metadata__
            tp = tp.__origin__
        elif get_origin(tp) in (Union, types.UnionType):
            tp = next(a for a in get_args(tp) if a is not type(None))
        else:
            break
    flat = [m for x in meta for m in (x.metadata if isinstance(x, FieldInfo) else [x])]
    return tp, flat


def _node(cls: type[BaseModel], loc: Sequence[Any]) -> tuple[Any, list[Any]]:
    """The annotation and constraints that `loc` (pydantic's error location) points at in `cls`."""
    tp, meta = cls, []
    for part in loc:
        tp, _ = _strip(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            field = tp.model_fields[part]
            tp, meta = field.annotation, list(field.metadata)
            continue
        args = get_args(tp)
        if get_origin(tp) is tuple and isinstance(part, int):
            tp = args[0] if args[-1:] == (Ellipsis,) else args[min(part, len(args) - 1)]
        elif get_origin(tp) in (dict, Mapping) and part != "[key]":
            tp = args[1] if args else Any
        meta = []
    base, more = _strip(tp)
    return base, meta + more


def _bounds(meta: Sequence[Any]) -> str:
    """`lo <= value < hi` from a field's annotated-types constraints."""
    lo = hi = None
    lo_open = hi_open = False
    for m in meta:
        if isinstance(m, (at.Ge, at.Gt)):
            lo, lo_open = (m.ge, False) if isinstance(m, at.Ge) else (m.gt, True)
        elif isinstance(m, (at.Le, at.Lt)):
            hi, hi_open = (m.le, False) if isinstance(m, at.Le) else (m.lt, True)
    left = "" if lo is None else f"{lo} {'<' if lo_open else '<='} "
    right = "" if hi is None else f" {'<' if hi_open else '<='} {hi}"
    return f"{left}value{right}"


# ---- checks: functions for validators, and field constraints built on them ----------------------

def check_interval(where: str, pair: Sequence[float], lo: float | None = None, hi: float | None = None) -> None:
    """`[a, b]` with `lo <= a <= b <= hi`."""
    a, b = pair
    if a > b or (lo is not None and a < lo) or (hi is not None and b > hi):
        bounds = f"{'' if lo is None else f'{lo} <= '}lo <= hi{'' if hi is None else f' <= {hi}'}"
        raise invalid(where, f"expected [lo, hi] with {bounds}, got {list(pair)}")


def check_choice(where: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise invalid(where, f"expected one of {list(choices)}, got {value!r}")


def check_odd(where: str, value: int, lo: int = 1, hi: int | None = None) -> None:
    if value % 2 == 0 or value < lo or (hi is not None and value > hi):
        raise invalid(where, f"expected an odd integer in [{lo}, {hi if hi is not None else 'inf'}], got {value!r}")


def constraint(check, *args: Any) -> AfterValidator:
    """Field constraint from a check function: `check("", value, *args)` raises `invalid(...)`."""
    def run(value: Any) -> Any:
        check("", value, *args)
        return value
    return AfterValidator(run)


def interval(lo: float | None = None, hi: float | None = None) -> AfterValidator:
    """Field constraint: a `[lo, hi]` pair, ordered, within the bounds."""
    return constraint(check_interval, lo, hi)


def odd(lo: int = 1, hi: int | None = None) -> AfterValidator:
    """Field constraint: an odd integer in `[lo, hi]` (a kernel size)."""
    return constraint(check_odd, lo, hi)


def around_one() -> AfterValidator:
    """Field constraint: `[lo, hi]` with `0 < lo <= 1 <= hi` (drawn below or above 1)."""
    def check(where: str, pair: Sequence[float]) -> None:
        lo, hi = pair
        if not (0 < lo <= 1 <= hi):
            raise invalid(where, f"expected [lo, hi] with 0 < lo <= 1 <= hi, got {[lo, hi]}")
    return constraint(check)


def distribution(names: Sequence[str], what: str) -> AfterValidator:
    """Field constraint: a mapping from `names` (`what` they are) to probabilities summing to 1
    (names left out: 0)."""
    def check(where: str, probs: Mapping[str, float]) -> None:
        unknown = sorted(set(probs) - set(names))
        if unknown:
            raise invalid(where, f"expected {what} from {list(names)}, got {unknown[0]!r}")
        values = list(probs.values())
        if any(p < 0 or p > 1 for p in values) or abs(sum(values) - 1.0) > 1e-6:
            raise invalid(where, f"expected probabilities in [0, 1] summing to 1.0, got {values}")
    return constraint(check)


def non_empty_path(value: Any) -> Any:
    """Before `Path`: refuse '' (pydantic would read it as '.') and non-strings."""
    if isinstance(value, (str, Path)) and str(value):
        return value
    raise invalid("", f"expected a path, got {value!r}")


PathField = Annotated[Path, BeforeValidator(non_empty_path)]
__all__ = ["Bool", "Float", "Int", "Model", "ParamsError", "PathField", "Prob", "Str", "build",
           "check_choice", "check_interval", "check_odd", "constraint", "distribution", "interval",
           "invalid", "merge", "odd", "around_one", "read_yaml", "to_dict"]
