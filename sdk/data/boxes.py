"""First-frame masks from boxes: ``parse_box("x,y,w,h")`` and GrabCut inside each box."""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np

from edgevos.errors import InputError

Box = Tuple[int, int, int, int]


#: object ids 1..254: 255 is "void" in the DAVIS convention and masks are uint8
MAX_OBJECTS = 254
#: the largest coordinate or side a box may have, in pixels (beyond any frame)
MAX_COORD = 100_000


def parse_box(text: str) -> Box:
    """``"x,y,w,h"`` in pixels -> ``(x, y, w, h)``.

    Args:
        text: four comma-separated numbers, e.g. ``"120,80,200,150"``.

    Returns:
        The box as integers (rounded).
    """
    parts = str(text).split(",")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise InputError(f"box '{text}' must be x,y,w,h in pixels, e.g. --init-box 120,80,200,150")
    return check_box(values, text)


def check_box(values, text=None) -> Box:
    """Four finite numbers of at most :data:`MAX_COORD` pixels, width and height positive ->
    ``(x, y, w, h)`` rounded to integers; anything else is an :class:`InputError`."""
    shown = text if text is not None else ",".join(str(v) for v in values)
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4:
        raise InputError(f"box '{shown}' must be x,y,w,h in pixels, e.g. --init-box 120,80,200,150")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise InputError(f"box '{shown}': {bad[0]} is not a finite number; give x,y,w,h in pixels, "
                         f"e.g. --init-box 120,80,200,150")
    big = [v for v in values if abs(v) > MAX_COORD]
    if big:
        raise InputError(f"box '{shown}': {big[0]:g} is beyond {MAX_COORD} pixels; give x,y,w,h inside the frame")
    x, y, w, h = (int(round(v)) for v in values)
    if w <= 0 or h <= 0:
        raise InputError(f"box '{shown}': width and height must be positive")
    return x, y, w, h


def check_box_count(n: int) -> None:
    """At most :data:`MAX_OBJECTS` boxes (id 255 is void; 256 does not fit a uint8 mask)."""
    if n > MAX_OBJECTS:
        raise InputError(f"{n} boxes given: at most {MAX_OBJECTS} objects fit a mask (id 255 is void); "
                         f"track the others in a second run")


def _tidy(fg: np.ndarray) -> np.ndarray:
    """Drop specks (components under a tenth of the largest) and fill holes."""
    import cv2

    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n > 2:
        areas = stats[1:, cv2.CC_STAT_AREA]
        fg = np.isin(lab, 1 + np.nonzero(areas >= 0.1 * areas.max())[0])
    n, lab = cv2.connectedComponents((~fg).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    return fg | (lab > 0) & ~np.isin(lab, border)


def box_region(shape, box: Box, margin: float = 0.03) -> np.ndarray:
    """Boolean (H, W) map of ``box`` grown by ``margin`` of its size (+2 px) on each side."""
    H, W = shape[:2]
    x, y, w, h = box
    dx, dy = int(margin * w) + 2, int(margin * h) + 2
    out = np.zeros((H, W), bool)
    out[max(0, y - dy):min(H, y + h + dy), max(0, x - dx):min(W, x + w + dx)] = True
    return out


def grabcut_mask(rgb: np.ndarray, boxes: Sequence[Box], iterations: int = 5) -> np.ndarray:
    """First-frame mask from boxes: object k+1 is GrabCut inside box k (specks dropped,
    holes filled), or the filled box when GrabCut finds nothing.

    Args:
        rgb: the first frame, uint8 (H, W, 3).
        boxes: one (x, y, w, h) per object, in pixels.
        iterations: GrabCut iterations.

    Returns:
        uint8 (H, W) object ids, 0 background.
    """
    import cv2

    check_box_count(len(boxes))
    boxes = [check_box(b) for b in boxes]
    H, W = rgb.shape[:2]
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    out = np.zeros((H, W), np.uint8)
    for k, (x, y, w, h) in enumerate(boxes, start=1):
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(W, x + w), min(H, y + h)
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise InputError(f"box {x},{y},{w},{h} lies outside the {W}x{H} frame: give a box inside it")
        gc = np.zeros((H, W), np.uint8)
        fg = None
        try:
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            cv2.grabCut(bgr, gc, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
            fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
        except cv2.error:
            fg = None
        if fg is None or not fg.any():
            fg = np.zeros((H, W), bool)
            fg[y0:y1, x0:x1] = True
        else:
            fg = _tidy(fg)
        out[fg & (out == 0)] = k
    return out
