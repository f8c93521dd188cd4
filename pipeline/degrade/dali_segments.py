"""User ops on the DALI path: the graph cut at a recipe's user ops, each span of stages a DALI graph of
its own (`dali_backend._build_pipeline(span=...)`), each user op run on the CPU in between.

    lrs = run_segmented(samples, run_span, pool)    # what `DaliDegrader.run_prepared` does

A user op is a top-level preset step between Real-ESRGAN's (`graph_problem` refuses one inside a
group). Per sample, `user_op_plan` places each op before a stage of `dali_backend.STAGES`; a span's
graph hands its float32 image (unclipped, unquantized, as between the spec's steps) to the CPU, the
op runs on it exactly as on the reference backend (`userops.apply_user_op`: same params, same seed),
and the next span's graph takes it back through an `external_source`. So the result differs from the
reference backend's only where the graph's own steps do (tests/test_degrade_backends.py).

On a GPU each cut costs a device→host and a host→device copy of the image and one more graph run
per batch; in CPU mode it costs the extra graph runs (bench/README.md, "A user op between DALI
segments").
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

from . import spec
from .recipe import Recipe, UserOp
from .userops import apply_user_op

STAGES = ("usm", "blur1", "resize1", "noise1", "jpeg1", "blur2", "resize2", "noise2", "jpeg2", "final")
END = len(STAGES)
# a recipe step's stage; the final group's three steps are the one stage `final`
STAGE_OF = {**{name: i for i, name in enumerate(STAGES[:-1])},
            "resize_final": END - 1, "sinc_final": END - 1, "jpeg_final": END - 1}

RunSpan = Callable[[Sequence[dict[str, Any]], tuple[int, int], "list[np.ndarray] | None", bool], list[np.ndarray]]


def user_op_plan(recipe: Recipe) -> tuple[tuple[int, UserOp], ...]:
    """(cut, op) for each user op of `recipe`, in order: the op runs before stage STAGES[cut]
    (cut = END: after the last). The cut is the stage of the next graph step the recipe has: the
    stages in between are absent from this recipe (identities in the graph), so any cut among them
    gives the same image, and the next one keeps the plans of one preset few.
    Raises ValueError for a user op between two steps of the final stage."""
    out, pending, last = [], [], None
    for step in recipe.steps:
        if isinstance(step, UserOp):
            pending.append(step)
            continue
        stage = STAGE_OF.get(step.name)
        if stage is None:
            continue  # not a graph step: `check_graph_recipe` refuses the recipe
        if pending and stage == last == END - 1:
            raise ValueError(f"the dali backend runs user ops between stages, not inside the final one "
                             f"({pending[0].name} after {STAGES[-1]}'s {step.name!r})")
        out += [(stage, op) for op in pending]
        pending, last = [], stage
    return tuple(out + [(END, op) for op in pending])


def run_segmented(samples: Sequence[dict[str, Any]], run_span: RunSpan, pool: Executor | None = None) -> list[np.ndarray]:
    """LR tiles ((h, w, 3) uint8) of prepared samples (each with its `_ops` plan), same order.

    Samples with the same cuts run together: `run_span(samples, (a, b), xs, float_out)` runs the
    graph of STAGES[a:b] on them (from their HR when `xs` is None, else from the float32 images
    `xs`), and the user ops at each cut run per sample on `pool` (in this thread when None)."""
    out: list[np.ndarray | None] = [None] * len(samples)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, sample in enumerate(samples):
        groups.setdefault(tuple(sorted({cut for cut, _ in sample["_ops"]})), []).append(i)
    for cuts, idx in groups.items():
        for i, lr in zip(idx, _run_group([samples[i] for i in idx], cuts, run_span, pool)):
            out[i] = lr
    return out


def _run_group(samples: list[dict[str, Any]], cuts: tuple[int, ...], run_span: RunSpan,
               pool: Executor | None) -> list[np.ndarray]:
    xs, at = None, 0
    for cut in cuts + (() if END in cuts else (END,)):
        if at < cut:
            xs = run_span(samples, (at, cut), xs, cut < END or END in cuts)
            at = cut
        if cut in cuts:
            if xs is None:  # a user op before the first stage: it takes the HR as the spec does
                xs = [spec.to_float(sample["hr"]) for sample in samples]
            xs = _map(pool, lambda x, sample: _apply_ops(x, sample["_ops"], cut), xs, samples)
    return [spec.quantize(x) for x in xs] if END in cuts else xs


def _apply_ops(img: np.ndarray, plan: tuple[tuple[int, UserOp], ...], cut: int) -> np.ndarray:
    """The plan's user ops at `cut`, in order, on (H, W, 3) float32 (those not applied leave it)."""
    for at, op in plan:
        if at == cut and op.applied:
            img = apply_user_op(img, op.function, op.params, op.seed)
    return img


def _map(pool: Executor | None, fn: Callable, *items: Sequence) -> list:
    return list(pool.map(fn, *items)) if pool is not None and len(items[0]) > 1 else list(map(fn, *items))
