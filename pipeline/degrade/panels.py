"""What the degrade report's histograms show, counted over an index read in pieces (#20 §4).

An LR index has a row per sample: at a million samples its recipe columns alone are hundreds of
MB. `summarize` reads the table twice through a zero-argument callable that yields its pieces
(`ShardSet.iter_frames`, or `lambda: [table]` for a table in memory): pass 1 keeps counts, minima,
maxima and label counts per column; pass 2 counts each numeric panel's values into bins whose edges
pass 1 fixed, the edges `ax.hist(values, bins=30)` (and the log `np.geomspace`) would take from the
whole column. So a panel is the same whatever the pieces, and no column of the whole index is held.
The pieces of one table must give a column the same dtype in every piece (`iter_frames` sees to it).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .recipe import BASE_COLUMNS, BSRGAN_COLUMNS, STRING_COLUMNS

Pieces = Callable[[], Iterable[pd.DataFrame]]
BINS = 30

# x-axis label of a numeric recipe column, by the end of its name: the unit as stored (DESIGN §4)
_UNITS = (
    ("_size", "kernel size (px)"), ("_sigma_x", "σx (px)"), ("_sigma_y", "σy (px)"),
    ("_theta", "rotation θ (radians)"), ("_beta", "shape β (no unit)"), ("_omega", "cut-off ω (radians/px)"),
    ("_scale", "scale factor (×)"), ("_gray", "gray noise (0 colour, 1 gray)"),
    ("_quality", "JPEG quality (0–100)"), ("_shot", "shot: variance per unit linear signal"),
    ("camera_read", "read: variance, linear signal in [0, 1]"), ("_generations", "re-encodings"),
    ("codec_strength", "place in the codec's CRF range (0 finest)"), ("_frames", "clip length (frames)"),
    ("_motion", "most shift per frame (px)"),
)
# noise{s}_level holds σ for gaussian noise and a scale for poisson noise: one panel for each
_LEVELS = {"gaussian": "σ (grey levels of 255)", "poisson": "Poisson scale (no unit)"}
_LOG_X = ("_shot", "camera_read")  # column endings drawn log-uniformly: log bins show the draw as drawn


def _unit(col: str) -> str:
    return next((label for end, label in _UNITS if col.endswith(end)), "")


def user_op_columns(columns: Iterable[str]) -> list[str]:
    """The user ops' `<name>_<param>` columns among an index's or recipes table's `columns` (in
    table order): `recipe_columns` puts them after every built-in column, and neither table adds a
    column after those."""
    cols = list(columns)
    known = [i for i, c in enumerate(cols) if c in BASE_COLUMNS or c in BSRGAN_COLUMNS]
    return cols[known[-1] + 1:] if known else []


def recipe_columns_of(columns: Iterable[str]) -> list[str]:
    """The recipe columns of a table with `columns` that get a panel or a frequency row, built-in
    ones first, user ops' last."""
    cols = list(columns)
    return [c for c in BASE_COLUMNS + BSRGAN_COLUMNS if c in cols and c != "bsrgan_order"] + user_op_columns(cols)


def report_columns(columns: Sequence[str], extra: Iterable[str] = ("height", "width")) -> list[str]:
    """The index columns `summarize` reads, in index order (user ops are found by their place):
    `ShardSet.iter_frames(report_columns(shards.columns))` reads no other."""
    wanted = set(recipe_columns_of(columns)) | set(extra)
    return [c for c in columns if c in wanted]


def is_names(values: pd.Series) -> bool:
    """A user op's param drawn from a `choice` of names (strings), not numbers."""
    return not pd.api.types.is_numeric_dtype(values) and bool(values.dropna().map(lambda v: isinstance(v, str)).any())


@dataclass
class Panel:
    """One panel: `labels` (label → count, sorted by label) for names, else the histogram's
    `edges` (BINS + 1) and integer `counts`, on a log x axis where `log`."""
    title: str
    xlabel: str
    labels: pd.Series | None = None
    edges: np.ndarray | None = None
    counts: np.ndarray | None = None
    log: bool = False

    @property
    def total(self) -> int:
        return int(self.labels.sum() if self.labels is not None else self.counts.sum())


@dataclass
class Summary:
    """`rows` of the table; its `panels`; `names`: label counts of every names column (its
    frequencies, 'n/a' counting the missing); `ranges`: (min, max) of the `extra` columns."""
    rows: int
    panels: list[Panel]
    names: dict[str, pd.Series]
    ranges: dict[str, tuple]


