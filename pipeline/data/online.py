"""Online degradation: training pairs made from HR tiles while training, every draw from (seed, epoch, key).

With `train_net.online` / `train_gan.online`, the training stream reads the HR tiles of the train split
(`paths.hr`, ingest's shard set) instead of the shard stage's fixed pairs, and degrades them with the
`degrade` section's preset in the loader, so the net sees a new LR of each tile in every epoch (Real-ESRGAN's
own way of training). For epoch `e` and HR tile `k`:

- the recipe is `sample_recipe(preset, seed, k, variant=e)`: the recipe of the degrade stage's variant `e`
  (with `seed_offset` 0), so epoch 0 degrades each tile exactly as `data/lr` does;
- the LR windows are `shard.lr_windows` (the shard stage's code), `patches_per_tile` random windows on the
  LR grid drawn from `rng_for(WINDOWS, seed, e, k)`;
- the paired flip/rotation of window `w` is `draw_dihedral(seed, e, f"{k}_p{w:02d}")`.

The stream is the offline loader's (`order.py`): position `p` is epoch `p // n`, item `p % n` with
`n = tiles × patches_per_tile`; the epoch order is a seeded permutation of the tiles, each tile's windows
in a row, so a batch of B positions degrades about B / patches_per_tile tiles once each (a worker keeps the
last degraded tile). Ranks, workers and `LoaderState` resume exactly as offline; `online_sample` regenerates
any sample from (seed, epoch, key, window).

Backends (the `degrade.backend` setting, resolved as the degrade stage does): `reference` degrades in the
DataLoader workers; `dali-gpu` / `dali-cpu` has the workers decode and draw only, and degrades each batch in
the training process through one DALI graph (`online_dali.py`; DALI must not start before a fork).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from pipeline.data.augment import augment_pair, draw_dihedral
from pipeline.data.dataset import _to_chw, _to_float
from pipeline.data.loader import BatchStream, LoaderState, infinite_batches, stream_over
from pipeline.data.order import epoch_order, worker_batches
from pipeline.degrade import Recipe, TooSmallError, sample_recipe
from pipeline.degrade.geometry import crop_to_scale
from pipeline.degrade.preset import Preset
from pipeline.io.digest import sha256_file
from pipeline.io.shards import INDEX, ShardError, ShardSet
from pipeline.seeding import WINDOWS, rng_for
from pipeline.shard.pairs import lr_windows

log = logging.getLogger("realsynth.data")


@dataclass(frozen=True)
class OnlineSpec:
    """What the online loader makes: HR set, preset, scale, patch geometry, backend.

    hr_dir: an HR shard set (`<key>.hr.png`, `split` column; ingest's `data/hr`). patch_size: HR patch side
    (`shard.patch_size`). patches_per_tile: windows cut from each degraded tile per epoch
    (`WINDOWS_PER_TILE` from params). backend: `reference`, `dali-cpu` or `dali-gpu` (`resolve_backend`).
    """
    hr_dir: Path
    preset: Preset
    scale: int
    patch_size: int
    patches_per_tile: int
    backend: str = "reference"

    def __post_init__(self) -> None:
        if self.patch_size % self.scale or self.patch_size < self.scale:
            raise ValueError(f"shard.patch_size must be a positive multiple of scale ({self.scale}), got {self.patch_size}")
        if self.patches_per_tile < 1:
            raise ValueError(f"patches_per_tile must be >= 1, got {self.patches_per_tile}")
        if self.backend not in ("reference", "dali-cpu", "dali-gpu"):
            raise ValueError(f"online backend must be 'reference', 'dali-cpu' or 'dali-gpu', got {self.backend!r}")

    @property
    def index(self) -> Path:
        return Path(self.hr_dir) / INDEX

    def identity(self) -> dict[str, Any]:
        """What decides the samples besides the seed: the HR index (it holds every tile's sha256), the
        complete preset, the geometry and the backend (DALI's bytes are not the reference's)."""
        return {"hr_index_sha256": sha256_file(self.index), "preset": self.preset.to_data(), "scale": self.scale,
                "patch_size": self.patch_size, "patches_per_tile": self.patches_per_tile, "backend": self.backend}


# One window per degraded tile per epoch, as Real-ESRGAN crops each image once per iteration: windows of
# one tile share its degradation, so several in a row make a batch of one recipe (measured on the demo:
# 4 windows per tile stayed below bicubic at 1500 steps, 1 beat it; README "Online degradation").
WINDOWS_PER_TILE = 1


def online_spec(hr_dir: str | os.PathLike, degrade_cfg: Any, shard_cfg: Any, *, scale: int) -> OnlineSpec:
    """The spec of params.yaml's `degrade` and `shard` sections (backend resolved as the degrade stage does)."""
    from pipeline.degrade.sources import resolve_backend
    preset = degrade_cfg.settings
    return OnlineSpec(Path(hr_dir), preset, scale, shard_cfg.patch_size, WINDOWS_PER_TILE,
                      resolve_backend(degrade_cfg.backend, preset))


def train_tiles(shards: ShardSet, spec: OnlineSpec) -> np.ndarray:
    """Row numbers (key order) of the train-split tiles whose LR fits a patch; the others are logged.

    Raises:
        ShardError: the index has no `split`, `height` or `width` column. ValueError: no usable tile.
    """
    index, where = shards.index, spec.index
    for col in ("split", "height", "width"):
        if col not in index.columns:
            raise ShardError(f"{where}: missing column {col!r} (is {spec.hr_dir} an HR set from ingest?)")
    p = spec.patch_size // spec.scale
    train = (index["split"] == "train").to_numpy()
    fits = ((index["height"] // spec.scale >= p) & (index["width"] // spec.scale >= p)).to_numpy()
    if (train & ~fits).any():
        log.warning("online: %d train tiles of %s are smaller than the %d px patch; left out",
                    int((train & ~fits).sum()), spec.hr_dir, spec.patch_size)
    rows = np.flatnonzero(train & fits)
    if not len(rows):
        raise ValueError(f"{where}: no train tile fits a {spec.patch_size} px patch at scale {spec.scale}")
    return rows[shards.keys[rows].argsort()]


def patch_key(key: str, window: int) -> str:
    """The name of window `window` of tile `key` (its augmentation is drawn from it)."""
    return f"{key}_p{window:02d}"


def epoch_recipe(spec: OnlineSpec, seed: int, epoch: int, key: str) -> Recipe:
    """The recipe of tile `key` in epoch `epoch`: the degrade stage's variant `epoch`."""
    return sample_recipe(spec.preset, seed, key, epoch, scale=spec.scale)


def cut_window(hr: np.ndarray, lr: np.ndarray, spec: OnlineSpec, *, seed: int, epoch: int, key: str, window: int,
               augment: bool) -> tuple[np.ndarray, np.ndarray]:
    """Window `window` of the windows drawn for (seed, epoch, key) from a degraded tile (`hr` cropped to
    the scale, `lr` its degradation), flipped/rotated when `augment`: HWC uint8 patches."""
    return _cut(hr, lr, spec, window_at(lr.shape, spec, seed=seed, epoch=epoch, key=key, window=window),
                seed=seed, epoch=epoch, key=key, window=window, augment=augment)


def window_at(lr_shape: tuple[int, ...], spec: OnlineSpec, *, seed: int, epoch: int, key: str,
              window: int) -> tuple[int, int]:
    """(y, x) on the LR grid of window `window` among those drawn for (seed, epoch, key)."""
    p = spec.patch_size // spec.scale
    y, x = lr_windows(lr_shape[:2], p, n=spec.patches_per_tile, mode="random",
                      rng=rng_for(WINDOWS, seed, epoch, key))[window]
    return int(y), int(x)


def _cut(hr: np.ndarray, lr: np.ndarray, spec: OnlineSpec, yx: tuple[int, int], *, seed: int, epoch: int, key: str,
         window: int, augment: bool) -> tuple[np.ndarray, np.ndarray]:
    (y, x), p, s = yx, spec.patch_size // spec.scale, spec.scale
    hr_patch, lr_patch = hr[y * s:(y + p) * s, x * s:(x + p) * s], lr[y:y + p, x:x + p]
    if augment:
        return augment_pair(hr_patch, lr_patch, draw_dihedral(seed, epoch, patch_key(key, window)))
    return np.ascontiguousarray(hr_patch), np.ascontiguousarray(lr_patch)


def degrade_reference(hr: np.ndarray, recipe: Recipe) -> np.ndarray:
    from pipeline.degrade.fast import apply_recipe
    return apply_recipe(hr, recipe)


@dataclass(frozen=True)
class OnlineSample:
    """One regenerated training sample: patches (HWC uint8 RGB), the recipe, the LR window (y, x)."""
    hr: np.ndarray
    lr: np.ndarray
    recipe: Recipe
    window: tuple[int, int]


def online_sample(spec: OnlineSpec, *, seed: int, epoch: int, key: str, window: int,
                  augment: bool = True) -> OnlineSample:
    """Regenerate the sample the online loader made from window `window` of tile `key` in epoch `epoch`
    (`seed`: the training seed, params.yaml `seed` + `seed_offset`): the same bytes as in its batch.

    Raises:
        KeyError: no tile `key`. ValueError: window outside [0, patches_per_tile). TooSmallError: as degrade.
    """
    if not 0 <= window < spec.patches_per_tile:
        raise ValueError(f"window must be in [0, {spec.patches_per_tile}), got {window}")
    shards = ShardSet(spec.hr_dir, need=("hr.png",))
    try:
        hr = crop_to_scale(shards.image_at(shards.row(key), "hr.png"), spec.scale)
    finally:
        shards.close()
    recipe = epoch_recipe(spec, seed, epoch, key)
    if spec.backend == "reference":
        lr = degrade_reference(hr, recipe)
    else:
        from pipeline.data.online_dali import degrade_dali
        lr = degrade_dali([hr], [recipe], gpu=spec.backend == "dali-gpu")[0]
    yx = window_at(lr.shape, spec, seed=seed, epoch=epoch, key=key, window=window)
    hr_patch, lr_patch = _cut(hr, lr, spec, yx, seed=seed, epoch=epoch, key=key, window=window, augment=augment)
    return OnlineSample(hr_patch, lr_patch, recipe, yx)


class OnlineDataset(IterableDataset):
    """Batches of online-degraded patches for one DDP rank; the stream contract of `PairDataset`
    (`n`, `batch_size`, `world_size`, `start`), so `BatchStream` and `LoaderState` work unchanged.

    Batches: `{"hr": (B, 3, H, W), "lr": (B, 3, h, w)` float32 RGB in [0, 1], `"key": [patch_key]`,
    `"tile": [key]`, `"window": [int]`, `"epochs": [int]`, `"epoch"`: of the first sample, `"skipped"`}.
    With `degrade=False` (the DALI path) the workers leave the LR out and yield `"todo"`: the cropped HR
    tiles and recipes, for `online_dali.finish_batch` in the training process.
    on_error: "raise" stops on a bad tile (ShardError) or one too small for its recipe (TooSmallError);
    "skip" logs, counts and leaves it out.
    """

    def __init__(self, spec: OnlineSpec, *, seed: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 epoch: int = 0, skip: int = 0, epochs: int | None = None, augment: bool = True,
                 on_error: Literal["raise", "skip"] = "raise", degrade: bool = True) -> None:
        super().__init__()
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"expected batch_size >= 1 and 0 <= rank < world_size, got batch_size={batch_size}, "
                             f"rank={rank}, world_size={world_size}")
        self.spec, self.shards = spec, ShardSet(spec.hr_dir, need=("hr.png",))
        self.rows = train_tiles(self.shards, spec)
        self.n = len(self.rows) * spec.patches_per_tile
        if epoch < 0 or not 0 <= skip <= self.n:
            raise ValueError(f"expected epoch >= 0 and 0 <= skip <= {self.n}, got epoch={epoch}, skip={skip}")
        self.seed, self.batch_size, self.rank, self.world_size = seed, batch_size, rank, world_size
        self.augment, self.on_error, self.degrade = augment, on_error, degrade
        self.start = epoch * self.n + skip
        self.stop = None if epochs is None else (epoch + epochs) * self.n
        self._order: tuple[int, np.ndarray] | None = None
        self._tile: tuple[tuple[int, int], np.ndarray, np.ndarray | None] | None = None

    def locate(self, position: int) -> tuple[int, str, int]:
        """(epoch, tile key, window) of stream position `position`."""
        epoch, i = divmod(position, self.n)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(len(self.rows), seed=self.seed, epoch=epoch))
        tile, window = divmod(i, self.spec.patches_per_tile)
        return epoch, str(self.shards.keys[self.rows[self._order[1][tile]]]), window

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None and self.degrade:
            import cv2
            cv2.setNumThreads(1)  # one process per core already
        for lo, hi in worker_batches(self.start, self.stop, batch_size=self.batch_size, rank=self.rank,
                                     world_size=self.world_size, worker=worker, workers=workers):
            samples, skipped = [], 0
            for p in range(lo, hi):
                epoch, key, window = self.locate(p)
                try:
                    samples.append((epoch, key, window, *self._tile_of(epoch, key)))
                except (ShardError, TooSmallError) as err:
                    if self.on_error == "raise":
                        raise type(err)(f"online: tile {key!r}, epoch {epoch}: {err}") from None
                    skipped += 1
                    log.warning("online: skipped tile %r in epoch %d: %s", key, epoch, err)
            yield self._collate(samples, epoch=lo // self.n, skipped=skipped)

    def _tile_of(self, epoch: int, key: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(HR cropped to the scale, its LR or None without `degrade`); the last tile is kept."""
        row = self.shards.row(key)
        if self._tile is None or self._tile[0] != (epoch, row):
            hr = crop_to_scale(self.shards.image_at(row, "hr.png"), self.spec.scale)
            lr = degrade_reference(hr, epoch_recipe(self.spec, self.seed, epoch, key)) if self.degrade else None
            self._tile = ((epoch, row), hr, lr)
        return self._tile[1], self._tile[2]

    def _collate(self, samples: list[tuple], *, epoch: int, skipped: int) -> dict[str, Any]:
        out: dict[str, Any] = {"key": [patch_key(k, w) for _, k, w, _, _ in samples], "tile": [s[1] for s in samples],
                               "window": [s[2] for s in samples], "epochs": [s[0] for s in samples],
                               "epoch": epoch, "skipped": skipped}
        if not self.degrade:  # each tile of the batch once: (epoch, key) → (HR, recipe)
            out["todo"] = {(e, k): (hr, epoch_recipe(self.spec, self.seed, e, k)) for e, k, _, hr, _ in samples}
            return out
        pairs = [cut_window(hr, lr, self.spec, seed=self.seed, epoch=e, key=k, window=w, augment=self.augment)
                 for e, k, w, hr, lr in samples]
        return {**out, **collate_patches(pairs)}


def collate_patches(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """{"hr", "lr"}: HWC uint8 patch pairs as float32 (B, 3, H, W) tensors in [0, 1]."""
    if not pairs:
        return {"hr": _to_float(np.zeros((0, 3, 0, 0), np.uint8)), "lr": _to_float(np.zeros((0, 3, 0, 0), np.uint8))}
    return {"hr": _to_float(np.stack([_to_chw(h) for h, _ in pairs])),
            "lr": _to_float(np.stack([_to_chw(lr) for _, lr in pairs]))}


def online_batches(spec: OnlineSpec, *, batch_size: int, workers: int, seed: int, rank: int = 0, world_size: int = 1,
                   state: LoaderState | None = None, augment: bool = True,
                   on_error: Literal["raise", "skip"] = "raise", pin_memory: bool | None = None,
                   mp_context: str | None = None) -> BatchStream:
    """An endless stream of online-degraded training batches for rank `rank` from `state` (as
    `infinite_batches`: `next(stream)` → (epoch, batch), `stream.state`). Workers start by `spawn` unless
    `mp_context` says otherwise: a forked worker inherits OpenCV's thread pool (used by any degrade in the
    parent) or a started DALI, and hangs in it.

    Raises:
        as `OnlineDataset`.
    """
    state, mp_context = state or LoaderState(), mp_context or "spawn"
    dali = spec.backend != "reference"
    ds = OnlineDataset(spec, seed=seed, batch_size=batch_size, rank=rank, world_size=world_size, epoch=state.epoch,
                       skip=state.samples_seen, augment=augment, on_error=on_error, degrade=not dali)
    if not dali:
        return stream_over(ds, workers=workers, pin_memory=pin_memory, mp_context=mp_context)
    from pipeline.data.online_dali import DaliStream
    return DaliStream(ds, workers=workers, mp_context=mp_context)


def train_stream(train_dir: Path, online: OnlineSpec | None, *, batch_size: int, workers: int, seed: int, rank: int,
                 world_size: int, state: LoaderState, augment: bool) -> BatchStream:
    """The training loop's stream: `online_batches` of `online` when given, else the offline pair loader
    (`infinite_batches`) on `train_dir`."""
    kw = dict(batch_size=batch_size, workers=workers, seed=seed, rank=rank, world_size=world_size, state=state,
              augment=augment)
    return online_batches(online, **kw) if online is not None else infinite_batches(train_dir, **kw)
