"""SlowFast-VOS step program: streaming, one encoder pass per frame, per-layer ring buffers.

Per frame: ``frame_stem`` -> ``fast_body`` (histories from the fast rings) ->
reuse gate (tau < 1) -> either ``slow_body`` + ``mask_decoder`` per object
(a *computed* frame) or ``decoder_reuse`` per object (a *reused* frame).

State (all explicit, inspectable):

* ``rings``: one ring buffer per temporal layer (a :class:`~edgevos.ring.StridedRing`
  where it is read at a stride, so that window is contiguous as well),
  holding that layer's input at past frames (``k - 1`` items read at stride
  ``alpha`` for slow layers, so capacity ``(k - 1) * stride``).  Fast-layer and
  lateral rings are pushed every frame; slow-layer rings on computed frames,
  and on reused frames the last computed item is pushed again (the reused
  frame's slow activations *are* the previous ones), so slow rings stay
  aligned with time.  Items are never copied into a ring: at the start of a
  step every ring reserves its next slot and the stage that computes the item
  writes it there (``backend.run(..., out=...)``; ONNX Runtime binds the slot
  as the output buffer), then the slots are committed.  Only a reused frame's
  slow items are copies (of the previous item).
* ``state`` (:class:`SlowFastState`, replaced by ``start``): per object
  (:class:`ObjectState`) the reference template (semi-supervised), the previous
  probability map (stride 4, updated every frame), the stride-8 decoder state ``r8``
  of the last computed frame; shared: the fast stride-8 features of the last computed
  frame (the gate compares against them), the frame counter, the current run of
  reuses, the steps since ``start`` (the rings' position).

The first frame fills every ring with its own activations (``*_init`` stages):
a constant past, exactly as clip mode with the first frame repeated.
This module is torch-free.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from edgevos.errors import InputError
from edgevos.programs.base import (
    ObjectSetMixin,
    StepResult,
    Timer,
    VideoState,
    check_frame,
    check_mask,
    host_blas,
    merge_to_frame,
    other_objects,
    resize_map,
    sigmoid,
    stack_at,
    state_attribute,
    to_input,
)

#: preset name -> (slow frames, fast frames)
PRESETS: Dict[str, Tuple[int, int]] = {"1-1": (1, 1), "3-3": (3, 3), "7-7": (7, 7), "1-7": (1, 7), "3-7": (3, 7)}

#: most positions kept in the per-frame binding table (see SlowFastProgram._reserve)
TABLE_LIMIT = 4096

#: lateral ring key -> the fast feature it holds
LATERAL_SOURCE = {"lat_stem": "fast_stem", "lat_res2": "fast4", "lat_res3": "fast8", "lat_res4": "fast16"}


def check_preset(preset: str) -> Tuple[int, int, int]:
    """(slow frames, fast frames, alpha) of a preset name; InputError listing the valid names otherwise.

    Slow frames are a uniform subsample of the fast window ending at the current
    frame, so alpha = (F - 1) / (S - 1) (and F when S = 1).
    """
    if preset not in PRESETS:
        raise InputError(f"unknown SlowFast preset '{preset}': choose one of {list(PRESETS)} (slow frames - fast frames)")
    s, f = PRESETS[preset]
    return s, f, (f if s == 1 else (f - 1) // (s - 1))


@dataclass
class ObjectState:
    obj_id: int
    template: Optional[np.ndarray]  # (1, 2E) reference prototypes (semi-supervised)
    prev_prob: np.ndarray  # (1, 1, H/4, W/4) previous predicted probability
    r8: np.ndarray  # (1, D, H/8, W/8) decoder state of the last computed frame
    target: object = None  # edgevos.target_model.TargetModel (target_model models)


@dataclass
class SlowFastState(VideoState):
    """What a SlowFast program holds about its video besides the rings' items (``start`` replaces it)."""

    objects: List[ObjectState] = field(default_factory=list)
    reuse_run: int = 0  # consecutive reused frames
    slow_runs: int = 0  # frames the slow pathway ran on, the first frame included
    #: fast stride-8 features of the last computed frame, which the gate compares against (a copy:
    #: the ring slot they were written to is rewritten some frames later)
    fast8_prev: Optional[np.ndarray] = None
    #: (slow, fast) stage outputs of the last computed frame: views of that step's ring slots,
    #: read right after it by the forced step of add_objects
    last: Optional[Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]] = None
    steps: int = 0  # steps since start: every ring advanced this many times since its fill


