"""DVC stage `evaluate`: params `evaluate` + `paths.hr`/`lr`/`models` → `paths.eval`.

Bicubic, Real-ESRNet (`<models>/net/generator.pth`) and Real-ESRGAN (`<models>/gan/generator.pth`) on
the val tiles: eval/metrics.json, per_image.parquet, plots/, grids/, report.md. A model whose file does
not exist yet is skipped (named in report.md). `evaluate.extra_checkpoints` adds more generator files
(ours, BasicSR's, or any spandrel detects), scored the same way under their file stem; these must
exist. DVC cannot take deps from a params list, so editing the list re-runs evaluate but replacing
such a file in place does not (`dvc repro -f evaluate`, or give the new weights a new name).
`--summary` prints the table of an existing eval/ instead.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipeline.config import load_params
from stages import run_stage

MODELS = ("net", "gan")  # <paths.models>/<name>/generator.pth, exported by the train stages


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stages.evaluate", description=__doc__)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--summary", action="store_true", help="print the metrics of an existing evaluation and exit")
    args = ap.parse_args(argv)
    cfg = load_params(args.params, sections=("seed", "scale", "paths", "evaluate"))
    from pipeline.evaluate import LABELS, summary

    if args.summary:
        print(summary(cfg.paths.eval, LABELS))
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, set before CUDA starts
    from pipeline.numerics import set_cpu_numerics  # before the first CPU op

    if note := set_cpu_numerics(cfg.evaluate.reproducible, cfg.evaluate.threads):
        print(f"evaluate: {note}")
    import torch

    from pipeline.evaluate import evaluate
    from pipeline.evaluate.score import model_names
    from pipeline.io.atomic import atomic_dir

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    models = {name: cfg.paths.models / name / "generator.pth" for name in MODELS}
    models.update(model_names(cfg.evaluate.extra_checkpoints, taken=("bicubic", *MODELS),
                              where="evaluate.extra_checkpoints"))
    with atomic_dir(cfg.paths.eval) as tmp:
        evaluate(cfg.paths.hr, cfg.paths.lr, models, tmp, cfg.evaluate, scale=cfg.scale, seed=cfg.seed)
    print(summary(cfg.paths.eval, LABELS))


if __name__ == "__main__":
    run_stage(main)
