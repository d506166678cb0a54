"""Shared pieces of step programs: results, video state, input checks, pre/post-processing (numpy + OpenCV)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgevos.errors import InputError


@dataclass
class StepResult:
    """One frame's result.

    ``probs`` (float32 (K, H, W), per-object foreground probabilities at the frame's
    size) is made on first access from the model-resolution maps, so a caller that
    needs only ``mask`` never pays for K full-resolution float maps.
    """

    frame_index: int
    mask: np.ndarray  # uint8 (H, W) object ids at the frame's size
    model_probs: np.ndarray  # float32 (K, h, w) per-object probabilities (model resolution, or the frame's)
    object_ids: List[int]
    reused: bool = False  # True when every object took the reuse path (the full encoder did not run)
    p_gate: Optional[float] = None  # min over objects of P_gate (None when the gate did not run)
    stage_ms: Dict[str, float] = field(default_factory=dict)
    total_ms: float = 0.0
    reused_objects: Optional[List[bool]] = None  # per object: took the reuse path

    @property
    def probs(self) -> np.ndarray:
        hw = tuple(self.mask.shape[:2])
        if tuple(self.model_probs.shape[1:]) != hw:
            self.model_probs = resize_maps(self.model_probs, hw)
        return self.model_probs

    @probs.setter
    def probs(self, value: np.ndarray) -> None:
        self.model_probs = value


@dataclass
class VideoState:
    """What a step program holds about the video it is on, as one value: a program keeps it in
    ``self.state``, ``start()`` replaces it, and a fresh program (``Session.reset()``) begins from
    these defaults.  Programs extend it with what they cache between frames."""

    objects: list = field(default_factory=list)  # per-object state, in the order the objects were added
    frame_hw: Optional[Tuple[int, int]] = None  # (H, W) of the video's frames
    frame_index: int = -1  # the last frame processed (0: the first); -1 before start()


def state_attribute(name: str, doc: str = "") -> property:
    """A program attribute that lives in ``self.state`` (the program's :class:`VideoState`)."""

    def get(self):
        return getattr(self.state, name)

    def set_(self, value):
        setattr(self.state, name, value)

    return property(get, set_, doc=doc or f"``state.{name}``")


class Timer:
    """Accumulates milliseconds per named piece of one step."""

    def __init__(self):
        self.ms: Dict[str, float] = {}

    def add(self, name: str, ms: float):
        self.ms[name] = self.ms.get(name, 0.0) + ms

    def section(self, name: str) -> "_Section":
        """``with timer.section(name):`` adds the block's milliseconds to ``name``."""
        return _Section(self, name)


class _Section:
    __slots__ = ("timer", "name", "t0")

    def __init__(self, timer: Timer, name: str):
        self.timer, self.name = timer, name

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.timer.add(self.name, (time.perf_counter() - self.t0) * 1e3)


_BLAS = None


def host_blas():
    """Context manager: numpy's BLAS on one thread for the host-side math of a step.

    The target model's matrices are small; a multi-threaded BLAS on a busy
    2-core machine spends milliseconds waking and waiting for its threads
    (measured: a 32x96 @ 96x448 product took 10 ms threaded, 0.1 ms on one
    thread).  Falls back to a no-op without threadpoolctl.
    """
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        except Exception:  # pragma: no cover - optional
            _BLAS = False
    if _BLAS is False:
        import contextlib

        return contextlib.nullcontext()
    return _BLAS.limit(limits=1, user_api="blas")


def check_frame(frame, expect_hw: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """A frame is uint8 (H, W, 3) RGB.  Returns it contiguous; raises InputError otherwise."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"frame must be a numpy array (H, W, 3) uint8 RGB, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"frame has shape {frame.shape}: pass an RGB image of shape (H, W, 3)")
    if frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.floating) and not np.isfinite(frame).all():
            raise InputError("frame contains NaN or infinite values: pass a uint8 RGB image")
        raise InputError(f"frame dtype is {frame.dtype}: pass uint8 RGB (convert with np.clip(x, 0, 255).astype(np.uint8))")
    if frame.shape[0] < 8 or frame.shape[1] < 8:
        raise InputError(f"frame is {frame.shape[1]}x{frame.shape[0]} pixels: too small to segment")
    if expect_hw is not None and tuple(frame.shape[:2]) != tuple(expect_hw):
        raise InputError(
            f"frame is {frame.shape[1]}x{frame.shape[0]} but the sequence started at {expect_hw[1]}x{expect_hw[0]}: "
            f"frame size cannot change mid-sequence; call start() again with a new first mask"
        )
    return np.ascontiguousarray(frame)


def check_mask(mask, frame_hw: Tuple[int, int]) -> Tuple[np.ndarray, List[int]]:
    """A first mask: integer (H, W) object ids at the frame's size, 0 background, 255 void."""
    if not isinstance(mask, np.ndarray):
        raise InputError(f"mask must be a numpy array (H, W) of object ids, got {type(mask).__name__}")
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise InputError(f"mask has shape {mask.shape}: pass a 2-D array (H, W) of object ids")
    if mask.dtype == bool:
        mask = mask.astype(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        raise InputError(f"mask dtype is {mask.dtype}: pass integer object ids (uint8, 0 = background)")
    if tuple(mask.shape) != tuple(frame_hw):
        raise InputError(
            f"mask is {mask.shape[1]}x{mask.shape[0]} but frame is {frame_hw[1]}x{frame_hw[0]}: "
            f"pass a mask of the frame's size"
        )
    if mask.min() < 0 or mask.max() > 255:
        raise InputError(f"mask has object ids in [{mask.min()}, {mask.max()}]: ids must be 1..254 (255 is void)")
    mask = mask.astype(np.uint8)
    ids = [int(i) for i in np.unique(mask) if i not in (0, 255)]
    if not ids:
        raise InputError("the first mask is empty (no object pixels): draw at least one object (ids 1..254)")
    return mask, ids


def resize_image(frame: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Resize a uint8 image to (h, w), area-averaged when shrinking, at a cost that does not
    grow with the frame.

    OpenCV's INTER_AREA is fast only for integer factors (a non-integer shrink of a
    480p frame takes 4-11 ms on one core).  A shrink by 2 or more first halves the
    image with exact 2x2 averages (INTER_AREA's integer path) until less than a factor
    2 remains, so a 1080p frame costs about what a 540p one does.  A remaining shrink
    up to 1.5 is bilinear (0.9 grey levels from INTER_AREA on DAVIS frames at 480p ->
    384x672, ~20x cheaper); a larger one resizes bilinearly to twice the target and
    area-averages by 2 (0.2 grey levels at 480p -> 256x448).
    """
    import cv2

    h, w = size_hw
    H, W = frame.shape[:2]
    if (H, W) == (h, w):
        return frame
    if H <= h and W <= w:
        return cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
    while H >= 2 * h and W >= 2 * w:
        H, W = H // 2, W // 2
        frame = cv2.resize(frame[: 2 * H, : 2 * W], (W, H), interpolation=cv2.INTER_AREA)
    if (H, W) == (h, w):
        return frame
    if max(H / h, W / w) <= 1.5:
        return cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
    frame = cv2.resize(frame, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


def to_input(frame: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (1, 3, h, w) at the model's input size, values 0..255."""
    frame = resize_image(frame, size_hw)
    return np.ascontiguousarray(frame.transpose(2, 0, 1)[None], dtype=np.float32)


def resize_map(x: np.ndarray, size_hw: Tuple[int, int], area: bool = False) -> np.ndarray:
    import cv2

    h, w = size_hw
    if x.shape[:2] == (h, w):
        return x.astype(np.float32, copy=False)
    interp = cv2.INTER_AREA if area else cv2.INTER_LINEAR
    return cv2.resize(x.astype(np.float32, copy=False), (w, h), interpolation=interp)


def stack_at(feats, names, hw) -> np.ndarray:
    """(C, H, W) float32: the (1, C_k, h, w) maps ``feats[k]`` for ``k`` in ``names``, each brought to
    ``hw`` (finer maps box-averaged, coarser ones bilinear) and stacked along channels; what an
    online target model reading several encoder levels sees."""
    parts = []
    for k in names:
        f = np.asarray(feats[k][0], np.float32)
        h, w = f.shape[1:]
        if (h, w) != tuple(hw):
            if h == 2 * hw[0] and w == 2 * hw[1]:
                f = f.reshape(f.shape[0], hw[0], 2, hw[1], 2).mean(axis=(2, 4))
            elif h > hw[0]:
                f = np.stack([resize_map(c, hw, area=True) for c in f])
            else:
                f = resize_maps(f, hw)
        parts.append(f)
    return np.ascontiguousarray(np.concatenate(parts, 0), np.float32)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def resize_maps(maps: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """(K, h, w) float maps -> (K, H, W), bilinear, in one OpenCV call for K <= 4."""
    import cv2

    h, w = size_hw
    k = maps.shape[0]
    if tuple(maps.shape[1:]) == (h, w):
        return maps.astype(np.float32, copy=False)
    if k == 1 or k > 4:
        return np.stack([resize_map(m, (h, w)) for m in maps], 0)
    out = cv2.resize(np.ascontiguousarray(maps.transpose(1, 2, 0), np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(out.reshape(h, w, k).transpose(2, 0, 1))


def soft_aggregate(probs: np.ndarray, object_ids: Sequence[int]) -> np.ndarray:
    """FRTM's multi-object merge: background = min(1 - p), softmax over log-odds, argmax -> ids.

    The log-odds are monotonic in p and ``min(1 - p) = 1 - max(p)``, so the argmax is the
    most probable object where its probability exceeds 0.5 and background elsewhere.
    """
    if probs.shape[0] == 1:  # one object: background 1 - p, so argmax is p > 0.5
        mask = (probs[0] > 0.5).view(np.uint8)
        return mask if object_ids[0] == 1 else mask * np.uint8(object_ids[0])
    lut = np.array(list(object_ids), dtype=np.uint8)
    best = probs.argmax(0)
    return np.where(np.take_along_axis(probs, best[None], 0)[0] > 0.5, lut[best], np.uint8(0)).astype(np.uint8)


def other_objects(mask: np.ndarray, obj_id: int, hw: Tuple[int, int]) -> Optional[np.ndarray]:
    """The share of each cell of an (h, w) grid covered by objects other than ``obj_id`` in an id
    mask (0 background, 255 void), or None when there are none: a target model's extra negatives."""
    others = (mask != obj_id) & (mask != 0) & (mask != 255)
    if not others.any():
        return None
    return resize_map(others.astype(np.float32), hw, area=True)


def merged_posteriors(probs: np.ndarray) -> np.ndarray:
    """Per-object probabilities after FRTM's merge (K, h, w): softmax over the log-odds of
    [background = min(1 - p), p_1 .. p_K], background dropped.  With one object this is p.
    Each object's target model learns from its share of the merged mask, so an object that
    bleeds into its neighbour does not teach its target model the neighbour."""
    if probs.shape[0] == 1:
        return probs.astype(np.float32, copy=False)
    eps = 1e-6
    p = np.clip(probs.astype(np.float32, copy=False), eps, 1 - eps)
    odds = p / (1 - p)
    bg = 1 - p.max(0, keepdims=True)
    bg_odds = bg / (1 - bg)
    return (odds / (odds.sum(0, keepdims=True) + bg_odds)).astype(np.float32)


def merge_to_frame(probs: np.ndarray, object_ids: Sequence[int], frame_hw: Tuple[int, int],
                   guard=None) -> np.ndarray:
    """Object ids at the frame's size from per-object probabilities at model resolution.

    One object: its map is resized (bilinear) to the frame and thresholded.  Several: they
    are merged at model resolution and the id map is resized once (nearest), so the host
    work does not grow with the number of objects times the frame size.  ``guard``: an
    :class:`edgevos.programs.occlusion.OcclusionGuard` applied to the merged map (several
    objects only); the objects it hides get zero probability in ``probs`` (in place).
    """
    import cv2

    h, w = frame_hw
    if probs.shape[0] == 1:
        return soft_aggregate(resize_map(probs[0], (h, w))[None], object_ids)
    ids = soft_aggregate(probs, object_ids)
    if guard is not None:
        ids, hidden = guard.apply(ids, object_ids)
        for k in hidden:
            probs[list(object_ids).index(k)] = 0.0
    if ids.shape == (h, w):
        return ids
    return cv2.resize(ids, (w, h), interpolation=cv2.INTER_NEAREST)


class ObjectSetMixin:
    """The reuse threshold and adding/removing tracked objects, shared by the step programs.

    A program provides ``objects`` (each with ``obj_id``), ``frame_hw``,
    ``input_size``, ``step(frame, force_compute=True)`` and
    ``_init_new_object(obj_id, mask_in, timer)`` (which reads the features
    its forced step left behind).
    """

    #: what start() needs, for the error when step() comes first
    START_HINT = "the first frame and its mask"

    def _begin_step(self, frame: np.ndarray):
        """The common head of ``step``: checks, frame counter, timer, model input.
        Returns (t0, frame, timer, what ``_preprocess`` returns)."""
        if not self.objects:
            raise InputError(f"step() called before start(): give {self.START_HINT} to start()")
        t0 = time.perf_counter()
        frame = check_frame(frame, self.frame_hw)
        self.frame_index += 1
        timer = Timer()
        return t0, frame, timer, self._preprocess(frame, timer)

    def _preprocess(self, frame: np.ndarray, timer: Timer):
        """The model input for a checked frame (programs may return more than one input)."""
        with timer.section("preprocess"):
            return to_input(frame, self.input_size)

    @property
    def tau(self) -> float:
        return self._tau

    @tau.setter
    def tau(self, value: float):
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise InputError(f"tau={value} is outside [0, 1]: 1 never reuses, lower values reuse more")
        self._tau = value

    @property
    def object_ids(self) -> List[int]:
        return [o.obj_id for o in self.objects]

    def add_objects(self, frame: np.ndarray, mask: np.ndarray) -> StepResult:
        """Start tracking the ids of ``mask`` not tracked yet; ``frame`` is computed in full."""
        import cv2

        frame = check_frame(frame, self.frame_hw)
        mask, ids = check_mask(mask, frame.shape[:2])
        new = [i for i in ids if i not in self.object_ids]
        if not new:
            raise InputError(f"mask has no new object ids (given {ids}, tracked {self.object_ids})")
        result = self.step(frame, force_compute=True)
        timer = Timer()
        h, w = self.input_size
        mask_in = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        for obj_id in new:
            self.objects.append(self._init_new_object(obj_id, mask_in, timer))
        new_probs = np.stack([(mask == i).astype(np.float32) for i in new], 0)
        probs = np.concatenate([result.probs * (1 - new_probs.max(0, keepdims=True)), new_probs], 0)
        result.probs, result.object_ids = probs, self.object_ids
        result.mask = soft_aggregate(probs, self.object_ids)
        for k, v in timer.ms.items():
            result.stage_ms[k] = result.stage_ms.get(k, 0.0) + v
        return result

    def remove_object(self, obj_id: int) -> None:
        before = len(self.objects)
        self.objects = [o for o in self.objects if o.obj_id != obj_id]
        if len(self.objects) == before:
            raise InputError(f"object {obj_id} is not tracked; tracked ids: {self.object_ids}")

