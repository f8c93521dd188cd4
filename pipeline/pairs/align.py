"""Register a captured LR image against its HR image and find the region where they agree.

The HR is reduced to the LR grid (`cv2.INTER_AREA` by the integer scale) and phase-correlated with
the LR (`cv2.phaseCorrelate` on gray float32 under a Hann window). That gives the shift `d` (LR px,
sub-pixel) with `lr[y, x] ≈ area(hr)[y + dy, x + dx]`. Its whole-HR-pixel part (`round(scale·d)`)
is taken out by *cropping*: the HR crop starts that many HR px further, both are cut to their
overlap, and no pixel is resampled. The crop is measured again (OpenCV's sub-pixel estimate is
biased away from whole LR px, so a shift of 2.25 LR px can read as 2.18) and moved by whole HR px
until less than half an HR px remains. What then remains, `residual`, is below `0.5 / scale` LR px
by construction at scale >= 2; it is accepted up to `max_residual` and recorded.

A pair is refused, with the reason, when no match is trusted (`response` below `min_response`:
unrelated content), when it is shifted by more than `max_shift` LR px (the crop would eat the
image), when a residual beyond `max_residual` stays (scale 1), or when it is not a pure shift: the
local shifts of a grid of tiles (3×3 where tiles keep 24 LR px) differ from zero by more than
`2 · max_residual` (rotation, a slightly wrong scale, lens distortion). Tiles hold a fraction of the
pixels, so they get twice the tolerance; flat tiles (response below `min_response`) are not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MIN_SIDE = 16   # LR px: the smallest overlap that is registered at all
_TILE = 24      # LR px: the smallest tile of the local check (smaller ones are too noisy to measure)
_CLIMB = 16     # HR px the refinement may move from the phase-correlation estimate


@dataclass(frozen=True)
class Limits:
    """What an import accepts. Shifts in LR px."""
    max_shift: float = 8.0      # largest misalignment taken out by cropping
    max_residual: float = 0.25  # sub-pixel misalignment left after cropping that is accepted
    min_response: float = 0.4   # phase-correlation peak below which a match is not trusted

    def __post_init__(self) -> None:
        if not self.max_shift >= 0 or not self.max_residual >= 0 or not 0 <= self.min_response <= 1:
            raise ValueError(f"expected max_shift >= 0, max_residual >= 0 and 0 <= min_response <= 1, got "
                             f"{self.max_shift}, {self.max_residual}, {self.min_response}")


@dataclass(frozen=True)
class Alignment:
    """Where a pair agrees. Boxes are (y, x, height, width) in each file's own pixels."""
    shift: tuple[float, float]     # (dy, dx) measured on the whole images, LR px
    shift_hr: tuple[int, int]      # whole HR px the crop takes out
    residual: tuple[float, float]  # (dy, dx) measured on the crops, LR px
    response: float                # phase-correlation peak on the crops (1 = identical content)
    hr_box: tuple[int, int, int, int]
    lr_box: tuple[int, int, int, int]


