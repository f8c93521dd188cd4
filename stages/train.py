"""DVC stages `train_net` / `train_gan`: params `train_<phase>` + `paths.pairs` → `paths.models/<phase>/`
(with `train_<phase>.online`: `paths.hr` degraded in the loader by the `degrade` preset, `paths.pairs` for val).

    python -m stages.train --phase net [--params params.yaml]
    torchrun --nproc_per_node=4 -m stages.train --phase gan      # DDP, batch_size per GPU

Outputs: `generator.pth` (params_ema, params), `live/` (dvclive metrics, plots, images) and `ckpt/`
(resume state: not a DVC output, so DVC never deletes it and never shares it; a run restarted with the same config
continues from its last checkpoint, another config starts fresh and says why).
With `reproducible: true` the CPU numerics are pinned first (`pipeline.numerics`), so a CPU run gives
the same bytes on any AVX2 x86-64 machine.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.config import load_params
from pipeline.train import train
from stages import run_stage


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stages.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=("net", "gan"), required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    section = f"train_{args.phase}"
    cfg = load_params(args.params, sections=("seed", "scale", "paths", section))
    tcfg = getattr(cfg, section)
    from pipeline.numerics import set_cpu_numerics  # before the first CPU op (params built nets on the meta device)

    if note := set_cpu_numerics(tcfg.reproducible, tcfg.threads):
        print(f"{section}: {note}")
    out_dir = cfg.paths.models / args.phase
    init_from = None
    if args.phase == "gan":
        init_from = Path(tcfg.init_from) if tcfg.init_from else cfg.paths.models / "net" / "generator.pth"
    online = None
    if tcfg.online:  # the loader degrades paths.hr with the degrade section's preset (README "Online degradation")
        from pipeline.data.online import online_spec
        more = load_params(args.params, sections=("degrade", "shard"))
        online = online_spec(cfg.paths.hr, more.degrade, more.shard, scale=cfg.scale)
    report = train(tcfg, pairs_dir=cfg.paths.pairs, out_dir=out_dir, scale=cfg.scale, seed=cfg.seed,
                   phase=args.phase, init_from=init_from, online=online)
    print(f"{section}: {report['step'] - report['start_step']} steps in {report['seconds']:.0f} s "
          f"(from step {report['start_step']}); val PSNR-Y {report['val_psnr_y']:.2f} dB vs bicubic "
          f"{report['val_psnr_y_bicubic']:.2f} dB; {report['skipped_steps']} skipped steps -> {report['generator']}")


if __name__ == "__main__":
    run_stage(main)
