"""G-FRTM-fast step program: first-frame init, then per frame the reuse gate (per object) ->
full path (encoder_high, target model, decoder_full) or reuse path (decoder_reuse).

State ("previous" always means the object's last *computed* frame, as in the paper):

* per object (:class:`ObjectState`): target model, template, previous score (stride 16),
  refiner state r8, the gate embedding of its last computed frame (and whether that
  embedding is current), the run of consecutive reuses;
* shared (:class:`GfrtmState`, ``program.state``, replaced by ``start``): the objects, the
  frame counter and size, the number of computed frames, the last computed frame's model
  input and features, and the occlusion guard's history.

The gate decides per object (the paper's form): on a frame where some objects reuse and
others do not, the full encoder runs once and only the objects that need it pay for the
target model and the full decoder.  With a ``reuse_scale=2`` model the gate reads a
half-resolution encoding (``encoder_reuse``) and a frame on which every object reuses never
runs the full-resolution encoder.  With a ``computed_embed='f8'`` model (stage ``gate_embed``) a
computed frame's gate embedding comes from its own f8, so a frame that must compute anyway (max reuse
reached, forced) runs neither ``encoder_reuse`` nor the gate.

tau = 1 means never reuse (the gate does not even run): plain FRTM-fast.  tau may change
between frames: an object whose last computed frame had no gate run gets computed once
more before it may reuse, so the gate never compares against a stale embedding.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional

import numpy as np

from edgevos.errors import InputError
from edgevos.programs.base import (
    ObjectSetMixin,
    StepResult,
    host_blas,
    Timer,
    VideoState,
    check_frame,
    check_mask,
    merge_to_frame,
    merged_posteriors,
    other_objects,
    resize_image,
    resize_map,
    resize_maps,
    stack_at,
    sigmoid,
    state_attribute,
    to_input,
)
from edgevos.programs.occlusion import OcclusionGuard


@dataclass
class ObjectState:
    obj_id: int
    target: object  # edgevos.target_model.TargetModel
    template: Optional[np.ndarray]
    prev_score: np.ndarray  # (1, 1, H/16, W/16)
    r8: np.ndarray  # (1, D, H/8, W/8) or (1, D, H/16, W/16): the refiner state of the last computed frame
    prev_embed: Optional[np.ndarray] = None  # gate embedding of the last computed frame
    embed_current: bool = False  # prev_embed belongs to the last computed frame
    reuse_run: int = 0  # consecutive reuses since the last computed frame
    prev_logits: Optional[np.ndarray] = None  # (1, 1, H/4, W/4): logits of the last computed frame


@dataclass
class GfrtmState(VideoState):
    """What a G-FRTM program holds about its video (``start`` replaces it)."""

    objects: List[ObjectState] = field(default_factory=list)
    computed_frames: int = 0  # frames the full encoder ran on, the first frame included
    #: model input (1, 3, H, W) and features (stage outputs by name) of the last computed frame, read
    #: right after it by the forced step of add_objects
    last_input: Optional[np.ndarray] = None
    last_features: Optional[Dict[str, np.ndarray]] = None
    #: the occlusion guard (``occlusion=True``) holding this video's object areas and last id map; None: off
    occlusion: Optional[OcclusionGuard] = None


class GfrtmProgram(ObjectSetMixin):
    family = "gfrtm"

    objects = state_attribute("objects")
    frame_hw = state_attribute("frame_hw")
    frame_index = state_attribute("frame_index")
    computed_frames = state_attribute("computed_frames")
    occlusion = state_attribute("occlusion")

    def __init__(self, backend, config: dict, tau: float = 1.0, max_reuse: Optional[int] = None,
                 num_augmentations: Optional[int] = None, seed: int = 0, occlusion: bool = True,
                 reuse_max_area: Optional[float] = None):
        from edgevos.target_model import TargetModelConfig

        if not isinstance(occlusion, bool):
            raise InputError(f"occlusion={occlusion!r}: pass True (hide an object that collapses onto a neighbour) "
                             "or False")
        #: several objects: an object whose area collapses onto a neighbour is hidden for that frame (on by
        #: default since 2026-12-03: on the held-out composites it never raised the swap rate, 2.01% -> 1.83% and
        #: 1.09% -> 1.09% on two networks, 8.0% -> 7.6% on an earlier one; off: occlusion=False)
        self.state = GfrtmState(occlusion=OcclusionGuard() if occlusion else None)

        self.backend = backend
        self.config = dict(config)
        self.input_size = tuple(int(v) for v in self.config["input_size"])
        self.tau = tau
        # no cap given: the longest run of reuses the gate was trained to judge (phase 2's max gap)
        self.max_reuse = max_reuse if max_reuse is not None else (int(self.config.get("gate_max_gap", 0)) or None)
        # no size rule given: the weights' own (GfrtmConfig.reuse_max_area; 1.0 = none)
        self.reuse_max_area = float(self.config.get("reuse_max_area", 1.0)) if reuse_max_area is None else reuse_max_area
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
        #: encoder outputs the target model reads, brought to stride 16 (f8 area-pooled, f32 upsampled)
        self.target_inputs = tuple(self.config.get("target_inputs", ("f16",)))
        self._channels = {"f8": backend.spec("encoder_low").outputs[1].shape[1], "f16": self.c16,
                          "f32": spec.outputs[1].shape[1]}
        self.c_target  # validates target_inputs
        self._h8w8 = tuple(backend.spec("encoder_low").outputs[1].shape[2:])

    # ------------------------------------------------------------------ helpers
    @property
    def half(self) -> bool:
        """The gate and the reuse path run on the half-resolution encoding (``encoder_reuse``)."""
        return self.backend.has("encoder_reuse")

    @property
    def embeds_computed(self) -> bool:
        """A computed frame's gate embedding comes from its own f8 (stage ``gate_embed``), so a frame that
        must compute anyway (max reuse reached, forced, no current embedding) skips encoder_reuse + gate."""
        return self.backend.has("gate_embed")

    @property
    def residual(self) -> bool:
        """The reuse path reads the last computed frame's logits (``reuse_head`` residual or blend)."""
        return self.backend.has("decoder_reuse") and any(
            t.name == "prev_logits" for t in self.backend.spec("decoder_reuse").inputs)

    @property
    def guided(self) -> bool:
        """The reuse path also reads the half-resolution image (``reuse_refine``: image-guided logits)."""
        return self.backend.has("decoder_reuse") and any(
            t.name == "image_half" for t in self.backend.spec("decoder_reuse").inputs)

    @property
    def warps(self) -> bool:
        """The reuse path also reads the gate's embeddings (``reuse_head`` warp: its motion field)."""
        return self.backend.has("decoder_reuse") and any(
            t.name == "prev_embed" for t in self.backend.spec("decoder_reuse").inputs)

    def _preprocess(self, frame: np.ndarray, timer: Timer):
        """Model input (1, 3, H, W) and, for a half-resolution gate, (1, 3, H/2, W/2)."""
        with timer.section("preprocess"):
            img = resize_image(frame, self.input_size)
            x = to_input(img, self.input_size)
            xh = None
            if self.half:
                h, w = self.input_size
                xh = to_input(img, (h // 2, w // 2))
        return x, xh

    def _encode(self, x: np.ndarray, timer: Timer, high: bool = True, feats=None):
        feats = dict(feats or {})
        if "f8" not in feats:
            out = self._run("encoder_low", {"image": x}, timer)
            feats.update(f4=out["f4"], f8=out["f8"])
        if high and "f16" not in feats:
            out = self._run("encoder_high", {"f8": feats["f8"]}, timer)
            feats.update(f16=out["f16"], f32=out["f32"])
        return feats

    def _gate_input(self, x, xh, timer: Timer, feats):
        """(features the gate reads, updated feats): h8 of the half-resolution encoder, or f8."""
        if self.half:
            out = self._run("encoder_reuse", {"image_half": xh}, timer)
            feats = dict(feats, h4=out["h4"], h8=out["h8"])
            return feats["h8"], feats
        feats = self._encode(x, timer, high=False, feats=feats)
        return feats["f8"], feats

    def _run(self, stage: str, feeds: Dict[str, np.ndarray], timer: Timer):
        out = self.backend.run(stage, feeds)
        timer.add(stage, self.backend.last_ms[stage])
        return out

    @property
    def c_target(self) -> int:
        """Channels of the target model's features (``target_inputs`` stacked)."""
        bad = [k for k in self.target_inputs if k not in self._channels]
        if bad or "f16" not in self.target_inputs:
            raise InputError(f"target_inputs={self.target_inputs}: use f16, optionally with f8 and f32")
        return sum(self._channels[k] for k in self.target_inputs)

    def _target_features(self, feats) -> np.ndarray:
        """(C, H/16, W/16) features of the online target model: ``target_inputs`` at stride 16
        (computed once per frame and kept in ``feats``)."""
        if self.target_inputs == ("f16",):
            return feats["f16"][0]
        if "target" in feats:
            return feats["target"]
        feats["target"] = stack_at(feats, self.target_inputs, self._h16w16)
        return feats["target"]

    def _label(self, mask_in: np.ndarray, obj_id: int, hw) -> np.ndarray:
        return resize_map((mask_in == obj_id).astype(np.float32), hw, area=True)

    def _add_object(self, obj_id: int, x: np.ndarray, mask_in: np.ndarray, feats, timer: Timer) -> ObjectState:
        from edgevos.target_model import TargetModel, augment_first_frame

        label16 = self._label(mask_in, obj_id, self._h16w16)
        tm = TargetModel(self.target_config, in_channels=self.c_target, seed=self.seed)
        aug_feats, aug_labels, aug_others = [], [], []
        others = (mask_in != obj_id) & (mask_in != 0) & (mask_in != 255)
        others = others.astype(np.uint8) if others.any() else None
        if self.target_config.num_augmentations > 0:
            image = np.ascontiguousarray(x[0].transpose(1, 2, 0)).astype(np.uint8)
            binary = (mask_in == obj_id).astype(np.uint8)
            for aug in augment_first_frame(image, binary, self.target_config.num_augmentations, self.seed,
                                           others=others):
                fa = self._encode(to_input(aug[0], self.input_size), timer)
                aug_feats.append(self._target_features(fa))
                aug_labels.append(resize_map(aug[1].astype(np.float32), self._h16w16, area=True))
                if others is not None:  # the other objects moved with the frame: still this object's negatives
                    aug_others.append(resize_map(aug[2].astype(np.float32), self._h16w16, area=True))
        with timer.section("target_model"), host_blas():
            tm.initialize(self._target_features(feats), label16, aug_feats or None, aug_labels or None,
                          others=other_objects(mask_in, obj_id, self._h16w16), aug_others=aug_others or None)
        prev_score = label16[None, None].astype(np.float32)  # S_0 = y'_0 (paper)
        out = self._run("decoder_full", {"f4": feats["f4"], "f8": feats["f8"], "f16": feats["f16"],
                                         "f32": feats["f32"], "score": prev_score}, timer)
        state = ObjectState(obj_id, tm, None, prev_score, out["r8"], prev_logits=out["logits"])
        if self.backend.has("gate_template"):
            if self.half:
                feeds = {"h8": feats["h8"], "mask16": label16[None, None].astype(np.float32)}
            else:
                feeds = {"f8": feats["f8"], "mask8": self._label(mask_in, obj_id, self._h8w8)[None, None]}
            t = self._run("gate_template", feeds, timer)
            state.template, state.prev_embed, state.embed_current = t["template"], t["embed"], True
            if self.embeds_computed:  # the next frame compares with the embedding computed frames give
                state.prev_embed = self._run("gate_embed", {"f8": feats["f8"]}, timer)["embed"]
        return state

    def _finish(self, logits: List[np.ndarray], reused: List[bool], p_gate, timer: Timer, t0: float,
                probs_model: Optional[np.ndarray] = None) -> StepResult:
        with timer.section("postprocess"):
            if probs_model is None:
                probs_model = self._probs(logits)
            mask = merge_to_frame(probs_model, self.object_ids, self.frame_hw, self.occlusion)
        return StepResult(self.frame_index, mask, probs_model, self.object_ids, bool(reused) and all(reused), p_gate,
                          dict(timer.ms), (time.perf_counter() - t0) * 1e3, list(reused))

    def _probs(self, logits: List[np.ndarray]) -> np.ndarray:
        """Per-object probabilities (K, H/4, W/4); stride-8 logits of the reuse path are resized up."""
        hw = max((tuple(lg.shape[-2:]) for lg in logits), key=lambda s: s[0] * s[1])
        return np.stack([resize_map(sigmoid(lg[0, 0]), hw) for lg in logits], 0)

    # ------------------------------------------------------------------ API
    def start(self, frame: np.ndarray, mask: np.ndarray) -> StepResult:
        t0 = time.perf_counter()
        frame = check_frame(frame)
        mask, ids = check_mask(mask, frame.shape[:2])
        timer = Timer()
        x, xh = self._preprocess(frame, timer)
        with timer.section("preprocess"):
            import cv2

            h, w = self.input_size
            mask_in = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        for obj_id in ids:
            if not (mask_in == obj_id).any():
                raise InputError(
                    f"object {obj_id} covers too few pixels to survive resizing to the model's "
                    f"{self.input_size[1]}x{self.input_size[0]} input: draw it larger"
                )
        feats = self._encode(x, timer)
        if self.half and self.backend.has("gate_template"):
            _, feats = self._gate_input(x, xh, timer, feats)
        # build the new state aside: a rejected start() leaves the previous sequence intact
        objects = [self._add_object(obj_id, x, mask_in, feats, timer) for obj_id in ids]
        guard = self.occlusion
        self.state = GfrtmState(objects, tuple(frame.shape[:2]), 0, computed_frames=1, last_input=x,
                                last_features=feats,
                                occlusion=None if guard is None else replace(guard, area={}, prev_ids=None))
        probs = [(mask == o.obj_id).astype(np.float32) for o in self.objects]
        return StepResult(0, mask.copy(), np.stack(probs, 0), self.object_ids, False, None, dict(timer.ms),
                          (time.perf_counter() - t0) * 1e3)

    @property
    def reuse_run(self) -> int:
        """Consecutive reuses of the longest-reusing object."""
        return max((o.reuse_run for o in self.objects), default=0)

    @property
    def reuse_max_area(self) -> float:
        """The size rule: an object whose last computed mask covers more than this share of the model
        input is always computed, whatever its gate says (1.0: no rule).  Live-adjustable, as ``tau``."""
        return self._reuse_max_area

    @reuse_max_area.setter
    def reuse_max_area(self, value: float):
        value = float(value)
        if not 0.0 < value <= 1.0:
            raise InputError(f"reuse_max_area={value}: use a share of the frame in (0, 1] (1: no rule; smaller "
                             "values keep more of the large objects on the computed path)")
        self._reuse_max_area = value

    def _small_enough(self, o: ObjectState) -> bool:
        return self._reuse_max_area >= 1.0 or o.prev_logits is None or \
            float(np.count_nonzero(o.prev_logits > 0)) <= self._reuse_max_area * o.prev_logits.size

    def step(self, frame: np.ndarray, force_compute: bool = False) -> StepResult:
        t0, frame, timer, (x, xh) = self._begin_step(frame)
        feats: Dict[str, np.ndarray] = {}

        # frames since each object's last computed frame (= its last target-model update)
        since = [o.reuse_run + 1 for o in self.objects]
        # ---- reuse gate, per object (skipped entirely at tau = 1)
        p_gate, gate_out = None, [None] * len(self.objects)
        use_gate = self.tau < 1.0 and self.backend.has("gate")
        reuse = [False] * len(self.objects)
        if use_gate:
            may = [not force_compute and o.embed_current and (self.max_reuse is None or o.reuse_run < self.max_reuse)
                   and self._small_enough(o) for o in self.objects]
            # with embeddings from computed frames, an object that must compute anyway skips the gate
            asked = may if self.embeds_computed else [True] * len(self.objects)
            if any(asked):
                g_in, feats = self._gate_input(x, xh, timer, feats)
                key = "h8" if self.half else "f8"
            for k, o in enumerate(self.objects):
                if not asked[k]:
                    continue
                gate_out[k] = self._run("gate", {key: g_in, "prev_score": o.prev_score, "template": o.template,
                                                 "prev_embed": o.prev_embed}, timer)
                p = float(gate_out[k]["p_gate"].reshape(-1)[0])
                reuse[k] = may[k] and p >= self.tau
            ran = [float(g["p_gate"].reshape(-1)[0]) for g in gate_out if g is not None]
            p_gate = min(ran) if ran else None

        computed = not all(reuse)
        if computed:  # the full path for the objects that need it: this frame becomes their "previous"
            feats = self._encode(x, timer, feats=feats)
            self.state.computed_frames += 1
            self.state.last_input, self.state.last_features = x, feats
        computed_embed = None
        if computed and use_gate and self.embeds_computed:
            computed_embed = self._run("gate_embed", {"f8": feats["f8"]}, timer)["embed"]
        logits = []
        for k, o in enumerate(self.objects):
            if reuse[k]:
                o.reuse_run += 1
                g = gate_out[k]
                if self.half:
                    feeds = {"h4": feats["h4"], "r8_prev": o.r8, "prev_score": o.prev_score, "delta": g["delta"]}
                    if self.residual:
                        feeds["prev_logits"] = o.prev_logits
                    if self.guided:
                        feeds["image_half"] = xh
                    if self.warps:  # the motion field's evidence: this frame's embedding against the computed one's
                        feeds["embed"], feeds["prev_embed"] = g["embed"], o.prev_embed
                else:
                    feeds = {"f4": feats["f4"], "f8": feats["f8"], "r8_prev": o.r8,
                             "prev_score": o.prev_score, "delta": g["delta"]}
                logits.append(self._run("decoder_reuse", feeds, timer)["logits"])
                continue
            with timer.section("target_model"), host_blas():
                score = o.target.classify(self._target_features(feats))[None, None].astype(np.float32)
            out = self._run("decoder_full", {"f4": feats["f4"], "f8": feats["f8"], "f16": feats["f16"],
                                             "f32": feats["f32"], "score": score}, timer)
            logits.append(out["logits"])
            o.prev_score, o.r8, o.prev_logits, o.reuse_run = score, out["r8"], out["logits"], 0
            if computed_embed is not None:
                o.prev_embed, o.embed_current = computed_embed, True
            else:
                o.embed_current = use_gate and "embed" in gate_out[k]
                if o.embed_current:
                    o.prev_embed = gate_out[k]["embed"]
        result = self._finish(logits, reuse, p_gate, timer, t0)
        if computed:
            # online target-model update on computed objects (refit every update_every frames, reused
            # ones counted), each with its share of the merged mask
            with timer.section("target_model"), host_blas():
                shares = merged_posteriors(resize_maps(result.model_probs, self._h16w16)) \
                    if len(self.objects) > 1 else None
                for k, o in enumerate(self.objects):
                    if reuse[k]:
                        continue
                    soft = shares[k] if shares is not None else resize_map(result.model_probs[k], self._h16w16, area=True)
                    others = None if shares is None else shares.sum(0) - shares[k]
                    o.target.update(self._target_features(feats), soft, frames=since[k], others=others)
            result.stage_ms = dict(timer.ms)
            result.total_ms = (time.perf_counter() - t0) * 1e3
        return result

    def _init_new_object(self, obj_id: int, mask_in: np.ndarray, timer: Timer) -> ObjectState:
        x, feats = self.state.last_input, self.state.last_features  # left by the forced full step of add_objects
        if self.half and "h8" not in feats and self.backend.has("gate_template"):
            h, w = self.input_size
            img = np.ascontiguousarray(x[0].transpose(1, 2, 0)).astype(np.uint8)
            _, feats = self._gate_input(x, to_input(img, (h // 2, w // 2)), timer, feats)
        return self._add_object(obj_id, x, mask_in, feats, timer)
