"""The `degrade:` section of params.yaml: a preset (built-in name or YAML file), the user's step
overrides merged in, then validated.

    degrade:
      preset: realesrgan-x4plus      # or a preset file, e.g. presets/mine.yaml (`preset.py`)
      variants: 1
      blur2: {sigma_range: [0.2, 1.0]}   # any key given here replaces the preset step's value

Every key that is not one of this model's own fields names a step (or group) of the preset and is
merged into it key by key (`pipeline.params.merge`: a mapping value such as `kernel_probs` is
replaced whole); the result is validated again, so `.settings` is the complete `Preset` the sampler
reads. Any problem is one `ParamsError` line naming the dotted key (`degrade.noise1.sigma_range: ...`;
a preset file's own errors as `degrade.preset: <file>: <key>: ...`).
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.config import check_scale
from pipeline.params import Int, Model, ParamsError, Str, invalid

from .preset import PRESETS, Preset, load_preset, preset_settings

Settings = Preset  # what the sampler reads (the name of the public API before presets were data)
__all__ = ["DegradeConfig", "Settings", "preset_settings", "check_scale", "PRESETS"]


class DegradeConfig(Model):
    preset: Str = "realesrgan-x4plus"     # a built-in name (PRESETS) or a preset YAML file
    variants: Int = Field(1, ge=1)        # LR variants per HR tile
    backend: Literal["auto", "dali", "reference"] = "auto"  # auto: DALI on a GPU, else reference workers
    batch_size: Int = Field(32, ge=1)     # samples per DALI batch / per worker task
    workers: Int = Field(0, ge=0)         # reference-backend processes (0 = all cores)
    shard_bytes: Int = Field(256 << 20, ge=1)  # target tar shard size
    examples: Int = Field(8, ge=0)        # HR/LR pairs on the report's contact sheet
    engine: Literal["local", "ray"] = "local"  # ray: tasks on the Ray cluster at RAY_ADDRESS (`ray_engine.py`)
    retries: Int = Field(3, ge=0)         # ray: runs of a task again after its worker dies or it raises OSError
    steps: dict[Str, Any] = {}            # the step overrides (params.yaml writes them as keys of degrade:)

    @model_validator(mode="before")
    @classmethod
    def _overrides(cls, data: Any) -> Any:
        """Every key that is not a field of this model is a step override, kept in `steps`."""
        if not isinstance(data, Mapping):
            return data
        own = {k: v for k, v in data.items() if k in cls.model_fields and k != "steps"}
        if "steps" in data:
            raise invalid("steps", "not a key of degrade:; override a step by its name (degrade.<step>: {...})")
        return {**own, "steps": {k: v for k, v in data.items() if k not in cls.model_fields}}

    @model_validator(mode="after")
    def _resolve(self) -> DegradeConfig:
        try:
            preset = load_preset(self.preset, self.steps)
        except ParamsError as err:
            if err.key is not None:
                raise
            key, _, text = str(err).partition(": ")
            raise invalid(key, text) from None
        if self.backend == "dali":
            from .dali_backend import graph_problem
            problem = graph_problem(preset)
            if problem:
                raise invalid("backend", f"expected 'auto' or 'reference' with the {preset.name} preset "
                                         f"({problem}), got 'dali'")
        self.__dict__["settings"] = preset
        return self

    @functools.cached_property
    def settings(self) -> Preset:
        """The complete preset the sampler reads (resolved when the config was validated)."""
        return load_preset(self.preset, self.steps)

    def check_deps(self, presets: Path) -> None:
        """Raise ParamsError unless the preset file and its user-op modules lie in `presets`
        (`paths.presets`, a DVC dependency of degrade; `deps.py`)."""
        from .deps import check_deps
        check_deps(self.preset, self.settings, presets)

    def to_dict(self) -> dict[str, Any]:
        """As params.yaml writes it: the step overrides as keys of the section."""
        out = super().to_dict()
        return {**{k: v for k, v in out.items() if k != "steps"}, **out["steps"]}
