"""A toy model family, file 2 of 3: the torch-free step program (see ``toy_family_model.py``).

Per frame and object: ``segment`` on the frame and the object's previous probability map.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edgevos.programs.base import (
    ObjectSetMixin,
    StepResult,
    VideoState,
    check_frame,
    check_mask,
    merge_to_frame,
    resize_map,
    sigmoid,
    state_attribute,
)


@dataclass
class ToyObject:
    obj_id: int
    prev: np.ndarray  # (1, 1, H/4, W/4) probability map of the previous frame


class ToyProgram(ObjectSetMixin):
    family = "toy"

    objects = state_attribute("objects")
    frame_hw = state_attribute("frame_hw")
    frame_index = state_attribute("frame_index")

    def __init__(self, backend, config: dict, tau: float = 1.0, max_reuse=None):
        self.backend = backend
        self.config = dict(config)
        self.input_size = tuple(int(v) for v in self.config["input_size"])
        self.hw4 = (self.input_size[0] // 4, self.input_size[1] // 4)
        self.tau, self.max_reuse = tau, max_reuse  # no reuse gate
        self.state = VideoState()

    def _prev(self, mask: np.ndarray, obj_id: int) -> np.ndarray:
        return resize_map((mask == obj_id).astype(np.float32), self.hw4, area=True)[None, None]

    def start(self, frame: np.ndarray, mask: np.ndarray) -> StepResult:
        t0 = time.perf_counter()
        frame = check_frame(frame)
        mask, ids = check_mask(mask, frame.shape[:2])
        self.state = VideoState([ToyObject(i, self._prev(mask, i)) for i in ids], tuple(frame.shape[:2]), 0)
        probs = np.stack([(mask == i).astype(np.float32) for i in ids], 0)
        return StepResult(0, mask.copy(), probs, ids, False, None, {}, (time.perf_counter() - t0) * 1e3)

    def step(self, frame: np.ndarray, force_compute: bool = False) -> StepResult:
        t0, frame, timer, x = self._begin_step(frame)
        for o in self.objects:
            logits = self.backend.run("segment", {"image": x, "prev": o.prev})["logits"]
            timer.add("segment", self.backend.last_ms["segment"])
            o.prev = sigmoid(logits).astype(np.float32)
        probs = np.stack([o.prev[0, 0] for o in self.objects], 0)
        mask = merge_to_frame(probs, self.object_ids, self.frame_hw)
        return StepResult(self.frame_index, mask, probs, self.object_ids, False, None, dict(timer.ms),
                          (time.perf_counter() - t0) * 1e3, [False] * len(self.objects))
