"""Where the HR tiles come from, and the plan of a set: which jobs (HR key × variant) it makes and
what every job shares (`Context`). Every read of an HR or LR set by the degrade engine is here.

    ctx, jobs = plan_set(Path("data/hr"), cfg, seed=0, scale=4)
    hr = read_hr(ctx.source, jobs[0])          # (H, W, 3) uint8 RGB

A plan is a pure function of the input listing and the params: any engine that plans the same input
gets the same jobs in the same order.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.io.digest import sha256_file
from pipeline.io.images import decode_image, decode_png
from pipeline.io.keys import Keys
from pipeline.io.shards import INDEX, ShardError, ShardSet, read_member

from .config import DegradeConfig, Settings, check_scale
from .preset import Preset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


class KeyColumn(Mapping):
    """key → value of one index column, kept as an array in sorted key order and read by position
    (`at`): a dict per column held ~100 bytes a key for the whole run (bench/README.md, "Scale").

    kind "codes": values = (names, int codes); "hex": uint8 (n, 32) digests read back as hex
    strings; "objects": an object array."""

    def __init__(self, keys: Keys, kind: str, values: Any) -> None:
        self.keys, self.kind, self.values = keys, kind, values

    def at(self, i: int) -> Any:
        if self.kind == "codes":
            return self.values[0][self.values[1][i]]
        if self.kind == "hex":
            return self.values[i].tobytes().hex()
        return self.values[i]

    def __getitem__(self, key: str) -> Any:
        i = self.keys.find(key) if isinstance(key, str) else -1
        if i < 0:
            raise KeyError(key)
        return self.at(i)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class Source:
    """An HR input: a shard set (`index` has key/split) or a folder (`files` maps key → path).
    `sha256` maps key → the sha256 of the HR's bytes (`<key>.hr.png`, or the image file).
    `keys` are sorted. A set's `splits` and `sha256` are `KeyColumn`s and `spans` the (shard names,
    shard number, offset, size) arrays of each key's `hr.png`, all in the order of `keys`."""
    path: Path
    is_set: bool
    keys: Keys
    splits: Mapping[str, str]
    files: dict[str, Path]
    sha256: Mapping[str, str] = field(default_factory=dict)
    spans: tuple | None = None


@dataclass(frozen=True, slots=True)  # slots: one per sample is planned, so its size is the plan's
class Job:
    """One LR sample to make: HR tile `hr_key`, variant `variant`."""
    hr_key: str
    variant: int
    # (shard, offset, size) of `<hr_key>.hr.png` when the input is a shard set: workers read the HR
    # by offset and never load the index (nor pandas, a slow import in every worker)
    hr_at: tuple[str, int, int] | None = None
    hr_file: Path | None = None  # the image when the input is a folder (`plan_set` gives each job one of the two)
    split: str | None = None   # the HR tile's split (train/val) when the input set has one
    hr_sha256: str | None = None  # of the HR's bytes: with (seed, key, variant, params, code) it decides the sample


@dataclass(frozen=True)
class Context:
    """What every job of a set shares; `backend` is resolved: reference | dali-cpu | dali-gpu."""
    source: Source
    settings: Settings
    seed: int
    scale: int
    backend: str


