"""Score bicubic and any generator checkpoints on a pair set (a `realsynth benchmark` set).

    scores, notes = score_set(Path("bench/x4plus-s0"), [Path("RealESRGAN_x4plus.pth"), Path("SwinIR.pth")])
    # {"bicubic": {...}, "RealESRGAN_x4plus": {...}, "SwinIR": {...}}

The metrics are the evaluate stage's (`run.Scorer`, `run.aggregate`): PSNR and SSIM on RGB and on Y
(BasicSR conventions: `crop_border` = the scale unless given, Y of BT.601), NIQE of the output
where the pristine model's file exists, LPIPS (AlexNet) where its weights exist; a metric that
cannot run is left out and named in the notes. Models are named by their file's stem.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.degrade.benchmark import MANIFEST, read_manifest
from pipeline.evaluate.checkpoints import describe, load_upscaler
from pipeline.evaluate.pairs import iter_pairs
from pipeline.evaluate.run import LPIPS_NET, METRICS, Run, Scorer, aggregate, bicubic
from pipeline.infer import resolve_device
from pipeline.io.shards import INDEX, ShardSet
from pipeline.metrics import lpips_available, niqe_available

RESERVED = ("bicubic",)


def model_names(checkpoints: Sequence[str | Path], *, taken: Sequence[str] = RESERVED,
                where: str = "--checkpoint") -> dict[str, Path]:
    """{file stem: path} for `checkpoints`, in order; `where` names them in errors.

    Raises:
        FileNotFoundError: a checkpoint that does not exist (named explicitly, so never skipped).
        ValueError: a stem that is one of `taken` or that two checkpoints share (one line, naming
            both files; rename one).
    """
    names: dict[str, Path] = {}
    for i, ckpt in enumerate(checkpoints):
        path = Path(ckpt)
        name = path.stem
        if not path.is_file():
            raise FileNotFoundError(f"{where}[{i}]: {path} not found")
        if name in taken:
            raise ValueError(f"{where}[{i}]: {path} would be named {name!r}, which is taken by "
                             f"{'the baseline' if name == 'bicubic' else 'another model'}; rename the file")
        if name in names:
            raise ValueError(f"{where}[{i}]: {path} has the same file stem {name!r} as {names[name]}; "
                             "models are named by stem, rename one")
        names[name] = path
    return names


def set_scale(set_dir: str | Path) -> int:
    """The scale of a pair set: its benchmark.json `scale`, else the index's single `scale` value.

    Raises:
        FileNotFoundError: no index.parquet.
        ValueError: no hr.png/lr.png members, no or several scales.
    """
    set_dir = Path(set_dir)
    if (set_dir / MANIFEST).is_file():
        return int(read_manifest(set_dir)["scale"])
    index = ShardSet(set_dir).index
    where = set_dir / INDEX
    if "scale" not in index.columns:
        raise ValueError(f"{where}: missing column 'scale' (and no {MANIFEST}); is {set_dir} a pair set?")
    scales = sorted(set(int(s) for s in index["scale"]))
    if len(scales) != 1:
        raise ValueError(f"{where}: expected one 'scale' for the whole set, got {scales}")
    return scales[0]


def pair_rows(set_dir: str | Path) -> pd.DataFrame:
    """Every sample of a pair set (sorted keys, `hr_key` empty: the HR is the sample's own member).

    Raises:
        ValueError: the set lacks `lr.png` or `hr.png` members, or is empty.
    """
    index = ShardSet(set_dir).index
    where = Path(set_dir) / INDEX
    for member in ("lr_png", "hr_png"):
        if f"size_{member}" not in index.columns:
            raise ValueError(f"{where}: no '{member.replace('_', '.')}' members; score needs a pair set "
                             "(`realsynth benchmark`, `pairs`, or `degrade` of a folder)")
    if index.empty:
        raise ValueError(f"{where}: no samples to score")
    return pd.DataFrame({"key": sorted(index["key"]), "hr_key": ""})


def score_set(set_dir: str | Path, checkpoints: Sequence[str | Path], *, device: str = "auto",
              weights: str = "params_ema", tile: int = 0, crop_border: int = -1,
              niqe_params: str | Path | None = None, lpips_weights: str | Path | None = None,
              ) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Bicubic and every checkpoint on every pair of `set_dir`; returns (scores, notes).

    scores: {"bicubic" | checkpoint stem: {psnr_rgb, psnr_y, ssim_rgb, ssim_y[, niqe][, lpips]}},
    means over the set rounded to 4 decimals. notes: one line per model loaded (architecture,
    loader) and per metric or image left out. Nets run in float32 (no autocast, no TF32, so a score
    does not depend on the GPU's defaults), on `device`, whole images unless `tile` > 0 (LR px; 16 px overlap).
    crop_border: px cut from each side for PSNR/SSIM/NIQE (-1: the scale). niqe_params: the
    pristine model (None: `$REALSYNTH_NIQE_PARAMS`, else models/weights/niqe_pris_params.npz);
    lpips_weights: folder with torchvision's AlexNet file (None: the torch hub cache).

    Raises:
        FileNotFoundError: a missing set or checkpoint.
        ValueError: a bad set, a checkpoint no loader knows or of another scale, clashing names.
    """
    import torch

    names = model_names(checkpoints)
    scale = set_scale(set_dir)
    rows = pair_rows(set_dir)
    crop = scale if crop_border < 0 else crop_border
    dev = resolve_device(device)
    run = Run(scale=scale, crop=crop, device=str(dev), requested=["bicubic", *names])
    upscalers = {"bicubic": bicubic(scale)}
    for name, path in names.items():
        upscalers[name], info = load_upscaler(path, dev, scale=scale, weights=weights, tile=tile,
                                              dtype=torch.float32)
        run.models[name] = describe(path, info)
    scorer = _scorer(run, crop, niqe_params, lpips_weights)
    with _strict_float32():
        for pair in iter_pairs(set_dir, set_dir, rows, scale):
            for name, up in upscalers.items():
                scores = scorer.full(up(pair.lr), pair.hr, run, name, pair.key)
                run.records.append(dict(set="val", key=pair.key, model=name, **scores))
    per_image = pd.DataFrame(run.records, columns=["set", "key", "model", *METRICS])
    scores = {name: {k: v for k, v in m.items() if k != "realworld_niqe"}
              for name, m in aggregate(per_image, order=list(upscalers)).items()}
    return scores, _notes(run, len(rows))


@contextlib.contextmanager
def _strict_float32() -> Iterator[None]:
    """TF32 off on CUDA while scoring (restored after): TF32 convolutions and matmuls keep 10
    mantissa bits, so scores would depend on the GPU model and its defaults."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _scorer(run: Run, crop: int, niqe_params, lpips_weights) -> Scorer:
    """The evaluate stage's per-image scorer, with NIQE/LPIPS switched off (and noted) without their files."""
    niqe_ok, why = niqe_available(niqe_params)
    if not niqe_ok:
        run.skipped.append(f"metric `niqe`: {why}")
    lpips_ok, why = lpips_available(lpips_weights, net=LPIPS_NET)
    if not lpips_ok:
        run.skipped.append(f"metric `lpips`: {why}")
    return Scorer(crop=crop, niqe_params=niqe_params if niqe_ok else False,
                  lpips_dir=lpips_weights if lpips_ok else False)


def _notes(run: Run, n: int) -> list[str]:
    lines = [f"{n} pairs, x{run.scale}, crop border {run.crop} px, device {run.device}"]
    lines += [f"model `{name}`: {text}" for name, text in run.models.items()]
    lines += run.skipped
    lines += [f"`{metric}` of `{model}` left out on {len(items)} image(s), e.g. {items[0][0]}: {items[0][1]}"
              for (metric, model), items in sorted(run.failures.items())]
    return lines


def scores_json(scores: Mapping[str, Mapping[str, Any]]) -> str:
    """The text of scores.json: as eval/metrics.json (sorted keys, 2-space indent, newline)."""
    from pipeline.evaluate.outputs import metrics_json
    return metrics_json(scores)
