"""Multi-object clips with exact ground truth, composited from real single-object sequences.

DAVIS 2016 has one object per sequence.  A composite takes the frames of one real
sequence as the scene (its own object keeps id 1 and its real mask) and pastes the
objects of other real sequences into it, frame by frame (each pasted object moves
with its own video, cut out with its ground-truth mask), along straight paths that
cross the scene's object, so objects touch and occlude each other.  Later objects are
in front; the ground truth of every object is what stays visible.

Use only held-out sequences for validation composites.  ``scale_to`` renders the
clip at another frame size (e.g. 1080p from 480p sources), frames bicubic and masks
nearest, so the same scenes test how host work grows with the frame.

    from edgevos.data import DavisDataset, make_composite
    ds = DavisDataset("../shared/data/davis2016-train")
    clip = make_composite(ds["bear"], [ds["soccerball"], ds["kite-walk"]], seed=0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from edgevos.data.davis import VideoSequence
from edgevos.errors import InputError


@dataclass(frozen=True)
class Placement:
    """Where a pasted object goes: its height as a share of the frame, and a straight path
    from ``start`` to ``end`` (centres, as shares of the frame's width and height)."""

    height: float
    start: Tuple[float, float]
    end: Tuple[float, float]


class CompositeSequence(VideoSequence):
    """A composited clip held in memory: ``frames`` (T, H, W, 3) uint8, ``masks`` (T, H, W) ids."""

    def __init__(self, name: str, frames: np.ndarray, masks: np.ndarray, sources: List[str],
                 placements: List[Placement]):
        self.name = name
        self.frames = frames
        self.masks = masks
        self.sources = list(sources)
        self.placements = list(placements)
        self.frame_names = [f"{i:05d}" for i in range(len(frames))]

    def frame(self, i: int) -> np.ndarray:
        return self.frames[self._index(i)]

    def mask(self, i: int) -> np.ndarray:
        return self.masks[self._index(i)]

    def subset(self, ids: Sequence[int]) -> "CompositeSequence":
        """The same clip with only objects ``ids`` annotated (renumbered 1..len(ids)); the others are scenery."""
        ids = [int(i) for i in ids]
        bad = [i for i in ids if i not in self.object_ids]
        if bad or not ids:
            raise InputError(f"objects {bad or ids} are not in {self.name} (ids {self.object_ids})")
        lut = np.zeros(256, np.uint8)
        lut[ids] = np.arange(1, len(ids) + 1)
        return CompositeSequence(f"{self.name}-" + "-".join(map(str, ids)), self.frames, lut[self.masks],
                                 [self.sources[i - 1] for i in ids], [])

    def single(self, obj_id: int) -> "CompositeSequence":
        """The same clip with only object ``obj_id`` annotated (as id 1): tracking it alone."""
        if obj_id not in self.object_ids:
            raise InputError(f"object {obj_id} is not in {self.name} (ids {self.object_ids})")
        masks = (self.masks == obj_id).astype(np.uint8)
        return CompositeSequence(f"{self.name}-obj{obj_id}", self.frames, masks, [self.sources[obj_id - 1]],
                                 [])


def _pingpong(t: int, n: int) -> int:
    """Frame index of a video played forwards then backwards, so a short one has no jump."""
    if n < 2:
        return 0
    j = t % (2 * n - 2)
    return j if j < n else 2 * n - 2 - j


def _cutout(frame: np.ndarray, mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return frame[y0:y1, x0:x1], mask[y0:y1, x0:x1]


def _paste(frame, ids, obj_id, patch, pmask, centre):
    """Paste ``patch`` where ``pmask`` is set, centred at ``centre`` (x, y), clipped to the frame."""
    h, w = ids.shape
    ph, pw = pmask.shape
    x0 = int(round(centre[0] - pw / 2))
    y0 = int(round(centre[1] - ph / 2))
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + pw, w), min(y0 + ph, h)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    sub = pmask[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0] > 0
    frame[fy0:fy1, fx0:fx1][sub] = patch[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0][sub]
    ids[fy0:fy1, fx0:fx1][sub] = obj_id


def default_placements(scene: VideoSequence, count: int, seed: int = 0) -> List[Placement]:
    """Paths through the scene object's centre in the middle of the clip, from random sides."""
    rng = np.random.default_rng(seed)
    m = scene.mask(len(scene) // 2)
    m = np.where(m == 255, 0, m)
    h, w = m.shape
    ys, xs = np.nonzero(m)
    cx, cy = (xs.mean() / w, ys.mean() / h) if len(xs) else (0.5, 0.5)
    out = []
    for _ in range(count):
        angle = rng.uniform(0, 2 * np.pi)
        d = np.array([np.cos(angle), np.sin(angle)]) * rng.uniform(0.25, 0.4)
        out.append(Placement(height=float(rng.uniform(0.25, 0.45)),
                             start=(float(np.clip(cx - d[0], 0.1, 0.9)), float(np.clip(cy - d[1], 0.15, 0.85))),
                             end=(float(np.clip(cx + d[0], 0.1, 0.9)), float(np.clip(cy + d[1], 0.15, 0.85)))))
    return out


def make_composite(scene: VideoSequence, others: Sequence[VideoSequence], seed: int = 0,
                   placements: Optional[Sequence[Placement]] = None, num_frames: Optional[int] = None,
                   scale_to: Optional[Tuple[int, int]] = None, name: Optional[str] = None) -> CompositeSequence:
    """Composite ``others``' objects (ids 2, 3, ...) into ``scene`` (its object is id 1).

    Args:
        scene: a single-object sequence whose frames are the background.
        others: single-object sequences whose objects are pasted, back to front.
        seed: picks the default placements.
        placements: one per pasted object (default: :func:`default_placements`).
        num_frames: clip length (default: the scene's length); pasted videos loop.
        scale_to: (H, W) of the output frames (default: the scene's size).
        name: clip name (default ``scene+other1+other2``).

    Returns:
        A :class:`CompositeSequence` with exact per-frame id masks.
    """
    import cv2

    if not others:
        raise InputError("make_composite needs at least one sequence to paste into the scene")
    if len(others) > 253:
        raise InputError(f"{len(others)} pasted objects: ids go up to 254")
    placements = list(placements) if placements is not None else default_placements(scene, len(others), seed)
    if len(placements) != len(others):
        raise InputError(f"{len(placements)} placements for {len(others)} pasted sequences: give one per sequence")
    n = int(num_frames or len(scene))
    if n < 3:
        raise InputError(f"num_frames={n}: a clip needs at least 3 frames")
    frames, masks = [], []
    for t in range(n):
        frame = np.array(scene.frame(t % len(scene)), copy=True)
        m = scene.mask(t % len(scene))
        ids = np.zeros(frame.shape[:2], np.uint8) if m is None else ((m > 0) & (m != 255)).astype(np.uint8)
        h, w = ids.shape
        for k, (seq, pl) in enumerate(zip(others, placements)):
            j = _pingpong(t, len(seq))
            om = seq.mask(j)
            cut = _cutout(seq.frame(j), (om > 0) & (om != 255)) if om is not None else None
            if cut is None:
                continue
            patch, pmask = cut
            s = pl.height * h / patch.shape[0]
            size = (max(1, int(round(patch.shape[1] * s))), max(1, int(round(patch.shape[0] * s))))
            patch = cv2.resize(patch, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
            pmask = cv2.resize(pmask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
            a = t / max(n - 1, 1)
            centre = ((pl.start[0] + a * (pl.end[0] - pl.start[0])) * w, (pl.start[1] + a * (pl.end[1] - pl.start[1])) * h)
            _paste(frame, ids, k + 2, patch, pmask, centre)
        if scale_to is not None and tuple(scale_to) != (h, w):
            frame = cv2.resize(frame, (scale_to[1], scale_to[0]), interpolation=cv2.INTER_CUBIC)
            ids = cv2.resize(ids, (scale_to[1], scale_to[0]), interpolation=cv2.INTER_NEAREST)
        frames.append(frame)
        masks.append(ids)
    sources = [scene.name] + [s.name for s in others]
    return CompositeSequence(name or "+".join(sources), np.stack(frames), np.stack(masks), sources, placements)


def identity_swap_rate(gt_masks: Sequence[np.ndarray], pred_masks: Sequence[np.ndarray],
                       object_ids: Sequence[int]) -> float:
    """Share of object-frames whose predicted mask overlaps another object's ground truth
    more than its own (frames where the object is predicted at all; first and last excluded,
    as in the DAVIS protocol)."""
    swaps = total = 0
    for g, p in zip(list(gt_masks)[1:-1], list(pred_masks)[1:-1]):
        for k in object_ids:
            pk = p == k
            if not pk.any():
                continue
            own = int((pk & (g == k)).sum())
            other = max((int((pk & (g == o)).sum()) for o in object_ids if o != k), default=0)
            swaps += other > own
            total += 1
    return swaps / total if total else 0.0
