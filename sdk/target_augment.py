"""First-frame augmentations for the target model's initial memory (FRTM's): flip, object
cut-and-paste over its inpainted background, rotation, scale, blur and their combinations."""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from edgevos.errors import InputError


def _cut_and_paste(img: np.ndarray, m: np.ndarray, rng) -> Tuple[np.ndarray, np.ndarray]:
    """The object cut out, its hole filled from the surrounding background, pasted at a random offset.

    The offset keeps the object's bounding box inside the frame; the hole is
    inpainted at quarter resolution (cheap, and only its blur is needed).
    """
    import cv2

    h, w = m.shape
    ys, xs = np.nonzero(m)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    dy = int(rng.integers(-y0, h - y1 + 1))
    dx = int(rng.integers(-x0, w - x1 + 1))
    small = cv2.resize(img, (max(w // 4, 1), max(h // 4, 1)), interpolation=cv2.INTER_AREA)
    hole = cv2.resize(m, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
    hole = cv2.dilate(hole, np.ones((3, 3), np.uint8))
    filled = cv2.resize(cv2.inpaint(small, hole, 3, cv2.INPAINT_TELEA), (w, h), interpolation=cv2.INTER_LINEAR)
    out = np.where(m[..., None] > 0, filled, img)
    moved = np.zeros_like(m)
    moved[y0 + dy:y1 + dy, x0 + dx:x1 + dx] = m[y0:y1, x0:x1]
    src = img[y0:y1, x0:x1]
    region = out[y0 + dy:y1 + dy, x0 + dx:x1 + dx]
    region[m[y0:y1, x0:x1] > 0] = src[m[y0:y1, x0:x1] > 0]
    return out, moved


def augment_first_frame(image: np.ndarray, mask: np.ndarray, n: int, seed: int = 0,
                        others: Optional[np.ndarray] = None) -> List[tuple]:
    """``n`` augmented copies of the first frame for the target model's initial memory.

    Cycles through FRTM-style transforms: horizontal flip, object cut-and-paste
    (the object moved over its inpainted background), rotation (up to 30 degrees),
    scale change (0.7-1.3), Gaussian blur, then random combinations with shifts.
    ``image`` is uint8 (H, W, 3), ``mask`` (H, W) binary; returns a list of
    (uint8 image (H, W, 3), uint8 mask (H, W) in {0, 1}) of the same size.
    A transform that would push the object out of the frame is replaced by a flip.
    ``others`` (H, W), the other objects' pixels (several objects): each copy then comes with them
    moved the same way, (image, mask, others), the pasted object covering them where it lands.
    """
    import cv2

    img = np.asarray(image)
    m = np.asarray(mask)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InputError(f"image has shape {img.shape} dtype {img.dtype}: pass a uint8 (H, W, 3) frame")
    if m.shape != img.shape[:2]:
        raise InputError(f"mask is {m.shape} but image is {img.shape[:2]}: pass a mask of the frame's size")
    if int(n) < 0:
        raise InputError(f"n={n}: ask for zero or more augmentations")
    m = (m > 0).astype(np.uint8)
    if not m.any():
        raise InputError(f"mask (shape {m.shape}) is empty: the first mask must contain the object")
    o = None
    if others is not None:
        o = (np.asarray(others) > 0).astype(np.uint8)
        if o.shape != m.shape:
            raise InputError(f"others is {o.shape} but mask is {m.shape}: pass the other objects' pixels at the "
                             "frame's size")
    h, w = m.shape
    rng = np.random.default_rng(seed)
    kinds = ["flip", "cutpaste", "rotate", "scale", "blur"]
    out = []
    for i in range(int(n)):
        kind = kinds[i] if i < len(kinds) else "combo"
        flip = kind == "flip" or (kind == "combo" and rng.random() < 0.5)
        paste = kind == "cutpaste" or (kind == "combo" and rng.random() < 0.3)
        angle = rng.uniform(-30, 30) if kind in ("rotate", "combo") else 0.0
        scale = rng.uniform(0.7, 1.3) if kind in ("scale", "combo") else 1.0
        shift = rng.uniform(-0.15, 0.15, 2) * (w, h) if kind == "combo" else np.zeros(2)
        sigma = rng.uniform(0.5, 3.0) if kind in ("blur", "combo") else 0.0
        im_a, m_a, o_a = img, m, o
        if flip:
            im_a, m_a = im_a[:, ::-1], m_a[:, ::-1]
            o_a = None if o_a is None else o_a[:, ::-1]
        if paste:
            im_a, m_a = _cut_and_paste(np.ascontiguousarray(im_a), np.ascontiguousarray(m_a), rng)
            o_a = None if o_a is None else o_a * (1 - m_a)
        if angle or scale != 1.0 or shift.any():
            mat = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
            mat[:, 2] += shift
            im_w = cv2.warpAffine(np.ascontiguousarray(im_a), mat, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT_101)
            m_w = cv2.warpAffine(np.ascontiguousarray(m_a), mat, (w, h), flags=cv2.INTER_NEAREST,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            if m_w.any():
                im_a, m_a = im_w, m_w
                if o_a is not None:
                    o_a = cv2.warpAffine(np.ascontiguousarray(o_a), mat, (w, h), flags=cv2.INTER_NEAREST,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            else:
                im_a, m_a = img[:, ::-1], m[:, ::-1]
                o_a = None if o is None else o[:, ::-1]
        if sigma > 0:
            im_a = cv2.GaussianBlur(np.ascontiguousarray(im_a), (0, 0), sigma)
        item = (np.ascontiguousarray(im_a, np.uint8), np.ascontiguousarray(m_a, np.uint8))
        out.append(item if o is None else item + (np.ascontiguousarray(o_a, np.uint8),))
    return out
