"""A degradation learned from unpaired real LR photos: a generator from clean downscaled HR (domain X)
to the user's real LR (domain Y), after Fritsche et al. 2019 (`dsgan`, the default) or Zhu et al.
2017 as Bulat et al. 2018 and Lugmayr et al. 2019 (`cyclegan`).

    realsynth learn-degradation REAL_LR OUT --hr HR      # OUT/degrader.pth, OUT/preset.yaml, OUT/report.md

- `data.py`: the two domains (HR downscaled as the preset's `resize_lr` does; real LR as read), the
  per-step random crops and the real LR's JPEG quality (`--jpeg auto`);
- `config.py`: the run's settings and state; `nets.py`: noise input, codec in the loop, frequency split;
- `dsgan.py`, `cycle.py`: one training step of each method; `train.py`: the loop, resumable;
- `op.py`: the degrader as the preset step `learned` (`pipeline.degrade.steps.LearnedStep`);
- `report.py`: OUT/report.md and its sample grid.

Nothing here imports torch at import time except the training modules: the preset sampler reads `op.py`.
"""
