"""Synthetic VOS sequences with exact ground truth.

Textured objects (ellipses, polygons, smooth blobs) move along smooth curved
paths over a textured background, change scale and rotate, and pass in front
of each other; the camera can pan.  Every pixel of a frame is either the
background or exactly one object's texture, and the mask says which: the id of
the front-most object covering the pixel, 0 for background.

Generation is deterministic given the config and fast (numpy + OpenCV: a
30-frame 240x432 sequence takes a few tens of milliseconds).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from edgevos.data.davis import VideoSequence
from edgevos.errors import InputError


@dataclass(frozen=True)
class SyntheticConfig:
    height: int = 240
    width: int = 432
    num_frames: int = 30
    num_objects: int = 2
    seed: int = 0
    speed: float = 4.0          # mean object speed, px/frame
    scale_jitter: float = 0.02  # largest relative scale change per frame
    occlusion: bool = True      # paths cross (objects occlude each other) or stay in separate columns
    texture_scale: float = 1.0  # size of texture features (1.0: stripes 8-32 px, noise cells ~24 px)
    name: Optional[str] = None  # default "synthetic-<seed>"
    camera_pan: float = 0.0     # background motion, px/frame (0: static camera)
    noise: float = 0.0          # std of per-frame Gaussian sensor noise, grey levels

    def __post_init__(self):
        if self.height < 32 or self.width < 32:
            raise InputError(f"synthetic frames must be at least 32x32, got {self.width}x{self.height}")
        if self.num_frames < 1:
            raise InputError(f"num_frames must be >= 1, got {self.num_frames}")
        if not 1 <= self.num_objects <= 20:
            raise InputError(f"num_objects must be in 1..20, got {self.num_objects}")
        for field in ("speed", "scale_jitter", "texture_scale", "camera_pan", "noise"):
            v = getattr(self, field)
            if not (v >= 0 and math.isfinite(v)):
                raise InputError(f"{field} must be a finite value >= 0, got {v}")
        if self.texture_scale == 0:
            raise InputError("texture_scale must be > 0")


class SyntheticSequence(VideoSequence):
    """A generated sequence held in memory.

    ``frames`` (T, H, W, 3) uint8 RGB, ``masks`` (T, H, W) uint8 ids,
    ``amodal`` (T, K, H, W) bool full extent of each object (before occlusion),
    ``depth_order`` object ids from back to front.
    """

    def __init__(self, name, frames, masks, amodal, depth_order, config):
        self.name = name
        self.frames = frames
        self.masks = masks
        self.amodal = amodal
        self.depth_order = list(depth_order)
        self.config = config
        self.frame_names = [f"{i:05d}" for i in range(len(frames))]

    def frame(self, i: int) -> np.ndarray:
        return self.frames[self._index(i)]

    def mask(self, i: int) -> np.ndarray:
        return self.masks[self._index(i)]


# ----------------------------------------------------------------------------- textures

def _texture(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """A (h, w, 3) uint8 texture: two colours mixed by low-frequency noise,
    stripes and a gradient, plus a colour-noise layer and fine grain."""
    import cv2

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def smooth_noise(cell: float) -> np.ndarray:
        gh = max(2, int(math.ceil(h / cell)) + 1)
        gw = max(2, int(math.ceil(w / cell)) + 1)
        grid = rng.random((gh, gw), dtype=np.float32)
        return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)

    noise = smooth_noise(rng.uniform(12, 40) * scale)
    theta = rng.uniform(0, math.pi)
    period = rng.uniform(8, 32) * scale
    stripes = 0.5 + 0.5 * np.sin((xx * math.cos(theta) + yy * math.sin(theta)) * (2 * math.pi / period)
                                 + rng.uniform(0, 2 * math.pi))
    if rng.random() < 0.5:  # square-ish stripes as well as smooth ones
        stripes = (stripes > 0.5).astype(np.float32) * 0.8 + stripes * 0.2
    a = rng.uniform(0, 2 * math.pi)
    ramp = xx * math.cos(a) + yy * math.sin(a)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    wts = rng.dirichlet([1.0, 1.0, 1.0]).astype(np.float32)
    t = wts[0] * noise + wts[1] * stripes + wts[2] * ramp           # (h, w) in [0, 1]

    c1 = rng.uniform(0, 255, 3).astype(np.float32)
    c2 = rng.uniform(0, 255, 3).astype(np.float32)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    tint = rng.normal(0, 1, 3).astype(np.float32)
    img += (smooth_noise(rng.uniform(6, 16) * scale)[..., None] - 0.5) * 50.0 * tint
    img += rng.normal(0, 4.0, (h, w, 1)).astype(np.float32)        # fine grain
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- shapes

def _outline(rng: np.random.Generator, r: float) -> np.ndarray:
    """Closed outline (N, 2) around the origin: ellipse, polygon or blob."""
    kind = rng.integers(3)
    if kind == 0:  # ellipse
        th = np.linspace(0, 2 * math.pi, 72, endpoint=False)
        pts = np.stack([r * np.cos(th), r * rng.uniform(0.5, 1.0) * np.sin(th)], 1)
    elif kind == 1:  # polygon, 3-8 vertices with sorted angles
        n = int(rng.integers(3, 9))
        base = np.linspace(0, 2 * math.pi, n, endpoint=False)
        jitter = rng.uniform(-0.35, 0.35, n) * (2 * math.pi / n)
        th = np.sort(np.mod(base + jitter + rng.uniform(0, 2 * math.pi), 2 * math.pi))
        rad = r * rng.uniform(0.65, 1.0, n)
        pts = np.stack([rad * np.cos(th), rad * np.sin(th)], 1)
    else:  # smooth blob: radius modulated by a few low harmonics
        th = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        rad = np.ones_like(th)
        for k in (2, 3, 4):
            rad += rng.uniform(-0.18, 0.18) * np.sin(k * th + rng.uniform(0, 2 * math.pi))
        pts = np.stack([r * rad * np.cos(th), r * rad * np.sin(th)], 1)
    return pts


class _Object:
    """Sprite (alpha + texture in sprite coordinates) and its per-frame pose."""

    def __init__(self, rng, r, texture_scale):
        import cv2

        outline = _outline(rng, r)
        self.extent = float(np.max(np.hypot(outline[:, 0], outline[:, 1])))
        size = int(math.ceil(2 * self.extent)) + 6
        self.center = np.array([(size - 1) / 2.0, (size - 1) / 2.0])
        alpha = np.zeros((size, size), np.uint8)
        pts = np.round((outline + self.center) * 16).astype(np.int32)
        cv2.fillPoly(alpha, [pts], 255, lineType=cv2.LINE_AA, shift=4)
        self.alpha = alpha
        self.texture = _texture(rng, size, size, texture_scale)

    def affine(self, pos, scale, angle) -> np.ndarray:
        c, s = math.cos(angle) * scale, math.sin(angle) * scale
        a = np.array([[c, -s], [s, c]])
        t = np.asarray(pos) - a @ self.center
        return np.hstack([a, t[:, None]])


def _scale_path(rng, n, jitter):
    """Smooth log-scale path: the per-frame rate follows a slow sine of
    amplitude ``jitter``."""
    period = rng.uniform(15, 60)
    phase = rng.uniform(0, 2 * math.pi)
    rate = jitter * np.sin(2 * math.pi * np.arange(n) / period + phase)
    log_s = np.concatenate([[0.0], np.cumsum(rate[:-1])])
    return np.clip(np.exp(log_s), 0.4, 2.5)


def _walk(rng, start, heading, speed, steps, box):
    """Smooth curved path of ``steps`` positions after ``start`` that bounces
    off the edges of ``box`` = (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    turn = rng.uniform(-0.08, 0.08)
    p = np.array(start, dtype=np.float64)
    out = []
    for _ in range(steps):
        heading += turn + rng.normal(0, 0.03)
        v = speed * np.array([math.cos(heading), math.sin(heading)])
        q = p + v
        if (q[0] < x0 and v[0] < 0) or (q[0] > x1 and v[0] > 0):
            heading = math.pi - heading
            v[0] = -v[0]
        if (q[1] < y0 and v[1] < 0) or (q[1] > y1 and v[1] > 0):
            heading = -heading
            v[1] = -v[1]
        p = p + v
        out.append(p.copy())
    return out


def _path(rng, n, start_frame, start, speed, box):
    """Positions for frames 0..n-1 passing through ``start`` at ``start_frame``."""
    heading = rng.uniform(0, 2 * math.pi)
    fwd = _walk(rng, start, heading, speed, n - 1 - start_frame, box)
    back = _walk(rng, start, heading + math.pi, speed, start_frame, box)
    return np.array(back[::-1] + [np.asarray(start, dtype=np.float64)] + fwd)


def _plan(rng, cfg: SyntheticConfig, occlusion: bool):
    """Objects and their poses: list of (object, positions (T,2), scales (T,), angles (T,))."""
    h, w, n, k = cfg.height, cfg.width, cfg.num_frames, cfg.num_objects
    plans = []
    for i in range(k):
        scales = _scale_path(rng, n, cfg.scale_jitter)
        r = rng.uniform(0.13, 0.22) * min(h, w) / math.sqrt(max(1.0, k / 2.0))
        if not occlusion:  # each object keeps to its own column
            col_w = w / k
            r = min(r, 0.45 * min(col_w, h) / (1.3 * scales.max()))
        obj = _Object(rng, r, cfg.texture_scale)
        reach = obj.extent * scales.max()
        speed = cfg.speed * rng.uniform(0.75, 1.25)
        if occlusion:
            margin = 0.6 * obj.extent
            box = (margin, margin, w - margin, h - margin)
            if i == 0 or n < 3:
                t0 = int(rng.integers(n))
                start = (rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3]))
            else:  # cross the path of an earlier object in the middle third
                j = int(rng.integers(i))
                t0 = int(rng.integers(n // 3, max(n // 3 + 1, (2 * n) // 3 + 1)))
                start = plans[j][1][t0] + rng.normal(0, 0.2 * obj.extent, 2)
        else:
            col = (i * w / k, (i + 1) * w / k)
            bx0, bx1 = col[0] + reach + 1, col[1] - reach - 1
            by0, by1 = reach + 1, h - reach - 1
            if bx0 > bx1:
                bx0 = bx1 = (col[0] + col[1]) / 2
            if by0 > by1:
                by0 = by1 = h / 2
            box = (bx0, by0, bx1, by1)
            t0 = 0
            start = (rng.uniform(bx0, bx1), rng.uniform(by0, by1))
        pos = _path(rng, n, t0, start, speed, box)
        if not occlusion:  # bounce tests act one step late; clamp exactly to the column
            pos[:, 0] = np.clip(pos[:, 0], box[0], box[2])
            pos[:, 1] = np.clip(pos[:, 1], box[1], box[3])
        angles = rng.uniform(0, 2 * math.pi) + np.radians(rng.uniform(-1.5, 1.5)) * np.arange(n)
        plans.append((obj, pos, scales, angles))
    return plans


def _object_layer(obj, m, w, h, texture=True):
    import cv2

    alpha = cv2.warpAffine(obj.alpha, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    tex = None
    if texture:
        tex = cv2.warpAffine(obj.texture, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return alpha >= 128, tex


def _visible_at_start(plans, order, w, h) -> bool:
    """Every object shows at least half of itself (and 50 px) in frame 0."""
    full = [_object_layer(obj, obj.affine(pos[0], sc[0], ang[0]), w, h, texture=False)[0]
            for obj, pos, sc, ang in plans]
    ids = np.zeros((h, w), np.int32)
    for i in order:
        ids[full[i]] = i + 1
    for i, m in enumerate(full):
        area = int(m.sum())
        vis = int((ids == i + 1).sum())
        if vis < 50 or vis < 0.5 * area:
            return False
    return True


def make_sequence(cfg: SyntheticConfig = SyntheticConfig()) -> SyntheticSequence:
    """Generate a sequence; the same config always gives the same arrays."""
    if not isinstance(cfg, SyntheticConfig):
        raise InputError(f"make_sequence expects a SyntheticConfig, got {type(cfg).__name__}")
    h, w, n, k = cfg.height, cfg.width, cfg.num_frames, cfg.num_objects
    frames = np.empty((n, h, w, 3), np.uint8)
    masks = np.zeros((n, h, w), np.uint8)
    amodal = np.zeros((n, k, h, w), bool)
    scene = iter_frames(cfg)
    order = next(scene)
    for t, (frame, mask, full) in enumerate(scene):
        frames[t], masks[t], amodal[t] = frame, mask, full
    name = cfg.name if cfg.name is not None else f"synthetic-{cfg.seed:04d}"
    return SyntheticSequence(name, frames, masks, amodal, order, cfg)


def iter_frames(cfg: SyntheticConfig = SyntheticConfig()):
    """The frames of :func:`make_sequence` one at a time, without holding the sequence.

    Yields first the depth order (object ids from back to front), then per frame a tuple
    (frame (H, W, 3) uint8, mask (H, W) uint8, amodal (K, H, W) bool).
    """
    import cv2

    if not isinstance(cfg, SyntheticConfig):
        raise InputError(f"iter_frames expects a SyntheticConfig, got {type(cfg).__name__}")
    rng = np.random.default_rng(cfg.seed)
    h, w, n, k = cfg.height, cfg.width, cfg.num_frames, cfg.num_objects

    # background canvas, larger than the frame when the camera pans
    pan_len = cfg.camera_pan * max(n - 1, 0)
    pad = int(math.ceil(pan_len / 2)) + 2 if cfg.camera_pan > 0 else 0
    background = _texture(rng, h + 2 * pad, w + 2 * pad, cfg.texture_scale * (1.5 if k else 1.0))
    pan_dir = rng.uniform(0, 2 * math.pi)

    attempts = 12
    for attempt in range(attempts):
        occlusion = cfg.occlusion and attempt < attempts - 1
        plans = _plan(rng, cfg, occlusion)
        order = [int(i) for i in rng.permutation(k)]  # back to front (0-based)
        if _visible_at_start(plans, order, w, h):
            break

    yield [i + 1 for i in order]
    for t in range(n):
        if pad:
            off = (t - (n - 1) / 2) * cfg.camera_pan
            ox = pad + off * math.cos(pan_dir)
            oy = pad + off * math.sin(pan_dir)
            m = np.array([[1.0, 0.0, -ox], [0.0, 1.0, -oy]])
            frame = cv2.warpAffine(background, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        else:
            frame = background.copy()
        mask = np.zeros((h, w), np.uint8)
        amodal = np.zeros((k, h, w), bool)
        for i in order:
            obj, pos, sc, ang = plans[i]
            full, tex = _object_layer(obj, obj.affine(pos[t], sc[t], ang[t]), w, h)
            amodal[i] = full
            frame[full] = tex[full]
            mask[full] = i + 1
        if cfg.noise > 0:
            noisy = frame.astype(np.float32) + rng.normal(0, cfg.noise, frame.shape).astype(np.float32)
            frame = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        yield frame, mask, amodal
