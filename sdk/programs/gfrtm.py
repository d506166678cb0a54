"""G-FRTM-fast step program: first-frame init, then per frame encoder_low -> gate ->
full path (encoder_high, target model, decoder_full) or reuse path (decoder_reuse).

State ("previous" always means the last *computed* frame, as in the paper):

* per object: target model, template, previous score (stride 16), refiner state r8;
* shared: previous embedding of the template matcher, the frame counter, the run
  of consecutive reuses.

tau = 1 means never reuse (the gate does not even run): plain FRTM-fast.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from edgevos.errors import InputError
from edgevos.programs.base import (
    ObjectSetMixin,
    StepResult,
    host_blas,
    Timer,
    check_frame,
    check_mask,
    resize_map,
    sigmoid,
    soft_aggregate,
    to_input,
)


@dataclass
class ObjectState:
    obj_id: int
    target: object  # edgevos.target_model.TargetModel
    template: Optional[np.ndarray]
    prev_score: np.ndarray  # (1, 1, H/16, W/16)
    r8: np.ndarray  # (1, D, H/8, W/8)


class GfrtmProgram(ObjectSetMixin):
    family = "gfrtm"

    def __init__(self, backend, config: dict, tau: float = 1.0, max_reuse: Optional[int] = None,
                 num_augmentations: Optional[int] = None, seed: int = 0):
        from edgevos.target_model import TargetModelConfig

        self.backend = backend
        self.config = dict(config)
        self.input_size = tuple(int(v) for v in self.config["input_size"])
        self.tau = tau
        self.max_reuse = max_reuse
        self.seed = seed
        # matrix-free refits: cheapest per computed frame at K = 32 (update ~1 ms, refit every 8th)
        tm = TargetModelConfig(proj_dim=int(self.config.get("proj_dim", 96)), refit_solver="matrix_free")
        if num_augmentations is not None:
            from dataclasses import replace

            tm = replace(tm, num_augmentations=int(num_augmentations))
        self.target_config = tm
        spec = backend.spec("encoder_high")
        self.c16 = spec.outputs[0].shape[1]
        self._h16w16 = tuple(spec.outputs[0].shape[2:])
        self._h8w8 = tuple(backend.spec("encoder_low").outputs[1].shape[2:])
        self.objects: List[ObjectState] = []
        self.frame_hw = None
        self.frame_index = -1

    # ------------------------------------------------------------------ helpers
    def _encode(self, x: np.ndarray, timer: Timer, high: bool = True):
        out = self.backend.run("encoder_low", {"image": x})
        timer.add("encoder_low", self.backend.last_ms["encoder_low"])
        feats = {"f4": out["f4"], "f8": out["f8"]}
        if high:
            out = self.backend.run("encoder_high", {"f8": feats["f8"]})
            timer.add("encoder_high", self.backend.last_ms["encoder_high"])
            feats.update(f16=out["f16"], f32=out["f32"])
        return feats

    def _run(self, stage: str, feeds: Dict[str, np.ndarray], timer: Timer):
        out = self.backend.run(stage, feeds)
        timer.add(stage, self.backend.last_ms[stage])
        return out

    def _label(self, mask_in: np.ndarray, obj_id: int, hw) -> np.ndarray:
        return resize_map((mask_in == obj_id).astype(np.float32), hw, area=True)

    def _add_object(self, obj_id: int, x: np.ndarray, mask_in: np.ndarray, feats, timer: Timer) -> ObjectState:
        from edgevos.target_model import TargetModel, augment_first_frame

        label16 = self._label(mask_in, obj_id, self._h16w16)
        tm = TargetModel(self.target_config, in_channels=self.c16, seed=self.seed)
        aug_feats, aug_labels = [], []
        if self.target_config.num_augmentations > 0:
            image = np.ascontiguousarray(x[0].transpose(1, 2, 0)).astype(np.uint8)
            binary = (mask_in == obj_id).astype(np.uint8)
            for img_a, mask_a in augment_first_frame(image, binary, self.target_config.num_augmentations, self.seed):
                fa = self._encode(to_input(img_a, self.input_size), timer)
                aug_feats.append(fa["f16"][0])
                aug_labels.append(resize_map(mask_a.astype(np.float32), self._h16w16, area=True))
        with timer.section("target_model"), host_blas():
            tm.initialize(feats["f16"][0], label16, aug_feats or None, aug_labels or None)
        prev_score = label16[None, None].astype(np.float32)  # S_0 = y'_0 (paper)
        out = self._run("decoder_full", {"f4": feats["f4"], "f8": feats["f8"], "f16": feats["f16"],
                                         "f32": feats["f32"], "score": prev_score}, timer)
        template = None
        if self.backend.has("gate_template"):
            mask8 = self._label(mask_in, obj_id, self._h8w8)[None, None]
            t = self._run("gate_template", {"f8": feats["f8"], "mask8": mask8}, timer)
            template, self._prev_embed = t["template"], t["embed"]
        return ObjectState(obj_id, tm, template, prev_score, out["r8"])

    def _finish(self, logits: List[np.ndarray], reused: bool, p_gate, timer: Timer, t0: float) -> StepResult:
        with timer.section("postprocess"):
            # sigmoid at stride 4, then one bilinear resize straight to the frame's size
            probs = np.stack([resize_map(sigmoid(lg[0, 0]), self.frame_hw) for lg in logits], 0)
            mask = soft_aggregate(probs, self.object_ids)
        return StepResult(self.frame_index, mask, probs, self.object_ids, reused, p_gate, dict(timer.ms),
                          (time.perf_counter() - t0) * 1e3)

    # ------------------------------------------------------------------ API
    def start(self, frame: np.ndarray, mask: np.ndarray) -> StepResult:
        t0 = time.perf_counter()
        frame = check_frame(frame)
        mask, ids = check_mask(mask, frame.shape[:2])
        timer = Timer()
        with timer.section("preprocess"):
            import cv2

            x = to_input(frame, self.input_size)
            h, w = self.input_size
            mask_in = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        for obj_id in ids:
            if not (mask_in == obj_id).any():
                raise InputError(
                    f"object {obj_id} covers too few pixels to survive resizing to the model's "
                    f"{self.input_size[1]}x{self.input_size[0]} input: draw it larger"
                )
        feats = self._encode(x, timer)
        # build the new state aside: a rejected start() leaves the previous sequence intact
        old_embed, self._prev_embed = getattr(self, "_prev_embed", None), None
        objects = []
        try:
            for obj_id in ids:
                objects.append(self._add_object(obj_id, x, mask_in, feats, timer))
        except BaseException:
            self._prev_embed = old_embed
            raise
        self.objects = objects
        self.frame_hw = tuple(frame.shape[:2])
        self.frame_index = 0
        self.reuse_run = 0
        self.computed_frames = 1
        probs = [(mask == o.obj_id).astype(np.float32) for o in self.objects]
        return StepResult(0, mask.copy(), np.stack(probs, 0), self.object_ids, False, None, dict(timer.ms),
                          (time.perf_counter() - t0) * 1e3)

    def step(self, frame: np.ndarray, force_compute: bool = False) -> StepResult:
        t0, frame, timer, x = self._begin_step(frame)
        feats = self._encode(x, timer, high=False)

        # ---- reuse gate (skipped entirely at tau = 1)
        p_gate, gate_out = None, []
        use_gate = self.tau < 1.0 and self.backend.has("gate")
        if use_gate:
            for o in self.objects:
                gate_out.append(self._run("gate", {"f8": feats["f8"], "prev_score": o.prev_score,
                                                   "template": o.template, "prev_embed": self._prev_embed}, timer))
            p_gate = float(min(g["p_gate"].reshape(-1)[0] for g in gate_out))
        reuse = (use_gate and not force_compute and p_gate >= self.tau
                 and (self.max_reuse is None or self.reuse_run < self.max_reuse))

        logits = []
        if reuse:
            self.reuse_run += 1
            for o, g in zip(self.objects, gate_out):
                out = self._run("decoder_reuse", {"f4": feats["f4"], "f8": feats["f8"], "r8_prev": o.r8,
                                                  "prev_score": o.prev_score, "delta": g["delta"]}, timer)
                logits.append(out["logits"])
            return self._finish(logits, True, p_gate, timer, t0)

        # ---- full path: this frame becomes "previous"
        self.reuse_run = 0
        self.computed_frames += 1
        out = self.backend.run("encoder_high", {"f8": feats["f8"]})
        timer.add("encoder_high", self.backend.last_ms["encoder_high"])
        feats.update(f16=out["f16"], f32=out["f32"])
        for o in self.objects:
            with timer.section("target_model"), host_blas():
                score = o.target.classify(feats["f16"][0])[None, None].astype(np.float32)
            out = self._run("decoder_full", {"f4": feats["f4"], "f8": feats["f8"], "f16": feats["f16"],
                                             "f32": feats["f32"], "score": score}, timer)
            logits.append(out["logits"])
            o.prev_score, o.r8 = score, out["r8"]
        if use_gate:
            self._prev_embed = gate_out[0]["embed"]
        self._last = (x, feats)
        result = self._finish(logits, False, p_gate, timer, t0)
        # online target-model update on computed frames (refit every update_every-th)
        with timer.section("target_model"), host_blas():
            for k, (o, lg) in enumerate(zip(self.objects, logits)):
                soft = resize_map(sigmoid(lg[0, 0]), self._h16w16, area=True)
                o.target.update(feats["f16"][0], soft)
        result.stage_ms = dict(timer.ms)
        result.total_ms = (time.perf_counter() - t0) * 1e3
        return result

    def _init_new_object(self, obj_id: int, mask_in: np.ndarray, timer: Timer) -> ObjectState:
        x, feats = self._last  # left by the forced full step of add_objects
        return self._add_object(obj_id, x, mask_in, feats, timer)
