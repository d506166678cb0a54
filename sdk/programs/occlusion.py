"""Occlusion of one tracked object by another: hide an object whose visible area collapses onto a neighbour.

When an object goes behind another, its own model keeps predicting the few pixels it still
believes in, and those usually sit on the occluder: a wrong identity on the neighbour's
pixels.  :class:`OcclusionGuard` watches each object's area in the merged id map (model
resolution); on a frame where an object's area falls below ``collapse`` times its running
area *and* most of its pixels belonged to another object on the previous frame, the object
is hidden for that frame: its pixels go back to whoever held them (or background).  The
decision is made again every frame from the raw merge, so an object that reappears is
never locked out.  Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np


@dataclass
class OcclusionGuard:
    collapse: float = 0.2  # area below this share of the running area ...
    on_other: float = 0.5  # ... with more than this share on another object's previous pixels: hidden
    memory: float = 0.8  # running area: memory * old + (1 - memory) * new, on frames the object is visible
    area: Dict[int, float] = field(default_factory=dict)
    prev_ids: Optional[np.ndarray] = None

    def reset(self) -> None:
        self.area.clear()
        self.prev_ids = None

    def apply(self, ids: np.ndarray, object_ids: Sequence[int]) -> tuple:
        """(id map with hidden objects removed, ids of the hidden objects) for a merged id map."""
        hidden: List[int] = []
        out = ids
        prev = self.prev_ids if self.prev_ids is not None and self.prev_ids.shape == ids.shape else None
        for k in object_ids:
            pk = ids == k
            a = int(np.count_nonzero(pk))
            ref = self.area.get(k)
            if prev is not None and ref is not None and 0 < a < self.collapse * ref:
                before = prev[pk]
                if np.count_nonzero((before != k) & (before != 0)) > self.on_other * a:
                    if out is ids:
                        out = ids.copy()
                    out[pk] = np.where(before == k, 0, before)
                    hidden.append(int(k))
                    continue
            if a > 0:
                self.area[k] = float(a) if ref is None else self.memory * ref + (1 - self.memory) * a
        self.prev_ids = out
        return out, hidden
