"""Training checkpoints: atomic, keep-last-K, loadable with `weights_only=True`, resumed by config hash.

A checkpoint `ckpt/step_00005000.pt` is a `torch.save`d dict:

    params, params_ema   generator state dicts of the unwrapped net (BasicSR/Real-ESRGAN key names)
    net_d                discriminator state dict (gan phase)
    optim_g, optim_d     optimizer state dicts
    scheduler            the lr schedule and the current lrs; the lr is a pure function of the step
                         (`steps.lr_at`), so this is a record, not state that resuming needs
    step                 optimisation steps done (the next run starts there)
    loader               the data stream's position {"epoch", "samples_seen"} (global: the same on every rank)
    ranks                per rank: {"rng": torch/CUDA/NumPy/Python states, "pool": pair pool | None,
                         "fake_pool": D's image pool (images, its generator), only when fake_pool_size > 0}
    skipped_total        non-finite steps skipped so far
    nonfinite            non-finite steps in a row when it was written
    config, run          the TrainConfig as a dict; the identity the hash is computed from
    config_hash          sha256 of `run`
    meta                 {"name", "opts", "scale", "phase"}

Everything is tensors and plain Python types (RNG states included), so `torch.load(...,
weights_only=True)` reads it. Files are written to a `.tmp` sibling and `os.replace`d: a run killed at
any moment leaves only whole checkpoints.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from pipeline.io.digest import sha256_file
from pipeline.io.atomic import atomic_write, sweep_folder

CKPT_RE = re.compile(r"^step_(\d{8})\.pt$")
# Keys that change how a run is operated or reported, not what it computes: changing them resumes.
OPERATIONAL = ("iterations", "checkpoint_every", "keep_last", "val_every", "val_batches", "log_every",
               "workers", "compile", "channels_last", "device", "max_nonfinite")




def run_identity(config: Mapping[str, Any], *, scale: int, seed: int, world_size: int,
                 train_index: Path, init_from: Path | None) -> dict[str, Any]:
    """What a run computes: the config minus OPERATIONAL keys, scale, seed, world size, and the content
    hashes of the training set's index (it holds every sample's sha256) and of the init weights."""
    return {
        "config": {k: v for k, v in config.items() if k not in OPERATIONAL},
        "scale": scale,
        "seed": seed,
        "world_size": world_size,
        "train_index_sha256": sha256_file(train_index),
        "init_from_sha256": sha256_file(init_from) if init_from is not None else None,
    }


def config_hash(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def describe_change(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> str:
    """The first differing dotted key of two identities, as `key: old → new`."""
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found = describe_change(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: {a!r} -> {b!r}"
    return ""


def rng_state() -> dict[str, Any]:
    """torch (CPU and this process's current CUDA device), NumPy and Python RNG states as tensors and
    plain types. Only the current device: touching the others would open a CUDA context on each."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def cpu_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict on the CPU in the standard (contiguous) layout, whatever the training memory format."""
    return {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}


def gather_ranks(pool: Any, *, ddp: bool, world_size: int, fake_pool: Any = None) -> list[dict[str, Any]]:
    """Every rank's `ranks` entry (RNG states, `pool.state_dict()` or None for no pool, and `fake_pool`'s
    state when it is on), in rank order; under DDP one `all_gather_object`, which every rank must call."""
    mine = {"rng": rng_state(), "pool": pool.state_dict() if pool.size else None}
    if fake_pool is not None and fake_pool.size:
        mine["fake_pool"] = fake_pool.state_dict()
    if not ddp:
        return [mine]
    ranks: list[Any] = [None] * world_size
    dist.all_gather_object(ranks, mine)
    return ranks


def training_state(*, net_g: nn.Module, net_g_ema: nn.Module, net_d: nn.Module | None,
                   opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None, schedule: Mapping[str, Any],
                   step: int, nonfinite: int, skipped_total: int, loader: Mapping[str, int],
                   ranks: list[dict[str, Any]], config: Mapping[str, Any], run: Mapping[str, Any],
                   meta: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint dict described at the top of this module, from the unwrapped nets (`cpu_state`).

    `schedule`: {"kind", "warmup", "milestones", "gamma"}; the optimizers' current lrs are added to it.
    """
    return {"params": cpu_state(net_g), "params_ema": cpu_state(net_g_ema),
            "net_d": cpu_state(net_d) if net_d is not None else None,
            "optim_g": opt_g.state_dict(), "optim_d": opt_d.state_dict() if opt_d is not None else None,
            "scheduler": {**schedule, "lr_g": opt_g.param_groups[0]["lr"],
                          "lr_d": opt_d.param_groups[0]["lr"] if opt_d is not None else None},
            "step": step, "nonfinite": nonfinite, "skipped_total": skipped_total,
            "loader": loader, "ranks": ranks,
            "config": config, "run": run, "config_hash": config_hash(run), "meta": meta}


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    return ckpt_dir / f"step_{step:08d}.pt"


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints in `ckpt_dir`, oldest first (temporary files are not listed)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.iterdir() if CKPT_RE.match(p.name))


def save_checkpoint(ckpt_dir: Path, step: int, state: Mapping[str, Any], keep_last: int) -> Path:
    """Write `state` as `ckpt_dir/step_<step>.pt` atomically, then delete all but the newest `keep_last`.

    Raises:
        ValueError: if keep_last < 1.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(ckpt_dir, step)
    atomic_torch_save(state, path)
    for old in list_checkpoints(ckpt_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through `atomic_write`: a crash leaves no partial `path`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_latest(ckpt_dir: Path) -> tuple[dict[str, Any] | None, str]:
    """The newest readable checkpoint in `ckpt_dir` (CPU tensors) and a note on what was skipped.

    A checkpoint that fails to load (a damaged disk; never a partial write) is skipped for the one
    before it, and the note says so. Returns (None, note) when there is none.
    """
    notes = []
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file: fall back to an older one
            notes.append(f"{path.name} unreadable ({' '.join(str(err).split())[:120]}), skipped")
            continue
        ckpt["path"] = str(path)
        return ckpt, "; ".join(notes)
    return None, "; ".join(notes)


def clear_checkpoints(ckpt_dir: Path) -> int:
    """Delete every checkpoint (and stale temporary file) in `ckpt_dir`; return how many checkpoints."""
    paths = list_checkpoints(ckpt_dir)
    for p in paths:
        p.unlink(missing_ok=True)
    remove_partial(ckpt_dir)
    return len(paths)


def remove_partial(ckpt_dir: Path) -> None:
    """Delete the temporary files a run killed while writing a checkpoint leaves behind (`.step_*.pt.*.tmp`;
    never one a live process is writing)."""
    sweep_folder(ckpt_dir)


def export_generator(path: Path, params: Mapping[str, torch.Tensor], params_ema: Mapping[str, torch.Tensor],
                     meta: Mapping[str, Any]) -> None:
    """Write the generator export `{"params_ema", "params", "meta"}` atomically.

    Real-ESRGAN's inference reads `params_ema` (else `params`) and loads it strictly into RRDBNet or
    SRVGGNetCompact; spandrel unwraps the same keys. `meta` holds plain types only (name, opts, scale,
    phase, step), for `pipeline.models` and people.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"params_ema": {k: v.detach().cpu() for k, v in params_ema.items()},
                       "params": {k: v.detach().cpu() for k, v in params.items()},
                       "meta": dict(meta)}, path)
