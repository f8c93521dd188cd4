"""How close does a learned degrader get to a real LR set, next to the default preset? (#18 §3)

    .venv/bin/python bench/learned.py [--steps 400] [--method dsgan] [--out /tmp/learned-bench] [--seed 0]

1. "Real LR" with a degradation the learner is not told (OpenCV, below: blur, x4 area, noise, JPEG)
   from scikit-image's bundled photos (offline), in three disjoint groups of scenes:
   - REAL: whole photos, degraded → the real LR the degrader learns from (domain Y);
   - HR: other photos, clean → the HR the degrader downscales (domain X);
   - HELD: 160 px HR tiles of a third group, never seen in training, and their real LR.
2. `realsynth learn-degradation` on REAL and HR for `--steps` steps (its defaults otherwise, so it holds
   an edge band of every image out to select the step, `--holdout`), on the CPU; the output names the selected step.
3. LR of the HELD tiles by (a) a clean x4 area resize, (b) the default preset realesrgan-x4plus,
   (c) the learned preset (OUT/preset.yaml: resize_lr + learned, α in [0.8, 1.0]), (d) with
   `--calibrated PRESET`, a calibrated preset (`realsynth calibrate OUT/real_lr CAL --hr OUT/hr` makes
   one from the same inputs); each one's fingerprint distance to the held-out real LR, and a colour
   check, `chroma_delta`, against the real LR of the same tiles.
The fingerprint is `pipeline.calibrate.fingerprint` / `distance` when that package is there; else
the three statistics of `pipeline/learned/stats.py` (noise MAD, HF energy share, 8×8 blockiness),
and the output says which. Prints a Markdown table; the numbers go in bench/README.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.degrade import apply_recipe, preset_settings, sample_recipe  # noqa: E402
from pipeline.degrade.preset import load_preset  # noqa: E402
from pipeline.io.images import encode_png  # noqa: E402
from pipeline.learned.data import clean_lr  # noqa: E402
from pipeline.learned.stats import STATS, set_stats, stats_distance  # noqa: E402
from pipeline.cli import main as cli_main  # noqa: E402

SCALE, TILE = 4, 160
HIDDEN = dict(blur_sigma=1.6, noise_sigma=6.0, jpeg_quality=35)  # HR-px blur σ, 8-bit noise σ, libjpeg quality


def photos() -> dict[str, np.ndarray]:
    import skimage.data as d
    left, right = d.stereo_motorcycle()[:2]
    return {"rocket": d.rocket(), "motorcycle_left": left, "chelsea": d.chelsea(),            # REAL
            "astronaut": d.astronaut(), "ihc": d.immunohistochemistry(), "retina": d.retina(),  # HR
            "coffee": d.coffee(), "motorcycle_right": right, "hubble": d.hubble_deep_field()}   # HELD


# the real LR is natural photos (a mostly black one, retina, would fill the real crops with flat black)
REAL, HR, HELD = ("rocket", "motorcycle_left", "chelsea"), ("astronaut", "ihc", "retina"), \
    ("coffee", "motorcycle_right", "hubble")


def hidden_degradation(hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 'camera' the learner must discover: Gaussian blur, x4 area, Gaussian noise, JPEG."""
    h, w = (hr.shape[0] // SCALE) * SCALE, (hr.shape[1] // SCALE) * SCALE
    img = cv2.GaussianBlur(hr[:h, :w].astype(np.float32), (0, 0), HIDDEN["blur_sigma"])
    img = cv2.resize(img, (w // SCALE, h // SCALE), interpolation=cv2.INTER_AREA)
    img = np.clip(img + rng.normal(0, HIDDEN["noise_sigma"], img.shape), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, HIDDEN["jpeg_quality"]])
    return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])


def tiles(img: np.ndarray) -> list[np.ndarray]:
    """Non-overlapping TILE px tiles with some texture (std > 12, as bench/strength.py)."""
    cut = [np.ascontiguousarray(img[y:y + TILE, x:x + TILE, :3]) for y in range(0, img.shape[0] - TILE + 1, TILE)
           for x in range(0, img.shape[1] - TILE + 1, TILE)]
    return [t for t in cut if t.std() > 12]


