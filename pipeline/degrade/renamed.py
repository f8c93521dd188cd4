"""Override keys of `degrade:` from before presets were data, and their spellings now.

Until presets became YAML data (8814b37) the final step was one group, `degrade.final`, with six
keys; it is now the group `final` (its order) and three steps of its own. bsrgan's first resize
read only the low end of `degrade.resize1.scale_range`; it is now a `shrink` step with `min_scale`.

An old key fails with one line naming its new spelling rather than being accepted with a warning:
two of the seven are not renames but new values (`resize_first_prob: p` becomes an `order_probs`
mapping, bsrgan's `scale_range: [lo, hi]` its `lo`), the new names exist only in the presets that
have those steps (a preset file may call its steps anything), and a warning in a DVC stage's log
goes unseen while params.yaml, `dvc params diff` and experiment tables keep the old spelling.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pipeline.params import ParamsError

# (old step, old key) → (new step, new key, how the value changes; None: the same value)
RENAMED: dict[tuple[str, str], tuple[str, str, str | None]] = {
    ("final", "interps"): ("resize_final", "interps", None),
    ("final", "sinc_prob"): ("sinc_final", "prob", None),
    ("final", "size_range"): ("sinc_final", "size_range", None),
    ("final", "omega_range"): ("sinc_final", "omega_range", None),
    ("final", "jpeg_quality_range"): ("jpeg_final", "quality_range", None),
    ("final", "resize_first_prob"): ("final", "order_probs",
                                     "{resize_sinc_jpeg: p, jpeg_resize_sinc: 1 - p}"),
    ("resize1", "scale_range"): ("resize1", "min_scale", "the low end of the old [lo, hi]"),
}


def check_renamed(overrides: Mapping[str, Any], fields: Callable[[str], set[str] | None],
                  preset: str) -> None:
    """Raise ParamsError for the first old key in `overrides` that the preset's step does not take.

    fields(step): the keys step `step` of the preset takes (None: no such step), so a preset file
    whose own step has a key of that name keeps it. The message is `<step>.<key>: renamed — use
    degrade.<new step>.<new key>`, plus how the value changes and whether the preset has that step.
    """
    for name, over in overrides.items():
        if not isinstance(over, Mapping):
            continue
        for key in over:
            new = RENAMED.get((name, key))
            own = fields(name)
            if new is None or (own is not None and key in own):
                continue
            step, new_key, how = new
            text = f"renamed — use degrade.{step}.{new_key}" + (f" ({how})" if how else "")
            if fields(step) is None or new_key not in (fields(step) or ()):
                text += f"; the {preset} preset has no step {step} with {new_key}"
            raise ParamsError(f"{name}.{key}: {text}")