class SlowFastProgram(ObjectSetMixin):
    family = "slowfast"
    START_HINT = "the first frame (and its mask)"

    objects = state_attribute("objects")
    frame_hw = state_attribute("frame_hw")
    frame_index = state_attribute("frame_index")
    reuse_run = state_attribute("reuse_run")
    slow_runs = state_attribute("slow_runs")

    def __init__(self, backend, config: dict, tau: float = 1.0, max_reuse: Optional[int] = None):
        from edgevos.ring import RingBuffer, StridedRing

        self.backend = backend
        self.config = dict(config)
        self.input_size = tuple(int(v) for v in self.config["input_size"])
        self.preset = str(self.config.get("preset", "3-7"))
        self.slow_frames, self.fast_frames, self.alpha = check_preset(self.preset)
        self.semi = self.config.get("mode", "semi") == "semi"
        self.tau = tau
        self.max_reuse = max_reuse
        h, w = self.input_size
        self._hw4, self._hw16 = (h // 4, w // 4), (h // 16, w // 16)
        # an online target model per object when the decoder reads its score (FRTM's, fitted on f16)
        self.target_model = "score" in backend.spec("mask_decoder").input_names
        #: slow-pathway outputs the target model reads, brought to stride 16 (as GfrtmConfig.target_inputs)
        self.target_inputs = tuple(self.config.get("target_inputs", ("f16",)))
        if "f16" not in self.target_inputs or not set(self.target_inputs) <= {"f8", "f16", "f32"}:
            raise InputError(f"target_inputs={list(self.target_inputs)}: use f16, optionally with f8 and f32")
        if self.target_model:
            from edgevos.target_model import TargetModelConfig

            # no first-frame augmentations: an augmented frame has no streaming past to encode it with
            self.target_config = TargetModelConfig(proj_dim=int(self.config.get("proj_dim", 32)), num_augmentations=0,
                                                   refit_solver="matrix_free")
        fast_spec, slow_spec = backend.spec("fast_body"), backend.spec("slow_body")
        fast_new, slow_new = set(fast_spec.output_names), set(slow_spec.output_names)
        # ring key -> where its items come from: ("fast_in"), ("new", name) or ("lateral", fast feature)
        self.ring_source: Dict[str, Tuple[str, str]] = {}
        self.ring_read: Dict[str, Tuple[int, int]] = {}  # key -> (items, stride)
        rings = {}
        for spec, outs in ((fast_spec, fast_new), (slow_spec, slow_new)):
            for t in spec.inputs:
                if not t.name.startswith("hist_"):
                    continue
                key = t.name[len("hist_"):]
                n = t.shape[0]
                stride = self.alpha if key.startswith("slow_") else 1
                if f"new_{key}" in outs:
                    self.ring_source[key] = ("new", f"new_{key}")
                elif key in LATERAL_SOURCE:
                    self.ring_source[key] = ("lateral", LATERAL_SOURCE[key])
                else:
                    self.ring_source[key] = ("fast_in", "fast_in")
                self.ring_read[key] = (n, stride)
                # strided reads (slow layers) get lanes, so their windows are contiguous stage inputs too
                rings[key] = (StridedRing(n, stride, t.shape[1:], t.dtype) if stride > 1
                              else RingBuffer(n, t.shape[1:], t.dtype))
        self.rings = rings
        # stage -> [(output name, ring key)]: outputs written straight into a reserved ring slot
        self._ring_outputs: Dict[str, List[Tuple[str, str]]] = {}
        self._extra_copies: List[Tuple[str, str]] = []  # (ring key, ring key) when two rings hold one output
        by_output: Dict[str, str] = {}
        for key, (kind, name) in self.ring_source.items():
            if name in by_output:
                self._extra_copies.append((key, by_output[name]))
            else:
                by_output[name] = key
        for spec in backend.specs.values():
            pairs = [(n, by_output[n]) for n in spec.output_names if n in by_output]
            if pairs:
                self._ring_outputs[spec.name] = pairs
        # slow-layer rings fed by the slow body: a reused frame repeats their last item
        self._repeat_on_reuse = [k for k, (kind, _) in self.ring_source.items() if kind == "new" and k.startswith("slow_")]
        self._slots: Dict[str, np.ndarray] = {}
        self._hist: Dict[str, np.ndarray] = {}
        self._ring_list = list(self.rings.values())
        periods = [r.period for r in self._ring_list]
        # common period of the rings' states (mirrored layout); 0: no binding table (sliding rings)
        self._period = math.lcm(*periods) if periods and all(periods) else 0
        self._table: Dict[int, tuple] = {}  # step % period -> bindings (built once, at the first start)
        # this step's bindings: reserved ring slots, history windows, slow items a reused frame repeats
        self._bound = False
        self._repeat_src: List[tuple] = []
        self.state = SlowFastState()

    # ------------------------------------------------------------------ helpers
    def _run(self, stage: str, feeds: Dict[str, np.ndarray], timer: Timer):
        pairs = self._ring_outputs.get(stage)
        into = {name: self._slots[key] for name, key in pairs} if pairs and self._slots else None
        out = self.backend.run(stage, feeds, into)
        timer.add(stage, self.backend.last_ms[stage])
        return out

    def _reserve(self, windows: bool = True):
        """Every ring's next slot, for the stages of this frame to write into, and (``windows``)
        the history windows the stages read, ``{hist input name: view}``.

        After ``start`` every ring advances once per step, so with mirrored rings the whole
        binding (slots, windows, the items a reused frame repeats) is a function of the
        step count modulo the rings' common period: :meth:`_build_table` lists it once
        and a step looks its entry up (the per-frame binding table of a static pipeline).
        """
        if windows and self._table:
            self._slots, self._hist, self._repeat_src = self._table[self.state.steps % self._period]
            self._bound = True
            return
        self._bound = False
        if windows:
            self._slots, self._hist, self._repeat_src = self._bindings()
        else:
            self._slots = {key: ring.reserve()[None] for key, ring in self.rings.items()}

    def _bindings(self) -> tuple:
        """(slots, windows, repeats) at the rings' current position: every ring's reserved slot as a
        (1, ...) stage output, the history windows by input name, and (slot, previous item) pairs
        of the slow rings a reused frame repeats."""
        slots = {key: ring.reserve()[None] for key, ring in self.rings.items()}
        hist = {"hist_" + key: self._window(key) for key in self.rings}
        return slots, hist, [(slots[key], self.rings[key].latest) for key in self._repeat_on_reuse]

    def _build_table(self) -> None:
        """Bindings for every position of one period, by stepping the (full) rings through it
        without writing an item: after a whole period every ring is back where it was."""
        counters = [(r, r.pushes) for ring in self._ring_list for r in [ring, *getattr(ring, "lanes", [])]]
        for k in range(self._period):
            self._table[k] = self._bindings()
            for ring in self._ring_list:
                ring.commit()
        for r, n in counters:
            r.pushes = n

    def _commit(self, slow, fill=False):
        """Add this frame's items.  A reused frame repeats the slow rings' last computed item;
        ``fill`` (first frame) repeats every item to a full constant past."""
        slots = self._slots
        for key, src in self._extra_copies:
            slots[key][...] = slots[src]
        if slow is None:  # reused frame: its slow activations are the previous ones
            for dst, latest in self._repeat_src:
                dst[0] = latest
        if self._bound:
            for ring in self._ring_list:
                ring.advance()
        else:
            for ring in self._ring_list:
                ring.commit()
                if fill:
                    for _ in range(ring.capacity - 1):
                        ring.push(ring.latest)
        self.state.steps = 0 if fill else self.state.steps + 1
        self._slots, self._hist = {}, {}
        if fill and self._period and not self._table and self._period <= TABLE_LIMIT:
            self._build_table()

    def _window(self, key: str) -> np.ndarray:
        n, stride = self.ring_read[key]
        return self.rings[key].window(n, stride, lag=stride - 1)  # a view: t - n*stride .. t - stride

    def _encode(self, x: np.ndarray, timer: Timer, first: bool):
        stem = self._run("frame_stem", {"image": x}, timer)
        feeds = {"fast_in": stem["fast_in"]}
        if first:
            fast = self._run("fast_body_init", feeds, timer)
        else:
            for t in self.backend.spec("fast_body").inputs[1:]:
                feeds[t.name] = self._hist[t.name]
            fast = self._run("fast_body", feeds, timer)
        return stem, fast

    def _slow(self, x, stem, fast, timer: Timer, first: bool):
        # the slow stem runs inside slow_body (computed frames only); bundles before it: in frame_stem
        feeds = {"slow_stem": stem["slow_stem"]} if "slow_stem" in stem else {"image": x}
        for n in ("fast_stem", "fast4", "fast8", "fast16"):
            feeds[n] = fast[n]
        if first:
            return self._run("slow_body_init", feeds, timer)
        for t in self.backend.spec("slow_body").inputs[5:]:
            feeds[t.name] = self._hist[t.name]
        return self._run("slow_body", feeds, timer)

    def _decode(self, slow, fast, o: ObjectState, timer: Timer, score=None):
        feeds = {k: slow[k] for k in ("f4", "f8", "f16", "f32")}
        feeds["fast32"] = fast["fast32"]
        if self.semi:
            feeds["template"] = o.template
        if self.target_model:
            if score is None:
                with timer.section("target_model"), host_blas():
                    score = o.target.classify(self._target_features(slow))[None, None].astype(np.float32)
            feeds["score"] = score
        feeds["prev_prob"] = o.prev_prob
        return self._run("mask_decoder", feeds, timer)

    def _target_features(self, slow) -> np.ndarray:
        """(C, H/16, W/16): the slow-pathway outputs ``target_inputs`` stacked at stride 16."""
        if self.target_inputs == ("f16",):
            return slow["f16"][0]
        return stack_at(slow, self.target_inputs, self._hw16)

    def _update_targets(self, f16: np.ndarray, timer: Timer, frames: int = 1) -> None:
        """Online target-model update on a computed frame: each object's new prediction at stride 16
        (``frames`` since the previous update, so reused frames count toward the refit schedule)."""
        with timer.section("target_model"), host_blas():
            probs = [resize_map(o.prev_prob[0, 0], self._hw16, area=True) for o in self.objects]
            total = sum(probs) if len(probs) > 1 else None
            for o, p in zip(self.objects, probs):
                # several objects: the others' predictions are this object's weighted negatives
                o.target.update(f16, p, frames=frames, others=None if total is None else total - p)

    def _label(self, mask_in: np.ndarray, obj_id: int, hw) -> np.ndarray:
        return resize_map((mask_in == obj_id).astype(np.float32), hw, area=True)[None, None]

    def _new_object(self, obj_id, mask_in, slow, fast, timer) -> ObjectState:
        template = None
        if self.semi:
            template = self._run("reference", {"f16": slow["f16"], "mask16": self._label(mask_in, obj_id, self._hw16)},
                                 timer)["template"]
        o = ObjectState(obj_id, template, self._label(mask_in, obj_id, self._hw4), None)
        score = None
        if self.target_model:
            from edgevos.target_model import TargetModel

            label16 = self._label(mask_in, obj_id, self._hw16)
            x = self._target_features(slow)
            o.target = TargetModel(self.target_config, in_channels=x.shape[0])
            with timer.section("target_model"), host_blas():
                o.target.initialize(x, label16[0, 0], others=other_objects(mask_in, obj_id, self._hw16))
            score = label16  # S_0 = y_0, as G-FRTM-fast
        o.r8 = self._decode(slow, fast, o, timer, score)["r8"]  # decoder state of the reference frame
        return o

    def _finish(self, logits: List[np.ndarray], reused, p_gate, timer: Timer, t0: float) -> StepResult:
        with timer.section("postprocess"):
            probs4 = [sigmoid(lg[0, 0]) for lg in logits]
            for o, p in zip(self.objects, probs4):
                o.prev_prob = p[None, None].astype(np.float32)
            probs = np.stack(probs4, 0)  # model resolution: StepResult.probs resizes on first access
            mask = merge_to_frame(probs, self.object_ids, self.frame_hw)
        return StepResult(self.frame_index, mask, probs, self.object_ids, reused, p_gate, dict(timer.ms),
                          (time.perf_counter() - t0) * 1e3)

    # ------------------------------------------------------------------ API
    def start(self, frame: np.ndarray, mask: Optional[np.ndarray] = None) -> StepResult:
        """First frame: fills the rings; semi-supervised needs the first mask, unsupervised none."""
        import cv2

        t0 = time.perf_counter()
        frame = check_frame(frame)
        if self.semi:
            if mask is None:
                raise InputError("a semi-supervised SlowFast model needs the first frame's mask: pass start(frame, mask) "
                                 "or build the model with mode='unsupervised'")
            mask, ids = check_mask(mask, frame.shape[:2])
        elif mask is not None:
            raise InputError("this SlowFast model is unsupervised (it finds the primary moving object): "
                             "call start(frame) without a mask, or build it with mode='semi'")
        self.state = SlowFastState(frame_hw=tuple(frame.shape[:2]), frame_index=0, slow_runs=1)
        timer = Timer()
        with timer.section("preprocess"):
            x = to_input(frame, self.input_size)
            h, w = self.input_size
            mask_in = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST) if mask is not None else None
        with timer.section("rings"):
            for r in self.rings.values():
                r.clear()
            self._reserve(windows=False)
        stem, fast = self._encode(x, timer, first=True)
        slow = self._slow(x, stem, fast, timer, first=True)
        self.state.fast8_prev = fast["fast8"].copy()
        self.state.last = (slow, fast)
        with timer.section("rings"):
            self._commit(slow, fill=True)
        if self.semi:
            for obj_id in ids:
                if not (mask_in == obj_id).any():
                    raise InputError(f"object {obj_id} covers too few pixels to survive resizing to the model's "
                                     f"{self.input_size[1]}x{self.input_size[0]} input: draw it larger")
                self.objects.append(self._new_object(obj_id, mask_in, slow, fast, timer))
            probs = np.stack([(mask == o.obj_id).astype(np.float32) for o in self.objects], 0)
            return StepResult(0, mask.copy(), probs, self.object_ids, False, None, dict(timer.ms),
                              (time.perf_counter() - t0) * 1e3)
        o = ObjectState(1, None, np.zeros((1, 1) + self._hw4, np.float32), None)
        out = self._decode(slow, fast, o, timer)
        o.r8 = out["r8"]
        self.objects = [o]
        return self._finish([out["logits"]], False, None, timer, t0)

    def step(self, frame: np.ndarray, force_compute: bool = False) -> StepResult:
        t0, frame, timer, x = self._begin_step(frame)
        with timer.section("rings"):
            self._reserve()
        stem, fast = self._encode(x, timer, first=False)

        # ---- reuse gate on the fast pathway: skipped at tau = 1 and where the frame must be computed anyway
        # (forced, or max_reuse reused frames in a row), so such a frame costs what it costs at tau = 1
        since = self.reuse_run + 1  # frames since the last computed frame (= the last target-model update)
        p_gate = None
        use_gate = (self.tau < 1.0 and self.backend.has("gate") and not force_compute
                    and (self.max_reuse is None or self.reuse_run < self.max_reuse))
        if use_gate:
            ps = [self._run("gate", {"fast8": fast["fast8"], "fast8_prev": self.state.fast8_prev,
                                     "prev_prob": o.prev_prob}, timer)["p_gate"] for o in self.objects]
            p_gate = float(min(p.reshape(-1)[0] for p in ps))
        reuse = use_gate and p_gate >= self.tau

        logits = []
        slow = None
        if reuse:
            self.reuse_run += 1
            for o in self.objects:
                out = self._run("decoder_reuse", {"fast4": fast["fast4"], "fast8": fast["fast8"], "r8_prev": o.r8,
                                                  "prev_prob": o.prev_prob}, timer)
                logits.append(out["logits"])
        else:
            self.reuse_run = 0
            self.slow_runs += 1
            slow = self._slow(x, stem, fast, timer, first=False)
            for o in self.objects:
                out = self._decode(slow, fast, o, timer)
                logits.append(out["logits"])
                o.r8 = out["r8"]
            self.state.fast8_prev = fast["fast8"].copy()
            self.state.last = (slow, fast)
        f16 = np.array(self._target_features(slow)) if slow is not None and self.target_model else None
        with timer.section("rings"):
            self._commit(slow)
        result = self._finish(logits, reuse, p_gate, timer, t0)
        if f16 is not None:
            self._update_targets(f16, timer, since)
            result.stage_ms = dict(timer.ms)
            result.total_ms = (time.perf_counter() - t0) * 1e3
        return result

    def add_objects(self, frame: np.ndarray, mask: np.ndarray) -> StepResult:
        if not self.semi:
            raise InputError("an unsupervised SlowFast model tracks the primary object only: objects cannot be added")
        return super().add_objects(frame, mask)

    def _init_new_object(self, obj_id: int, mask_in: np.ndarray, timer: Timer):
        slow, fast = self.state.last  # left by the forced full step of add_objects
        return self._new_object(obj_id, mask_in, slow, fast, timer)
