"""G-FRTM-fast training's target-model tracks (see :mod:`edgevos.train.gfrtm`): the online target
model's score maps over cached sequences, teacher-forced (ground-truth updates) or as at run time
(updates with the decoder's predictions), saved beside the cache, and perturbed scores."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence

import numpy as np

from edgevos.errors import InputError
from edgevos.train.gfrtm_cache import FEATS, _oriented, _orientations

if TYPE_CHECKING:
    from edgevos.train.gfrtm import TrainConfig


@dataclass
class Track:
    seq: int  # index into the cache
    obj_id: int
    ref: int  # reference (first) frame
    scores: np.ndarray  # (T, h16, w16) float32 target-model scores (frame ref holds the label)
    flip: bool = False  # on the horizontally flipped frames
    real: bool = True  # from a DAVIS sequence (not a generated one)


def _label16(mask, obj, hw16):
    from edgevos.programs.base import resize_map

    return resize_map((mask == obj).astype(np.float32), hw16, area=True)


class TargetFeatures:
    """The online target model's features of cached frames, stacked as the step program stacks
    them (``GfrtmConfig.target_inputs``: f16, optionally with f8 pooled and f32 upsampled to
    stride 16, :func:`edgevos.programs.base.stack_at`); the cached augmented first frames hold f16
    and f8, so their f32 is recomputed by the backbone's top."""

    def __init__(self, model):
        self.model = model
        self.inputs = tuple(model.config.target_inputs)
        self.proj_dim = model.config.proj_dim

    def frame(self, c, flip, t) -> np.ndarray:
        f16 = _oriented(c, "f16", flip)[t].astype(np.float32)
        if self.inputs == ("f16",):
            return f16
        return self._stack({k: _oriented(c, k, flip)[t].astype(np.float32) for k in self.inputs})

    def augmented(self, a_f16: np.ndarray, a_f8: Optional[np.ndarray] = None) -> List[np.ndarray]:
        f16 = [a.astype(np.float32) for a in a_f16]
        if self.inputs == ("f16",):
            return f16
        if "f8" in self.inputs and (a_f8 is None or len(a_f8) != len(f16)):
            raise InputError(f"target_inputs {list(self.inputs)}: this feature cache holds no f8 of augmented first "
                             "frames (it predates them); delete the run's cache/ folder to rebuild it")
        feats = [{"f16": a} for a in f16]
        if "f8" in self.inputs:
            for d, a in zip(feats, a_f8):
                d["f8"] = a.astype(np.float32)
        if "f32" in self.inputs:
            import torch

            with torch.inference_mode():
                f32 = self.model.backbone.forward_top(torch.from_numpy(np.stack(f16))).numpy()
            for d, a in zip(feats, f32):
                d["f32"] = a
        return [self._stack(d) for d in feats]

    def _stack(self, feats) -> np.ndarray:
        from edgevos.programs.base import stack_at

        return stack_at({k: v[None] for k, v in feats.items()}, self.inputs, feats["f16"].shape[-2:])


def _new_target_model(tf: TargetFeatures, c, obj, flip, ref, hw16, cfg: TrainConfig):
    """A target model initialised on frame ``ref`` (with the cached augmentations when ``ref`` is 0)."""
    from edgevos.programs.base import resize_map
    from edgevos.target_model import TargetModel, TargetModelConfig

    masks = _oriented(c, "masks", flip)
    x = tf.frame(c, flip, ref)
    tm = TargetModel(TargetModelConfig(proj_dim=tf.proj_dim), in_channels=x.shape[0], seed=cfg.seed)
    sfx = "_flip" if flip else ""
    a_f, a_m = c.get(f"aug_f16_{obj}{sfx}"), c.get(f"aug_mask_{obj}{sfx}")
    aug_f = aug_l = None
    if ref == 0 and a_f is not None and a_f.ndim == 4:
        aug_f = tf.augmented(a_f, c.get(f"aug_f8_{obj}{sfx}"))
        aug_l = [resize_map(m.astype(np.float32), hw16, area=True) for m in a_m]
    tm.initialize(x, _label16(masks[ref], obj, hw16), aug_f, aug_l)
    return tm


def _objects(c):
    return [int(i) for i in np.unique(c["masks"][0]) if i not in (0, 255)]


