"""The numerics of the target model's filter objective, plain numpy: FRTM's hinge pixel weights,
labels at the feature size, the 3x3 score and its adjoint written out (no autograd), im2col,
preconditioned conjugate gradient, and the exact least-squares filter (a reference for tests).

Tap ``d = 3 * i + j`` of a 3x3 filter reads the offset ``OFFSETS[d] = (i - 1, j - 1)``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from edgevos.errors import InputError

OFFSETS = [(i - 1, j - 1) for i in range(3) for j in range(3)]  # tap d = 3*i + j -> (dy, dx)


def hinge_weights(label: np.ndarray, tf: float = 0.1, min_fg_pixels: int = 10, pixel_area: float = 1.0) -> np.ndarray:
    """FRTM's "hinge" pixel weights for one label map (h, w) -> (h, w) float32.

    ``af`` is the fraction of foreground (> 0.5) pixels; fewer than
    ``min_fg_pixels`` foreground *image* pixels count as ``af = tf`` (a label
    cell covers ``pixel_area`` image pixels: ``stride**2`` for a stride-16 map, so
    small objects keep their weighting as in FRTM, which counts at image resolution).  If ``af < tf``
    foreground pixels weigh ``tf / af`` and background ``(1 - tf) / (1 - af)``,
    so the object carries a share ``tf`` of the total weight; otherwise all weigh 1.
    """
    fg = np.asarray(label) > 0.5
    n_fg = int(fg.sum())
    af = n_fg / fg.size
    if n_fg * pixel_area < min_fg_pixels:
        af = tf
    if af >= tf:
        return np.ones(fg.shape, np.float32)
    wf, wb = tf / af, (1.0 - tf) / (1.0 - af)
    return np.where(fg, np.float32(wf), np.float32(wb)).astype(np.float32)


def resize_label(mask: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Resize a mask (H, W) to the feature size ``(h, w)`` as a soft label in [0, 1] (area average)."""
    import cv2

    m = np.asarray(mask, np.float32)
    if m.ndim != 2:
        raise InputError(f"mask has shape {m.shape}: pass a single (H, W) mask")
    if m.max(initial=0.0) > 1.0:
        m = (m > 0).astype(np.float32)
    h, w = int(size[0]), int(size[1])
    return np.clip(cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA), 0.0, 1.0).astype(np.float32)


def shift_sum(u: np.ndarray) -> np.ndarray:
    """(9, ..., h, w) -> (..., h, w): out[y, x] = sum_d u[d][y + dy, x + dx] (zero outside)."""
    h, w = u.shape[-2:]
    out = np.zeros(u.shape[1:], np.float32)
    for d, (oy, ox) in enumerate(OFFSETS):
        y0, y1 = max(0, -oy), h - max(0, oy)
        x0, x1 = max(0, -ox), w - max(0, ox)
        out[..., y0:y1, x0:x1] += u[d][..., y0 + oy:y1 + oy, x0 + ox:x1 + ox]
    return out


def shift_adjoint(g: np.ndarray) -> np.ndarray:
    """Adjoint of :func:`shift_sum`: (..., h, w) -> (9, ..., h, w)."""
    h, w = g.shape[-2:]
    t = np.zeros((9,) + g.shape, np.float32)
    for d, (oy, ox) in enumerate(OFFSETS):
        y0, y1 = max(0, -oy), h - max(0, oy)
        x0, x1 = max(0, -ox), w - max(0, ox)
        t[d][..., y0 + oy:y1 + oy, x0 + ox:x1 + ox] = g[..., y0:y1, x0:x1]
    return t


def im2col(z: np.ndarray) -> np.ndarray:
    """(K, h, w) -> (9K, h*w), row k*9 + d holds z_k shifted by tap d (zero padding 1)."""
    k, h, w = z.shape
    zp = np.zeros((k, h + 2, w + 2), np.float32)
    zp[:, 1:-1, 1:-1] = z
    col = np.empty((k, 9, h, w), np.float32)
    for d, (oy, ox) in enumerate(OFFSETS):
        col[:, d] = zp[:, 1 + oy:1 + oy + h, 1 + ox:1 + ox + w]
    return col.reshape(k * 9, h * w)


def filter_score(filt: np.ndarray, z: np.ndarray) -> np.ndarray:
    """filter (K, 9) applied to z (n, K, h, w) -> (n, h, w)."""
    n, k, h, w = z.shape
    u = np.matmul(filt.T, z.reshape(n, k, h * w))  # (n, 9, h*w)
    return shift_sum(u.reshape(n, 9, h, w).transpose(1, 0, 2, 3))


def pcg(apply_a, rhs: np.ndarray, x0: np.ndarray, minv: np.ndarray, iters: int) -> np.ndarray:
    """Preconditioned conjugate gradient, ``iters`` iterations from ``x0`` (x0 = 0 skips one product)."""
    x = x0.copy()
    r = rhs - apply_a(x) if np.any(x0) else rhs.copy()
    zr = minv * r
    p = zr.copy()
    rz = float(np.dot(r.astype(np.float64), zr))
    for _ in range(int(iters)):
        if rz <= 0.0:
            break
        ap = apply_a(p)
        pap = float(np.dot(p.astype(np.float64), ap))
        if not pap > 0.0:
            break
        alpha = rz / pap
        x += alpha * p
        r -= alpha * ap
        zr = minv * r
        rz_new = float(np.dot(r.astype(np.float64), zr))
        p = zr + (rz_new / rz) * p
        rz = rz_new
    return x


def fit_filter_lstsq(z: np.ndarray, labels: np.ndarray, sample_weights: np.ndarray, reg_filter: float = 1e-2,
                     pixel_weights: Optional[np.ndarray] = None, tf: float = 0.1,
                     min_fg_pixels: int = 10, pixel_area: float = 1.0) -> np.ndarray:
    """Exact minimiser of the filter-only objective (float64 normal equations).

    ``z`` (n, K, h, w) projected features, ``labels`` (n, h, w), ``sample_weights`` (n,);
    ``pixel_weights`` (n, h, w) default to the hinge weights of the labels.
    Returns the filter (1, K, 3, 3) float32.  Cost grows as n * (9K)^2 * h * w.
    """
    z = np.asarray(z, np.float32)
    y = np.asarray(labels, np.float32)
    n, k, h, w = z.shape
    if y.shape != (n, h, w):
        raise InputError(f"labels have shape {y.shape} but z is {z.shape}: pass (n, h, w) labels")
    if pixel_weights is None:
        pixel_weights = np.stack([hinge_weights(a, tf, min_fg_pixels, pixel_area) for a in y])
    a = np.asarray(sample_weights, np.float64)
    s_mat = reg_filter * np.eye(9 * k)
    rhs = np.zeros(9 * k)
    for i in range(n):
        col = im2col(z[i]).astype(np.float64)
        pw = np.asarray(pixel_weights[i], np.float64).ravel()
        s_mat += a[i] * (col * pw) @ col.T
        rhs += a[i] * col @ (pw * y[i].ravel())
    f = np.linalg.solve(s_mat, rhs)
    return f.astype(np.float32).reshape(1, k, 3, 3)