def write_folder(folder: Path, images: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, img in images.items():
        (folder / f"{name}.png").write_bytes(encode_png(img))
    return folder


def chroma_delta(images: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """The colour check: mean |ΔCb| and |ΔCr| (8-bit units, BT.601) between each LR and the real LR of
    the same tile, after a Gaussian blur of σ 1 px (so pixel noise counts little and shifted or false
    colours count), averaged over the tiles. The fingerprints look at luma statistics; this is what
    catches a degrader that wrecks colours."""
    def chroma(img: np.ndarray) -> np.ndarray:
        ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(np.float32)[:, :, 1:]
        return cv2.GaussianBlur(ycc, (0, 0), 1.0)
    return float(np.mean([np.abs(chroma(a) - chroma(b)).mean() for a, b in zip(images, reference)]))


def fingerprint_fn():
    """(label, distance(images, reference_images)): pipeline.calibrate's if importable, else stats.py's."""
    try:
        from pipeline.calibrate import distance, fingerprint
    except ImportError:
        ref = {}

        def local(images: list[np.ndarray], reference: list[np.ndarray]) -> float:
            key = id(reference)
            ref.setdefault(key, set_stats(reference))
            return stats_distance(set_stats(images), ref[key])
        return "local stats (pipeline.calibrate not in this tree): mean |log ratio| of " + ", ".join(STATS), local

    def calibrated(images: list[np.ndarray], reference: list[np.ndarray]) -> float:
        return float(distance(fingerprint(images), fingerprint(reference)))

    return "pipeline.calibrate.fingerprint / distance", calibrated


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bench/learned.py")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/learned-bench"))
    ap.add_argument("--method", default="dsgan", choices=("dsgan", "cyclegan"), help="learn-degradation --method")
    ap.add_argument("--jpeg", default="auto", help="learn-degradation --jpeg (auto)")
    ap.add_argument("--adv", type=float, default=0.002, help="learn-degradation --adv (0.002)")
    ap.add_argument("--noise", type=int, default=3, help="learn-degradation --noise (3)")
    ap.add_argument("--identity", type=float, default=0.5, help="learn-degradation --identity (0.5)")
    ap.add_argument("--holdout", type=float, default=0.25, help="learn-degradation --holdout (0.25; 0: last step)")
    ap.add_argument("--reuse", action="store_true", help="keep OUT/run from an earlier run (the table only)")
    ap.add_argument("--calibrated", type=Path, metavar="PRESET",
                    help="also a calibrated preset, e.g. from `realsynth calibrate OUT/real_lr CAL --hr OUT/hr`")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(1234)
    pics = photos()
    real = write_folder(args.out / "real_lr", {n: hidden_degradation(pics[n], rng) for n in REAL})
    hr = write_folder(args.out / "hr", {n: pics[n][:, :, :3] for n in HR})
    held = {f"{n}_{i}": t for n in HELD for i, t in enumerate(tiles(pics[n]))}
    held_real = [hidden_degradation(t, rng) for t in held.values()]
    run = args.out / "run"
    t0 = time.perf_counter()
    reused = args.reuse and (run / "preset.yaml").is_file()
    learn = ["learn-degradation", str(real), str(run), "--hr", str(hr), "--scale", str(SCALE), "--steps",
             str(args.steps), "--seed", str(args.seed), "--save-every", "100", "--identity", str(args.identity),
             "--method", args.method, "--jpeg", args.jpeg, "--adv", str(args.adv), "--noise", str(args.noise),
             "--holdout", str(args.holdout), "--force"]
    if not reused and cli_main(learn) != 0:
        raise SystemExit("learn-degradation failed")
    train_s = time.perf_counter() - t0
    trained = "reused from OUT/run" if reused else f"{train_s:.0f} s (report, preset included)"
    learned, default = load_preset(str(run / "preset.yaml")), preset_settings("realesrgan-x4plus")
    sets = {"clean x4 area resize (no degradation)": [clean_lr(t, SCALE, "area") for t in held.values()],
            "default preset realesrgan-x4plus": [apply_recipe(t, sample_recipe(default, args.seed, k, 0))
                                                 for k, t in held.items()],
            "learned preset (learn-degradation)": [apply_recipe(t, sample_recipe(learned, args.seed, k, 0))
                                                   for k, t in held.items()]}
    if args.calibrated is not None:
        calibrated = load_preset(str(args.calibrated))
        sets["calibrated preset (realsynth calibrate)"] = [apply_recipe(t, sample_recipe(calibrated, args.seed, k, 0))
                                                           for k, t in held.items()]
    label, dist = fingerprint_fn()
    from pipeline.learned.op import load_degrader
    meta = load_degrader(run / "degrader.pth")[1]
    if "selected_step" in meta:
        trained += (f"; selected step {meta['selected_step']} (held-out distance {meta['distance']:.3f}, "
                    f"step 0 = no G {meta['identity_distance']:.3f})")
    print(f"\nhidden degradation {HIDDEN}; {len(held)} held-out tiles of {TILE} px (x{SCALE}); "
          f"learn-degradation {args.steps} steps: {trained}; fingerprint: {label}\n")
    print("| LR of the held-out HR | distance to held-out real LR | local-stats distance | chroma Δ | "
          + " | ".join(STATS) + " |")
    print("|---|---|---|---|" + "---|" * len(STATS))
    real_stats = set_stats(held_real)
    for name, images in [*sets.items(), ("held-out real LR itself", held_real)]:
        s = set_stats(images)
        print(f"| {name} | {dist(images, held_real):.3f} | {stats_distance(s, real_stats):.3f} | "
              f"{chroma_delta(images, held_real):.2f} | " + " | ".join(f"{s[k]:.3f}" for k in STATS) + " |")


if __name__ == "__main__":
    main()