def folder_key(rel: Path) -> str:
    """Sample key of an image at relative path `rel`: path parts joined by '_', suffix dropped,
    characters other than [A-Za-z0-9_-] replaced by '_' (keys carry no dots)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", "_".join(rel.with_suffix("").parts)) or "img"


def output_key(hr_key: str, variant: int) -> str:
    """The LR sample key of variant `variant` of HR tile `hr_key`."""
    return f"{hr_key}_v{variant}"


def open_source(inp: Path) -> Source:
    """Describe `inp`: a directory with index.parquet (HR shard set) or a folder of images.

    Raises:
        FileNotFoundError: `inp` is not a directory, or a folder without images.
        ValueError: two files map to the same key, or the set has no `hr.png` members.
    """
    inp = Path(inp)
    if not inp.is_dir():
        raise FileNotFoundError(f"{inp}: not a directory (expected an HR shard set or a folder of images)")
    if (inp / INDEX).is_file():
        return _set_source(inp)
    files: dict[str, Path] = {}
    for path in sorted(p for p in inp.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        key = folder_key(path.relative_to(inp))
        if key in files:
            raise ValueError(f"{path}: same sample key {key!r} as {files[key]}; rename one of them")
        files[key] = path
    if not files:
        raise FileNotFoundError(f"{inp}: no images ({', '.join(IMAGE_EXTENSIONS)}) and no {INDEX}")
    digests = {key: sha256_file(path) for key, path in files.items()}
    return Source(inp, False, Keys.of(sorted(files)), {}, files, digests)


def _set_source(inp: Path) -> Source:
    """`open_source` of an HR shard set: its keys, and the columns a plan reads, as arrays in sorted
    key order (only `key`, `split`, `sha256` and the member spans are read from the index)."""
    shards = ShardSet(inp)
    hr = shards.spans("hr.png")
    if hr is None:
        raise ValueError(f"{inp / INDEX}: no 'hr.png' members (is {inp} an HR shard set?)")
    order = None if shards.keys.is_sorted() else shards.keys.argsort()  # a set's keys are sorted already
    def sort(a):
        return a if order is None else a[order]
    keys = sort(shards.keys)
    spans = (shards.shard_names, sort(shards.shard_of), *(sort(a) for a in hr))
    columns = _key_columns(shards, ("split", "sha256"))
    splits = _key_column(keys, columns["split"], sort) if "split" in columns else {}
    digests = _key_column(keys, columns["sha256"], sort) if "sha256" in columns else {}
    return Source(inp, True, keys, splits, {}, digests, spans)


def _key_columns(shards: ShardSet, names: Sequence[str]) -> dict[str, tuple[str, Any]]:
    """The columns `names` that the index has, each as (kind, values) in index row order, read a
    piece at a time: split as "codes" (names, int32 codes), sha256 as "hex" (uint8 (n, 32)); a column
    with a value that would not come back the same (a missing split, a digest that is not lower-case
    hex) is read whole as "objects"."""
    have = [c for c in names if c in shards.columns]
    parts: dict[str, list[np.ndarray]] = {c: [] for c in have}
    labels: dict[str, int] = {}
    compact = set(have)
    for piece in shards.iter_frames(have):
        for c in compact.copy():
            values = piece[c].tolist()
            part = _codes(values, labels) if c == "split" else _digests(values)
            if part is None:
                compact.discard(c)
            else:
                parts[c].append(part)
    out: dict[str, tuple[str, Any]] = {}
    for c in have:
        if c not in compact:
            out[c] = ("objects", shards.frame([c])[c].to_numpy(dtype=object))
        elif c == "split":
            out[c] = ("codes", (list(labels), np.concatenate(parts[c]) if parts[c] else np.zeros(0, np.int32)))
        else:
            out[c] = ("hex", np.concatenate(parts[c]) if parts[c] else np.zeros((0, 32), np.uint8))
    return out


def _codes(values: list[Any], labels: dict[str, int]) -> np.ndarray | None:
    if not all(isinstance(v, str) for v in values):
        return None
    return np.array([labels.setdefault(v, len(labels)) for v in values], dtype=np.int32)


def _digests(values: list[Any]) -> np.ndarray | None:
    if not all(isinstance(v, str) and len(v) == 64 for v in values):
        return None
    joined = "".join(values)
    try:
        raw = bytes.fromhex(joined)
    except ValueError:
        return None
    return np.frombuffer(raw, np.uint8).reshape(-1, 32) if raw.hex() == joined else None


def _key_column(keys: Keys, column: tuple[str, Any], sort) -> KeyColumn:
    """A column of `_key_columns` as a KeyColumn over `keys` (`sort` puts its rows in key order)."""
    kind, values = column
    if kind == "codes":
        return KeyColumn(keys, kind, (values[0], sort(values[1])))
    return KeyColumn(keys, kind, sort(values))


def resolve_backend(backend: str, preset: Preset, gpu: bool | None = None) -> str:
    """`reference`, `dali-cpu` or `dali-gpu` for a configured `auto|dali|reference`; `auto` is the
    reference backend for a preset the DALI graph cannot run (bsrgan, user ops).
    gpu: whether the GPUs that will run the graphs exist (a Ray cluster's); None: one is visible here.
    Raises ValueError on another backend."""
    from .dali_backend import cuda_visible, graph_problem
    if backend == "reference" or (backend == "auto" and graph_problem(preset)):
        return "reference"
    gpu = cuda_visible() if gpu is None else gpu
    if backend == "auto":
        return "dali-gpu" if gpu else "reference"
    if backend == "dali":
        return "dali-gpu" if gpu else "dali-cpu"
    raise ValueError(f"backend must be 'auto', 'dali' or 'reference', got {backend!r}")


def plan_set(inp: Path, cfg: DegradeConfig, *, seed: int, scale: int,
             gpu: bool | None = None) -> tuple[Context, JobPlan]:
    """Open `inp`, resolve the backend (`gpu`: see `resolve_backend`) and list every job (HR key ×
    variant), sorted by output key.

    Raises FileNotFoundError / ValueError on a bad input or seed, ParamsError on a bad scale.
    """
    check_scale("scale", scale)
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    source = open_source(Path(inp))
    ctx = Context(source, cfg.settings, seed, scale, resolve_backend(cfg.backend, cfg.settings, gpu))
    return ctx, JobPlan(source, cfg.variants)


class JobPlan(Sequence):
    """Every job of a source (HR key × variant) in output-key order, held as an array of positions
    into the source's key arrays; a `Job` is made when asked for (a Job and its tuple a sample,
    held for the whole run, grew the stage ~200 bytes a sample). `take` keeps a subset in order."""

    def __init__(self, source: Source, variants: int, order: np.ndarray | None = None) -> None:
        self.source, self.variants = source, variants
        self.order = _output_order(source.keys, variants) if order is None else order
        spans = source.spans
        if order is None and spans is not None and (spans[3] < 0).any():
            i = int(np.flatnonzero(spans[3] < 0)[0])
            raise ShardError(f"{spans[0][spans[1][i]]}: sample {source.keys[i]!r} has no hr.png member")

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        k, variant = divmod(int(self.order[i]), self.variants)
        src, key = self.source, self.source.keys[k]
        return Job(key, variant, hr_at=_hr_at(src, k) if src.spans is not None else None, hr_file=src.files.get(key), split=_at(src.splits, k, key),
                   hr_sha256=_at(src.sha256, k, key))

    def take(self, at: Sequence[int]) -> JobPlan:
        """The jobs at positions `at` (increasing), as a plan."""
        return JobPlan(self.source, self.variants, self.order[np.asarray(at, dtype=np.int64)])


def _hr_at(source: Source, k: int) -> tuple[str, int, int]:
    """(shard, offset, size) of the `hr.png` of the source's key number `k` (a set's `spans`)."""
    names, shard_of, offset, size = source.spans
    return names[shard_of[k]], int(offset[k]), int(size[k])


def _at(column: Mapping[str, Any], k: int, key: str) -> Any:
    return column.at(k) if isinstance(column, KeyColumn) else column.get(key)


def _output_order(keys: Keys, variants: int) -> np.ndarray:
    """Positions `k * variants + v` (key number k, variant v) sorted by `output_key`: the output keys
    are sorted as one fixed-width UTF-8 array (code point order, as Python sorts str)."""
    if not len(keys) or variants < 1:
        return np.zeros(0, np.int64)
    out = Keys.concat([keys.with_suffix(f"_v{v}") for v in range(variants)])  # v * n + k
    order = out.argsort()
    del out
    k, v = order % len(keys), order // len(keys)
    return (k * variants + v).astype(np.int64)


def for_workers(ctx: Context) -> Context:
    """`ctx` without the per-key tables its jobs already carry (keys, splits, files, sha256): pickled
    once per worker, it stays small however large the set."""
    return replace(ctx, source=replace(ctx.source, keys=Keys.of([]), splits={}, files={}, sha256={}, spans=None))


def read_hr(source: Source, job: Job) -> np.ndarray:
    """The HR tile of `job`, (H, W, 3) uint8 RGB: by offset from its shard, or its file.
    Raises ImageError when it does not decode."""
    if job.hr_at is not None:
        shard, offset, size = job.hr_at
        return decode_png(read_member(source.path / shard, job.hr_key, "hr.png", offset, size))
    return decode_image(job.hr_file.read_bytes())


def read_source_hr(source: Source, key: str) -> np.ndarray:
    """The HR tile `key` of a shard-set source, found in the source's own key arrays (its index
    is not read again). Raises KeyError for a key the set does not have."""
    k = source.keys.find(key)
    if k < 0 or source.spans is None:
        raise KeyError(f"{source.path}: no HR tile with key {key!r}")
    return read_hr(source, Job(key, 0, hr_at=_hr_at(source, k)))


def read_source_hrs(source: Source) -> list[np.ndarray]:
    """Every HR image of `source` in key order, (H, W, 3) uint8 RGB: a set's `hr.png`s by the spans
    the source holds (its index is not read again), a folder's files. Raises ImageError."""
    return [read_hr(source, Job(key, 0, hr_at=_hr_at(source, k) if source.spans is not None else None,
                                hr_file=source.files.get(key))) for k, key in enumerate(source.keys)]


def read_set_hrs(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """`<key>.hr.png` of each of `keys` in the HR shard set at `path`, as (H, W, 3) uint8 RGB (the
    index read once). Raises KeyError for an unknown key, FileNotFoundError for a missing set."""
    if not keys:
        return {}
    hr_set = ShardSet(path)
    return {key: decode_png(hr_set.read(key, ["hr.png"])["hr.png"]) for key in keys}


def read_sample(set_dir: Path, key: str) -> dict[str, bytes]:
    """Every member of sample `key` of the shard set `set_dir`, by member name.
    Raises KeyError for an unknown key."""
    return ShardSet(set_dir).read(key)
