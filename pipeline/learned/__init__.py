"""A degradation learned from unpaired real LR photos: CycleGAN between clean downscaled HR (domain X)
and the user's real LR (domain Y), after Bulat et al. 2018 and Lugmayr et al. 2019.

    realsynth learn-degradation REAL_LR OUT --hr HR      # OUT/degrader.pth, OUT/preset.yaml, OUT/report.md

- `data.py`: the two domains (HR downscaled as the preset's `resize_lr` does; real LR as read) and
  the per-step random crops, drawn from (seed, step) alone;
- `pool.py`: the paper's pool of past fakes shown to the discriminators;
- `train.py`: the loop (two generators, two PatchGANs, LSGAN + cycle L1 + identity L1), resumable;
- `op.py`: the degrader as the preset step `learned` (`pipeline.degrade.steps.LearnedStep`);
- `report.py`: OUT/report.md and its sample grid.

Nothing here imports torch at import time except `train.py`: the preset sampler reads `op.py`.
"""