def score_tracks(model, cache, cfg: TrainConfig) -> List[Track]:
    """Teacher-forced tracks: the online target model fitted per (sequence, object, orientation)
    from frame 0 and updated with the ground truth of every frame."""
    from tqdm import tqdm

    tf = TargetFeatures(model)
    tracks = []
    for si, c in enumerate(tqdm(cache, desc="target model (teacher-forced)", unit="seq")):
        for flip in _orientations(c):
            masks, f16 = _oriented(c, "masks", flip), _oriented(c, "f16", flip)
            hw16 = f16.shape[-2:]
            for obj in _objects(c):
                if (_label16(masks[0], obj, hw16) > 0.5).sum() == 0:
                    continue  # vanishes at the stride-16 resolution: the target model cannot start
                tm = _new_target_model(tf, c, obj, flip, 0, hw16, cfg)
                scores = np.zeros((len(masks),) + tuple(hw16), np.float32)
                scores[0] = _label16(masks[0], obj, hw16)
                for t in range(1, len(masks)):
                    f = tf.frame(c, flip, t)
                    scores[t] = tm.classify(f)
                    tm.update(f, _label16(masks[t], obj, hw16))
                tracks.append(Track(si, obj, 0, scores, flip, bool(c.get("real", True))))
    return tracks


def runtime_tracks(model, cache, cfg: TrainConfig, rng) -> List[Track]:
    """Tracks made as at run time: the target model is updated with the decoder's *predicted*
    soft mask (sigmoid of the logits, area-resized to stride 16), never the ground truth, from
    frame 0 and from ``cfg.random_starts`` random start frames per (sequence, object, orientation)."""
    import torch
    from tqdm import tqdm

    from edgevos.programs.base import resize_map, sigmoid

    tf = TargetFeatures(model)
    tracks = []
    model.eval()
    with torch.inference_mode():
        for si, c in enumerate(tqdm(cache, desc="target model (run-time)", unit="seq")):
            T = len(c["masks"])
            for flip in _orientations(c):
                masks = _oriented(c, "masks", flip)
                feats = {k: _oriented(c, k, flip) for k in FEATS}
                hw16 = feats["f16"].shape[-2:]
                for obj in _objects(c):
                    starts = [0] + [int(v) for v in rng.integers(1, max(T - 5, 2), cfg.random_starts)] if T > 6 else [0]
                    for ref in starts:
                        lab = _label16(masks[ref], obj, hw16)
                        if (lab > 0.5).sum() == 0:
                            continue
                        tm = _new_target_model(tf, c, obj, flip, ref, hw16, cfg)
                        scores = np.zeros((T,) + tuple(hw16), np.float32)
                        scores[ref] = lab
                        for t in range(ref + 1, T):
                            ft = tf.frame(c, flip, t)
                            scores[t] = tm.classify(ft)
                            x = [torch.from_numpy(feats[k][t].astype(np.float32))[None] for k in FEATS]
                            logits, _ = model.decode_full(*x, torch.from_numpy(scores[t])[None, None])
                            tm.update(ft, resize_map(sigmoid(logits[0, 0].numpy()), hw16, area=True))
                        tracks.append(Track(si, obj, ref, scores, flip, bool(c.get("real", True))))
    return tracks


def save_tracks(path: Path, tracks: List[Track], names: Sequence[str] = ()) -> None:
    """Tracks to ``path``, with the names of the cached sequences their indices refer to."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
    np.savez(tmp, meta=np.array([[t.seq, t.obj_id, t.ref, int(t.flip), int(t.real)] for t in tracks]),
             names=np.array(list(names), dtype=str), **{f"s{i}": t.scores for i, t in enumerate(tracks)})
    os.replace(tmp, path)


def load_tracks(path: Path, names: Optional[Sequence[str]] = None) -> Optional[List[Track]]:
    """Tracks saved by :func:`save_tracks`; None when ``names`` (the cache's sequences now) differ
    from those they were made on (another sequence set: the indices would point elsewhere)."""
    z = np.load(path, allow_pickle=False)
    if names is not None and ("names" not in z or [str(n) for n in z["names"]] != list(names)):
        return None
    return [Track(int(m[0]), int(m[1]), int(m[2]), z[f"s{i}"], bool(m[3]), bool(m[4])) for i, m in enumerate(z["meta"])]


def perturb_score(score: np.ndarray, rng) -> np.ndarray:
    """A plausible worse score map: gain, offset, noise and a shift of up to one cell."""
    s = score * rng.uniform(0.6, 1.3) + rng.uniform(-0.3, 0.2) + rng.normal(0.0, 0.15, score.shape)
    if rng.random() < 0.4:
        s = np.roll(s, (int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), axis=(0, 1))
    return s.astype(np.float32)
