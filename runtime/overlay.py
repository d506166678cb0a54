"""Draw masks on frames: a colour per object id, alpha blend, contours, status text."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def _palette() -> np.ndarray:
    """The DAVIS/PASCAL colour map (id -> RGB), so overlays match saved mask PNGs."""
    try:
        from edgevos.data.masks import DAVIS_PALETTE

        return np.asarray(DAVIS_PALETTE, dtype=np.uint8)
    except ImportError:  # pragma: no cover - the data package is part of edgevos
        ids = np.arange(256)
        pal = np.zeros((256, 3), np.int64)
        for j in range(8):
            for c in range(3):
                pal[:, c] |= ((ids >> (3 * j + c)) & 1) << (7 - j)
        return pal.astype(np.uint8)


PALETTE = _palette()


def draw_overlay(rgb: np.ndarray, mask: np.ndarray, *, alpha: float = 0.5, contour: bool = True,
                 lines: Sequence[str] = (), font_scale: Optional[float] = None) -> np.ndarray:
    """A new (H, W, 3) uint8 image: ``rgb`` with each object id of ``mask`` tinted in
    its palette colour (``alpha`` blend), outlined, and ``lines`` of text top-left."""
    import cv2

    from edgevos.errors import InputError

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"overlay frame must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if mask.shape != rgb.shape[:2]:
        raise InputError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} but frame is {rgb.shape[1]}x{rgb.shape[0]}: "
            "pass a mask of the frame's size"
        )
    out = rgb.copy()
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    # per object id, work inside its bounding box only: typical objects cover a
    # small part of the frame, and whole-frame fancy indexing costs ~10 ms at 480p
    counts = cv2.calcHist([m], [0], None, [256], [0, 256]).ravel()
    a = float(alpha)
    for obj in np.flatnonzero(counts[1:255]) + 1:
        binary = cv2.compare(m, int(obj), cv2.CMP_EQ)  # 0/255
        x, y, w, h = cv2.boundingRect(binary)
        roi, b = out[y:y + h, x:x + w], binary[y:y + h, x:x + w]
        colour = tuple(int(v) for v in PALETTE[obj])
        tint = np.empty_like(roi)
        tint[:] = colour
        blended = cv2.addWeighted(roi, 1.0 - a, tint, a, 0.0)
        cv2.copyTo(blended, b, roi)  # in place: roi is a view of out
        if contour:
            contours, _ = cv2.findContours(b, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x, y))
            edge = tuple(min(255, v + 80) for v in colour)
            cv2.drawContours(out, contours, -1, edge, 2)
    if lines:
        h = rgb.shape[0]
        scale = font_scale if font_scale is not None else max(0.4, min(1.0, h / 720))
        y = int(22 * scale / 0.6)
        for text in lines:
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            cv2.rectangle(out, (4, y - th - 4), (8 + tw, y + base), (0, 0, 0), -1)
            cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
            y += th + base + 8
    return out


def status_lines(result=None, fps: Optional[float] = None) -> list:
    """Short status text for the overlay: FPS and whether the frame was reused or computed."""
    parts = []
    if fps is not None and fps > 0:
        parts.append(f"{fps:5.1f} FPS")
    if result is not None:
        reused = getattr(result, "reused", None)
        if reused is not None:
            p = getattr(result, "p_gate", None)
            gate = f" p={p:.2f}" if p is not None else ""
            parts.append(("reused" if reused else "computed") + gate)
        total = getattr(result, "total_ms", None)
        if total is not None:
            parts.append(f"{total:.1f} ms")
    return ["  ".join(parts)] if parts else []