class _Range:
    """Count, min and max of one numeric panel's values, piece by piece: its bin edges."""

    def __init__(self) -> None:
        self.count, self.lo, self.hi, self.dtype = 0, None, None, None

    def add(self, values: pd.Series) -> None:
        if not len(values):
            return
        lo, hi = values.min(), values.max()
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)
        self.dtype = values.dtype if self.dtype is None else np.result_type(self.dtype, values.dtype)
        self.count += len(values)

    def edges(self, log: bool) -> np.ndarray:
        """The edges `ax.hist(values, bins=BINS)` takes from the whole column (numpy's depend on
        its min and max only), or log-spaced ones from min to max."""
        if not self.count:
            return np.histogram_bin_edges(np.empty(0), BINS)
        if log and self.hi > self.lo:
            return np.geomspace(self.lo, self.hi, BINS + 1)
        return np.histogram_bin_edges(np.array([self.lo, self.hi], dtype=self.dtype), BINS)


def _numbers(piece: pd.DataFrame, col: str, kind: str | None) -> pd.Series:
    """A piece's numbers of panel (col, kind), NaN left out: of the rows whose `<...>_kind` is
    `kind` for a `_level` panel split by kind."""
    numbers = pd.to_numeric(piece[col], errors="coerce")
    if kind is not None:
        numbers = numbers[piece[col.replace("_level", "_kind")] == kind]
    return numbers.dropna()


class _Column:
    """What pass 1 keeps of one recipe column: values present and missing, the labels of names,
    the number ranges of its panels (one per noise kind for a `_level` split by `_kind`)."""

    def __init__(self, col: str, columns: Sequence[str]) -> None:
        self.col, self.present, self.missing, self.numeric_missing, self.strings = col, 0, 0, 0, False
        self.labels: Counter[str] = Counter()
        split = col.endswith("_level") and col.replace("_level", "_kind") in columns
        self.ranges = {kind: _Range() for kind in (_LEVELS if split else [None])}

    def add(self, piece: pd.DataFrame) -> None:
        values = piece[self.col]
        present = values.notna()
        self.present += int(present.sum())
        self.missing += int((~present).sum())
        self.strings = self.strings or is_names(values)
        if self.col in STRING_COLUMNS or not pd.api.types.is_numeric_dtype(values):  # names (or object numbers)
            self.labels.update(values[present].astype(object).astype(str).value_counts().to_dict())
        if self.col in STRING_COLUMNS:
            return
        self.numeric_missing += int(pd.to_numeric(values, errors="coerce").isna().sum())
        for kind, numbers in self.ranges.items():
            numbers.add(_numbers(piece, self.col, kind))

    @property
    def is_names(self) -> bool:
        return self.col in STRING_COLUMNS or self.strings

    def label_counts(self) -> pd.Series:
        """The labels and their counts, 'n/a' for values missing, sorted by label."""
        counts = self.labels + Counter({"n/a": self.missing})
        return pd.Series(dict(counts), dtype=np.int64).sort_index()

    def panels(self) -> list[tuple[Panel, str | None]]:
        """Its panels (none for a column without a value), each numeric one with its kind."""
        if not self.present:
            return []
        if self.is_names:
            return [(Panel(self.col, "", labels=self.label_counts()), None)]
        if None not in self.ranges:  # split by kind: a panel for each kind drawn
            drawn = [(Panel(f"{self.col}, {kind}", _LEVELS[kind]), kind) for kind, r in self.ranges.items() if r.count]
        else:
            numbers, missing = self.ranges[None], self.numeric_missing
            log = self.col.endswith(_LOG_X) and (not numbers.count or numbers.lo > 0)  # as `(values > 0).all()`
            drawn = [(Panel(self.col + (f" ({missing} n/a)" if missing else ""), _unit(self.col), log=log), None)]
        for panel, kind in drawn:
            panel.edges, panel.counts = self.ranges[kind].edges(panel.log), np.zeros(BINS, np.int64)
        return drawn


def summarize(pieces: Pieces, extra: Sequence[str] = ()) -> Summary:
    """The panels and label counts of a table's recipe columns, and the (min, max) of its `extra`
    columns, from the table's pieces read twice (`pieces()` each time)."""
    rows, columns, ranges = 0, None, {}
    for piece in pieces():
        if columns is None:
            columns = [_Column(c, list(piece.columns)) for c in recipe_columns_of(piece.columns)]
        if not len(piece):
            continue
        rows += len(piece)
        for column in columns:
            column.add(piece)
        for c in extra:
            lo, hi = piece[c].min(), piece[c].max()
            ranges[c] = (lo, hi) if c not in ranges else (min(ranges[c][0], lo), max(ranges[c][1], hi))
    drawn = [(column.col, panel, kind) for column in columns or [] for panel, kind in column.panels()]
    numeric = [(col, panel, kind) for col, panel, kind in drawn if panel.edges is not None]
    if numeric:
        for piece in pieces():
            for col, panel, kind in numeric:
                panel.counts += np.histogram(_numbers(piece, col, kind).to_numpy(), bins=panel.edges)[0]
    names = {column.col: column.label_counts() for column in columns or [] if column.is_names}
    return Summary(rows, [panel for _, panel, _ in drawn], names, ranges)
