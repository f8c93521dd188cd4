"""Presets as data: an ordered pipeline of steps, each with its probability and parameter ranges, in YAML.

    name: realesrgan-x4plus          # stored in every recipe
    scale: 4                         # the preset's SR factor (overridden by `scale`)
    steps:                           # in order; each a step (`steps.py`, `userops.py`) or a group
      - {name: usm, op: usm, size: 51, weight: 0.5, threshold: 10.0}
      - {name: blur1, op: blur, prob: 1.0, ...}
      - name: final                  # a group: its steps in an order drawn per sample
        order: choice                # fixed | shuffle | choice
        steps: [...]
        orders: {resize_sinc_jpeg: [resize_final, sinc_final, jpeg_final], jpeg_resize_sinc: [...]}
        order_probs: {resize_sinc_jpeg: 0.5, jpeg_resize_sinc: 0.5}

Group orders, and how they consume the recipe generator:
- `fixed`: the steps in the listed order;
- `shuffle`: a permutation first (`rng.permutation`), then each pair in `before` ([a, b]: a runs
  before b) swapped into order, then the steps drawn in that order (bsrgan);
- `choice`: the steps drawn in the listed order, then one u picks an order of `orders` by
  `order_probs` (Real-ESRGAN's final step).
`repeat: n` (n > 1) draws the group n times, its step names suffixed 1..n (`blur` → `blur1`..);
groups sit in the top-level list only. A recipe's `order` is the label of each drawn order (a
choice's name; a shuffle's step names joined by ','), joined by ';'; `fixed` when there is none.

Built-ins live in `presets/<name>.yaml`, written by `dump_preset` (so `realsynth recipes` writes the
very bytes back as `preset.yaml`). Overrides from params.yaml merge into the step (or group) of the
same name, key by key (`pipeline.params.merge`).
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import Field

from pipeline.config import check_scale
from pipeline.params import Float, Int, Model, ParamsError, Str, build, invalid, merge, read_yaml, to_dict

from .renamed import check_renamed
from .steps import OPS, LearnedStep, StepBase
from .userops import UserStep, is_user_op

PRESET_DIR = Path(__file__).parent / "presets"
PRESETS = ("realesrgan-x4plus", "realesrgan-x2plus", "bsrgan", "video", "camera", "web")
HEADER = "# realsynth degradation preset: an ordered pipeline of steps (README, \"Degradation\")\n"


class Group(Model):
    """Steps whose order is drawn per sample (see the module docstring)."""
    name: Str
    order: Literal["fixed", "shuffle", "choice"] = "fixed"
    repeat: Int = Field(1, ge=1)
    steps: tuple[Any, ...] = Field(min_length=1)      # parsed step models (`parse_step`)
    before: tuple[tuple[Str, Str], ...] = ()          # shuffle: pairs kept in this order
    orders: Optional[dict[Str, tuple[Str, ...]]] = None  # choice: label → step names
    order_probs: Optional[dict[Str, Float]] = None       # choice: label → probability (sum 1)


Item = Union[StepBase, Group]


@dataclass(frozen=True)
class Preset:
    """A validated preset: what the sampler reads (`draw.sample_recipe`)."""
    name: str
    scale: int
    items: tuple[Item, ...]

    def step(self, name: str) -> StepBase | Group | None:
        """The step or group called `name` (inside groups too), else None."""
        for item in self.items:
            if item.name == name:
                return item
            for step in item.steps if isinstance(item, Group) else ():
                if step.name == name:
                    return step
        return None

    def names(self) -> list[str]:
        return [n for item in self.items for n in ([item.name] + [s.name for s in getattr(item, "steps", ())])]

    @property
    def has_user_ops(self) -> bool:
        return any(isinstance(s, (UserStep, LearnedStep)) for item in self.items for s in getattr(item, "steps", (item,)))

    def to_data(self) -> dict[str, Any]:
        """Plain YAML-able data; `parse_preset` of it gives this preset back."""
        return {"name": self.name, "scale": self.scale, "steps": [_item_data(i) for i in self.items]}


def _item_data(item: Item) -> dict[str, Any]:
    data = {k: v for k, v in to_dict(item).items() if v is not None and not (k == "before" and not v)}
    if isinstance(item, UserStep):  # each range as its one given kind ({uniform: [lo, hi]}), not four keys
        data["params"] = {k: {kind: v for kind, v in r.items() if v is not None} for k, r in data["params"].items()}
    if isinstance(item, Group):
        data["steps"] = [_item_data(s) for s in item.steps]
        if item.repeat == 1:
            del data["repeat"]
    head = {k: data.pop(k) for k in ("name", "op", "order") if k in data}
    return {**head, **data}


# ---- parsing ------------------------------------------------------------------------------------

def parse_step(data: Any, where: str) -> StepBase:
    """One step: `op` picks a built-in model (`steps.OPS`) or, as `module:function`, a user op."""
    op = data.get("op") if isinstance(data, Mapping) else None
    name = data.get("name", "?") if isinstance(data, Mapping) else "?"
    if op not in OPS and not is_user_op(op):
        raise ParamsError(f"{where}{name}.op: expected one of {list(OPS)} or 'module:function', got {op!r}")
    return build(UserStep if is_user_op(op) else OPS[op], data, f"{where}{name}")


def parse_group(data: Mapping, where: str) -> Group:
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ParamsError(f"{where}{data.get('name', '?')}.steps: expected a non-empty list of steps, got {steps!r}")
    group = build(Group, {**data, "steps": [parse_step(s, where) for s in steps]}, f"{where}{data.get('name')}")
    names = [s.name for s in group.steps]
    at = f"{where}{group.name}"
    for a, b in group.before:
        if a not in names or b not in names:
            raise ParamsError(f"{at}.before: expected step names of the group {names}, got {[a, b]}")
    if group.order == "choice":
        if not group.orders or set(group.orders) != set(group.order_probs or {}):
            raise ParamsError(f"{at}: a choice group needs `orders` and `order_probs` with the same labels")
        for label, order in group.orders.items():
            if "," in label or ";" in label:  # a recipe's `order` joins labels with ';', shuffled names with ','
                raise ParamsError(f"{at}.orders: a label may not contain ',' or ';', got {label!r}")
            if sorted(order) != sorted(names):
                raise ParamsError(f"{at}.orders.{label}: expected an order of {names}, got {list(order)}")
        probs = list(group.order_probs.values())
        if any(p < 0 or p > 1 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
            raise ParamsError(f"{at}.order_probs: expected probabilities in [0, 1] summing to 1.0, got {probs}")
    elif group.orders is not None or group.order_probs is not None:
        raise ParamsError(f"{at}.orders: only a choice group has orders; remove it")
    if group.before and group.order != "shuffle":
        raise ParamsError(f"{at}.before: only a shuffle group has before; remove it")
    return group


def parse_preset(data: Any, where: str = "") -> Preset:
    """A `Preset` from plain data. `where` prefixes every error (`'degrade.'`, `'my.yaml: '`).
    Raises ParamsError, one line naming the key."""
    if not isinstance(data, Mapping):
        raise ParamsError(f"{where}: expected a preset mapping (name, scale, steps), got {data!r}")
    unknown = sorted(set(data) - {"name", "scale", "steps"})
    if unknown:
        raise ParamsError(f"{where}{unknown[0]}: unknown key; allowed keys: ['name', 'scale', 'steps']")
    name, scale, steps = data.get("name"), data.get("scale", 4), data.get("steps")
    if not isinstance(name, str) or not name:
        raise ParamsError(f"{where}name: expected the preset's name, got {name!r}")
    if type(scale) is not int:
        raise ParamsError(f"{where}scale: expected an integer, got {scale!r}")
    try:
        check_scale("scale", scale)
    except ParamsError as err:
        raise ParamsError(f"{where}{err}") from None
    if not isinstance(steps, list) or not steps:
        raise ParamsError(f"{where}steps: expected a non-empty list of steps, got {steps!r}")
    items = tuple(parse_group(s, where) if isinstance(s, Mapping) and "steps" in s else parse_step(s, where)
                  for s in steps)
    preset = Preset(name, scale, items)
    names = [n for n in _recipe_names(preset)]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ParamsError(f"{where}steps: step name {dup!r} used twice; names must be unique")
    return preset


def _recipe_names(preset: Preset) -> list[str]:
    """Every name a recipe of `preset` may hold (repeated groups' steps suffixed)."""
    out = []
    for item in preset.items:
        if isinstance(item, Group):
            out.append(item.name)
            out += [s.name + (str(k) if item.repeat > 1 else "") for k in range(1, item.repeat + 1) for s in item.steps]
        else:
            out.append(item.name)
    return out


# ---- files, built-ins, overrides ----------------------------------------------------------------

@functools.lru_cache(maxsize=16)
def _read(path: str, mtime_ns: int) -> Any:
    return read_yaml(path)


def preset_data(preset: str) -> tuple[Any, str]:
    """(plain data, where errors point) of a built-in name or a preset file.
    Raises ParamsError when it is neither."""
    path = PRESET_DIR / f"{preset}.yaml" if preset in PRESETS else Path(preset)
    if not path.is_file():
        raise invalid("preset", f"expected one of {list(PRESETS)} or a preset file, got {preset!r}")
    return _read(str(path), path.stat().st_mtime_ns), ("" if preset in PRESETS else f"{path}: ")


def apply_overrides(preset: Preset, overrides: Mapping[str, Any]) -> Preset:
    """`preset` with each override merged into the step or group of its name, then validated again.
    Raises ParamsError naming `<name>` for a name the preset lacks, `<name>.<key>` for a bad value
    or a key from before presets were data (`renamed.py`: the line names its new spelling)."""
    if not overrides:
        return preset
    check_renamed(overrides, lambda n: None if (s := preset.step(n)) is None else set(type(s).model_fields),
                  preset.name)
    known = preset.names()
    for name in overrides:
        if name not in known:
            raise ParamsError(f"{name}: not a step of the {preset.name} preset; its steps: {known}")
    data = preset.to_data()
    for item in data["steps"]:
        _merge_entry(item, overrides)  # a group first: its merge copies its steps, then each step's own
        for entry in item["steps"] if "order" in item else []:
            _merge_entry(entry, overrides)
    return parse_preset(data)


def _merge_entry(entry: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Merge the override of `entry`'s name (if any) into the step or group data `entry`, in place."""
    over = overrides.get(entry["name"])
    if isinstance(over, Mapping):
        fixed = next((k for k in ("name", "op", "steps") if k in over), None)
        if fixed is not None:
            raise ParamsError(f"{entry['name']}.{fixed}: set by the preset, not overridable; "
                              "write a preset file to change it")
        cls = OPS.get(entry.get("op"), UserStep if "op" in entry else Group)
        entry.update(merge(cls, entry, over))
    elif over is not None:
        raise ParamsError(f"{entry['name']}: expected a mapping of keys, got {over!r}")


def load_preset(preset: str, overrides: Mapping[str, Any] | None = None) -> Preset:
    """A built-in preset or a preset file, with `overrides` (params.yaml's step keys) merged in.
    Raises ParamsError: a file error as `preset: <file>: <key>: ...`, an override's as `<key>: ...`."""
    data, where = preset_data(preset)
    try:
        base = parse_preset(data, where)
    except ParamsError as err:
        raise invalid("preset", str(err)) from None
    return apply_overrides(base, overrides or {})


def preset_settings(name: str) -> Preset:
    """The built-in preset `name`. Raises ValueError on an unknown name."""
    if name not in PRESETS:
        raise ValueError(f"unknown degradation preset {name!r}; choose from {list(PRESETS)}")
    return load_preset(name)


def dump_preset(preset: Preset) -> str:
    """The preset as YAML text (a fixed header, flow-style leaves); `parse_preset(read(text))` is `preset`."""
    import yaml
    return HEADER + yaml.safe_dump(preset.to_data(), sort_keys=False, default_flow_style=None, width=120,
                                   allow_unicode=True)