def measure_shift(hr: np.ndarray, lr: np.ndarray, scale: int) -> tuple[float, float, float]:
    """(dy, dx, response): the shift in LR px with `lr[y, x] ≈ area(hr)[y + dy, x + dx]`.

    hr: (H, W, 3) uint8, lr: (h, w, 3) uint8; the top-left `min(H // scale, h) × min(W // scale, w)`
    LR px of both are compared. Raises ValueError when that overlap is below MIN_SIDE px.
    """
    hs, ws = hr.shape[0] // scale, hr.shape[1] // scale
    h, w = min(hs, lr.shape[0]), min(ws, lr.shape[1])
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ValueError(f"overlap {w}x{h} LR px is too small to register (at least {MIN_SIDE})")
    h, w = _fft_side(h), _fft_side(w)
    small = cv2.resize(hr[:hs * scale, :ws * scale], (ws, hs), interpolation=cv2.INTER_AREA) if scale > 1 else hr
    a = cv2.cvtColor(np.ascontiguousarray(small[:h, :w]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    b = cv2.cvtColor(np.ascontiguousarray(lr[:h, :w]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    (dx, dy), response = cv2.phaseCorrelate(a, b, cv2.createHanningWindow((w, h), cv2.CV_32F))
    return -float(dy), -float(dx), float(response)  # OpenCV gives the shift of lr relative to hr


def _fft_side(n: int) -> int:
    """The largest even n' <= n that OpenCV's DFT takes without padding: OpenCV pads to its optimal
    size and measures from that size's centre, so an odd padded size reads every shift 0.5 px off."""
    while n > 2 and (n % 2 or cv2.getOptimalDFTSize(n) != n):
        n -= 1
    return n


def crop_boxes(hr_hw: tuple[int, int], lr_hw: tuple[int, int], scale: int,
               shift_hr: tuple[int, int]) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """HR and LR boxes (y, x, h, w) of the overlap when LR px (i, j) covers HR px
    (scale·i + shift_hr[0], scale·j + shift_hr[1]): the HR box is exactly `scale` times the LR box."""
    hr_org, lr_org, lr_len = [], [], []
    for axis in (0, 1):
        lr_at = max(0, -(shift_hr[axis] // scale))      # first LR px whose HR block starts inside the HR
        hr_at = scale * lr_at + shift_hr[axis]
        n = max(0, min(lr_hw[axis] - lr_at, (hr_hw[axis] - hr_at) // scale))
        hr_org.append(hr_at)
        lr_org.append(lr_at)
        lr_len.append(n)
    return ((hr_org[0], hr_org[1], lr_len[0] * scale, lr_len[1] * scale),
            (lr_org[0], lr_org[1], lr_len[0], lr_len[1]))


def crop(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    y, x, h, w = box
    return np.ascontiguousarray(img[y:y + h, x:x + w])


def align_pair(hr: np.ndarray, lr: np.ndarray, scale: int, limits: Limits = Limits()) -> Alignment | str:
    """Register `lr` (h, w, 3) against `hr` (H, W, 3), both uint8 RGB at integer `scale`.

    Returns the Alignment, or the reason the pair is refused (one line, for rejects.csv).
    """
    try:
        dy, dx, response = measure_shift(hr, lr, scale)
    except ValueError as err:
        return str(err)
    if response < limits.min_response:
        return f"no reliable match (phase-correlation response {response:.2f} < {limits.min_response})"
    if max(abs(dy), abs(dx)) > limits.max_shift:
        return f"misaligned by ({dy:.2f}, {dx:.2f}) LR px (dy, dx); at most {limits.max_shift} is realigned"
    refined = refine_shift(hr, lr, scale, (round(scale * dy), round(scale * dx)))
    if isinstance(refined, str):
        return refined
    shift_hr, (ry, rx) = refined
    if max(abs(ry), abs(rx)) > limits.max_residual:
        return (f"misaligned by a residual ({ry:.2f}, {rx:.2f}) LR px after cropping whole HR px; "
                f"at most {limits.max_residual} is accepted")
    hr_box, lr_box = crop_boxes(hr.shape[:2], lr.shape[:2], scale, shift_hr)
    warp = local_spread(crop(hr, hr_box), crop(lr, lr_box), scale, limits.min_response)
    if warp > 2 * limits.max_residual:
        return (f"not a pure shift: local shifts differ by up to {warp:.2f} LR px across the image "
                f"(at most {2 * limits.max_residual}; rotation, scale or lens distortion?)")
    return Alignment((dy, dx), shift_hr, (ry, rx), response, hr_box, lr_box)


def refine_shift(hr: np.ndarray, lr: np.ndarray, scale: int,
                 start: tuple[int, int]) -> tuple[tuple[int, int], tuple[float, float]] | str:
    """The whole-HR-px shift that best aligns the pair, climbing from `start` to the neighbour with the
    highest normalised cross-correlation of `area(hr crop)` and the LR crop, and the sub-HR-px rest
    (LR px) from a parabola through the scores on each axis. Returns a reason when it does not settle."""
    scores: dict[tuple[int, int], float] = {}

    def score(d: tuple[int, int]) -> float:
        if d not in scores:
            scores[d] = _ncc(hr, lr, scale, d)
        return scores[d]

    at = start
    for _ in range(_CLIMB):
        best = max(((at[0] + a, at[1] + b) for a in (-1, 0, 1) for b in (-1, 0, 1)), key=score)
        if score(best) <= score(at):
            break
        at = best
    else:
        return f"registration did not settle within {_CLIMB} HR px of the phase-correlation estimate"
    if score(at) == -np.inf:
        return f"overlap is too small to register (at least {MIN_SIDE} LR px)"
    rest = [_vertex(score((at[0] - 1, at[1])), score(at), score((at[0] + 1, at[1]))),
            _vertex(score((at[0], at[1] - 1)), score(at), score((at[0], at[1] + 1)))]
    return at, (rest[0] / scale, rest[1] / scale)


def _ncc(hr: np.ndarray, lr: np.ndarray, scale: int, shift_hr: tuple[int, int]) -> float:
    """Normalised cross-correlation of the gray `area(hr crop)` and LR crop at `shift_hr` (-inf: no overlap)."""
    hr_box, lr_box = crop_boxes(hr.shape[:2], lr.shape[:2], scale, shift_hr)
    if min(lr_box[2:]) < MIN_SIDE:
        return -np.inf
    a, b = _gray(crop(hr, hr_box), scale), _gray(crop(lr, lr_box), 1)
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


def _gray(img: np.ndarray, scale: int) -> np.ndarray:
    if scale > 1:
        img = cv2.resize(img, (img.shape[1] // scale, img.shape[0] // scale), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)


def _vertex(before: float, at: float, after: float) -> float:
    """Offset in (-0.5, 0.5) of the top of the parabola through three scores at -1, 0, +1."""
    den = before - 2 * at + after
    if not np.isfinite(den) or den >= 0:
        return 0.0
    return float(np.clip(0.5 * (before - after) / den, -0.5, 0.5))


def local_spread(hr: np.ndarray, lr: np.ndarray, scale: int, min_response: float) -> float:
    """Largest |local shift| (LR px) over a grid of up to 3×3 tiles of at least `_TILE` px of an
    aligned pair, counting tiles whose own match is trusted; 0.0 when the image is too small to tile."""
    h, w = lr.shape[:2]
    rows, cols = min(3, h // _TILE), min(3, w // _TILE)
    if rows < 2 or cols < 2:
        return 0.0
    th, tw = h // rows, w // cols
    spread = 0.0
    for i in range(rows):
        for j in range(cols):
            lr_box = (i * th, j * tw, th, tw)
            hr_box = (i * th * scale, j * tw * scale, th * scale, tw * scale)
            ty, tx, response = measure_shift(crop(hr, hr_box), crop(lr, lr_box), scale)
            if response >= min_response:
                spread = max(spread, abs(ty), abs(tx))
    return spread
