"""Training G-FRTM-fast on CPU (or GPUs with torchrun).

FRTM practice: the ImageNet backbone is frozen, so its features are computed
once and cached; the online target model is fitted per sequence (numpy, as at
run time) and its score maps cached too.  Then

* phase 1 trains the segmentation network (levels 32..4) on
  (features, target-model score) -> mask with BCE;
* phase 2 freezes it and trains the template matcher, reuse gate, delta
  generator and refine-translator with the paper's loss
  ``max(m2, |P_gate - P_target|)^2 + L2(delta, y'_t - S_{t-n}) + BCE``, with
  ``P_target = max(m, IoU(y_{t-n}, y_t))`` and ``m = min(m1, m1 * epoch / ep_T)``.

Training samples are made as the run time makes them:

* augmented frames are *encoded* (a horizontally flipped frame gets the features
  of the flipped image; a mirrored feature map is not that);
* target-model scores come from two kinds of tracks: teacher-forced (updates with
  ground truth, from frame 0) for the first part of phase 1, then run-time tracks
  re-made with the current decoder in the loop (updates with *predicted* masks,
  random start frames), plus score noise, so the decoder learns to repair the
  scores it will really get;
* real sequences make up ``real_share`` of the samples (synthetic ones the rest);
* the gate sees gaps of 1..``max_gap`` frames (the gate reuses long runs at run time).

Data: DAVIS-layout folders (held-out sequences never used) plus synthetic
sequences.  Progress bars, periodic checkpoints, resume.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from edgevos.errors import InputError
from edgevos.metrics import agreement_iou
from edgevos.train.config import BaseTrainConfig
from edgevos.train.distributed import average_gradients, init_distributed

# modules trained in phase 2 (the reuse path)
PHASE2_MODULES = ("matcher.", "gate.", "delta.", "translator.", "reuse_level.", "reuse_predict.")


@dataclass
class TrainConfig(BaseTrainConfig):
    out: str = "runs/gfrtm"
    reuse_scale: int = 1  # GfrtmConfig.reuse_scale: 2 = half-resolution gate and reuse path
    refiner_stride: int = 8  # GfrtmConfig.refiner_stride: 16 translates the refiner state at stride 16
    reuse_head: str = "stride8"  # GfrtmConfig.reuse_head: stride8, residual or blend (read the last computed logits)
    init: Optional[str] = None  # start from this checkpoint's weights (e.g. phase 1 of an earlier run)
    proj_dim: int = 32  # GfrtmConfig.proj_dim: the online target model's projection
    target_inputs: Tuple[str, ...] = ("f16",)  # GfrtmConfig.target_inputs: what the target model reads
    init_reuse_path: bool = False  # also take the init checkpoint's reuse path (matcher, gate, delta, translator, head)
    phase1_steps: int = 3000
    phase2_steps: int = 2000
    batch: int = 4
    lr1: float = 1e-3
    lr2: float = 5e-4
    max_gap: int = 25  # n in (t - n, t) for phase 2: the gate reuses long runs at run time
    real_share: float = 0.8  # share of samples from real (DAVIS) sequences; synthetic ones the rest
    flip: bool = True  # also encode horizontally flipped real frames
    rescore_at: Tuple[float, ...] = (0.3, 0.65)  # phase-1 fractions at which run-time tracks are re-made
    runtime_share: float = 0.75  # after the first re-scoring: share of samples on run-time tracks
    random_starts: int = 2  # run-time tracks per (sequence, object, flip) that start at a random frame
    score_noise: float = 0.5  # probability of perturbing a sample's score map
    num_augmentations: int = 5


# ----------------------------------------------------------------------------- data
@dataclass
class Track:
    seq: int  # index into the cache
    obj_id: int
    ref: int  # reference (first) frame
    scores: np.ndarray  # (T, h16, w16) float32 target-model scores (frame ref holds the label)
    flip: bool = False  # on the horizontally flipped frames
    real: bool = True  # from a DAVIS sequence (not a generated one)


def _resize_frame(img, hw):
    import cv2

    return cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def _resize_mask(m, hw):
    import cv2

    return cv2.resize(m, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)


def _encode(model, img):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))[None].astype(np.float32))
    f4, f8 = model.encode_low(x)
    f16, f32 = model.encode_high(f8)
    return [v[0].numpy().astype(np.float16) for v in (f4, f8, f16, f32)]


FEATS = ("f4", "f8", "f16", "f32")


def build_cache(model, sequences, cfg: TrainConfig, cache_dir: Path, real=None):
    """Encode every frame once with the frozen backbone; fp16 on disk, one file per sequence.

    Real sequences (``real[i]`` true) also get the features of their horizontally
    flipped frames (``f4_flip`` ...) when ``cfg.flip``: augmentations are encoded,
    never applied to feature maps.  Each orientation gets its own augmented first
    frames per object (``aug_f16_{obj}[_flip]``) for the target model's initialisation.
    """
    import torch
    from tqdm import tqdm

    from edgevos.target_model import augment_first_frame

    cache_dir.mkdir(parents=True, exist_ok=True)
    real = [True] * len(sequences) if real is None else list(real)
    entries = []
    for seq, is_real in tqdm(list(zip(sequences, real)), desc="feature cache", unit="seq"):
        path = cache_dir / f"{seq.name}.npz"
        if path.is_file():
            if cfg.reuse_scale == 2 and not (cache_dir / f"{seq.name}.half.npz").is_file():
                _cache_half(model, seq, cfg, cache_dir, flips=(False, True) if (cfg.flip and is_real) else (False,))
            entries.append(path)
            continue
        n = len(seq) if not cfg.max_frames_per_sequence else min(len(seq), cfg.max_frames_per_sequence)
        flips = (False, True) if (cfg.flip and is_real) else (False,)
        arrays = {}
        masks = []
        frames = []
        for i in range(n):
            frames.append(_resize_frame(seq.frame(i), cfg.input_size))
            m = seq.mask(i)
            masks.append(_resize_mask(m, cfg.input_size) if m is not None else np.zeros(cfg.input_size, np.uint8))
        with torch.inference_mode():
            for flip in flips:
                sfx = "_flip" if flip else ""
                feats = {k: [] for k in FEATS}
                for img in frames:
                    for k, v in zip(FEATS, _encode(model, img[:, ::-1] if flip else img)):
                        feats[k].append(v)
                arrays.update({k + sfx: np.stack(v) for k, v in feats.items()})
                # augmented first frames, per object, for the target model's initialisation
                img0 = frames[0][:, ::-1] if flip else frames[0]
                m0 = masks[0][:, ::-1] if flip else masks[0]
                for obj in [int(i) for i in np.unique(m0) if i not in (0, 255)]:
                    a_f16, a_lab = [], []
                    for img_a, m_a in augment_first_frame(np.ascontiguousarray(img0), (m0 == obj).astype(np.uint8),
                                                          cfg.num_augmentations, cfg.seed):
                        a_f16.append(_encode(model, img_a)[2])
                        a_lab.append(m_a.astype(np.uint8))
                    arrays[f"aug_f16_{obj}{sfx}"] = np.stack(a_f16) if a_f16 else np.zeros((0,))
                    arrays[f"aug_mask_{obj}{sfx}"] = np.stack(a_lab) if a_lab else np.zeros((0,))
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
        np.savez(tmp, masks=np.stack(masks), real=np.array(bool(is_real)), **arrays)
        os.replace(tmp, path)
        if cfg.reuse_scale == 2:
            _cache_half(model, seq, cfg, cache_dir, flips, frames)
        entries.append(path)
    return entries


def _cache_half(model, seq, cfg: TrainConfig, cache_dir: Path, flips, frames=None):
    """Half-resolution features (h4 at stride 8, h8 at stride 16 of the model input) for the
    half-resolution gate and reuse path, in ``<name>.half.npz`` beside the sequence's cache."""
    import torch

    from edgevos.programs.base import resize_image

    n = len(seq) if not cfg.max_frames_per_sequence else min(len(seq), cfg.max_frames_per_sequence)
    if frames is None:
        frames = [_resize_frame(seq.frame(i), cfg.input_size) for i in range(n)]
    h, w = cfg.input_size
    arrays = {}
    with torch.inference_mode():
        for flip in flips:
            h4, h8 = [], []
            for img in frames:
                half = resize_image(np.ascontiguousarray(img[:, ::-1] if flip else img), (h // 2, w // 2))
                x = torch.from_numpy(np.ascontiguousarray(half.transpose(2, 0, 1))[None].astype(np.float32))
                a, b = model.encode_low(x)
                h4.append(a[0].numpy().astype(np.float16))
                h8.append(b[0].numpy().astype(np.float16))
            sfx = "_flip" if flip else ""
            arrays["h4" + sfx], arrays["h8" + sfx] = np.stack(h4), np.stack(h8)
    path = cache_dir / f"{seq.name}.half.npz"
    tmp = path.with_name(f".{seq.name}.half.{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_cache(entries):
    out = []
    for p in entries:
        c = dict(np.load(p)) | {"name": p.stem}
        half = p.with_name(f"{p.stem}.half.npz")
        if half.is_file():
            c.update(np.load(half))
        out.append(c)
    return out


def _oriented(c, key, flip):
    """Array ``key`` of cache entry ``c`` for the given orientation (masks are flipped on the fly)."""
    if key == "masks":
        return c["masks"][..., ::-1] if flip else c["masks"]
    return c[key + ("_flip" if flip else "")]


def _orientations(c):
    return (False, True) if "f4_flip" in c else (False,)


def _label16(mask, obj, hw16):
    from edgevos.programs.base import resize_map

    return resize_map((mask == obj).astype(np.float32), hw16, area=True)


class TargetFeatures:
    """The online target model's features of cached frames, stacked as the step program stacks
    them (``GfrtmConfig.target_inputs``: f16, optionally with f32 upsampled to stride 16); the
    cached augmented first frames hold f16 only, so their f32 is recomputed by the backbone's top."""

    def __init__(self, model):
        self.model = model
        self.inputs = tuple(model.config.target_inputs)
        self.proj_dim = model.config.proj_dim
        if "f8" in self.inputs:
            raise InputError(f"target_inputs {list(self.inputs)}: training supports f16 and f32 (the feature cache "
                             "holds no f8 of augmented first frames)")

    def frame(self, c, flip, t) -> np.ndarray:
        f16 = _oriented(c, "f16", flip)[t].astype(np.float32)
        if self.inputs == ("f16",):
            return f16
        return self._stack(f16, _oriented(c, "f32", flip)[t].astype(np.float32))

    def augmented(self, a_f16: np.ndarray) -> List[np.ndarray]:
        f16 = [a.astype(np.float32) for a in a_f16]
        if self.inputs == ("f16",):
            return f16
        import torch

        with torch.inference_mode():
            f32 = self.model.backbone.forward_top(torch.from_numpy(np.stack(f16))).numpy()
        return [self._stack(a, b) for a, b in zip(f16, f32)]

    def _stack(self, f16, f32) -> np.ndarray:
        from edgevos.programs.base import resize_maps

        parts = {"f16": f16, "f32": resize_maps(f32, f16.shape[-2:])}
        return np.ascontiguousarray(np.concatenate([parts[k] for k in self.inputs], 0), np.float32)


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
        aug_f = tf.augmented(a_f)
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


def save_tracks(path: Path, tracks: List[Track]) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
    np.savez(tmp, meta=np.array([[t.seq, t.obj_id, t.ref, int(t.flip), int(t.real)] for t in tracks]),
             **{f"s{i}": t.scores for i, t in enumerate(tracks)})
    os.replace(tmp, path)


def load_tracks(path: Path) -> List[Track]:
    z = np.load(path, allow_pickle=False)
    return [Track(int(m[0]), int(m[1]), int(m[2]), z[f"s{i}"], bool(m[3]), bool(m[4])) for i, m in enumerate(z["meta"])]


def perturb_score(score: np.ndarray, rng) -> np.ndarray:
    """A plausible worse score map: gain, offset, noise and a shift of up to one cell."""
    s = score * rng.uniform(0.6, 1.3) + rng.uniform(-0.3, 0.2) + rng.normal(0.0, 0.15, score.shape)
    if rng.random() < 0.4:
        s = np.roll(s, (int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), axis=(0, 1))
    return s.astype(np.float32)


# ----------------------------------------------------------------------------- losses
def gate_probability_loss(p_gate, p_target, m2: float):
    import torch

    return torch.clamp((p_gate - p_target).abs(), min=m2).pow(2).mean()


def margin(epoch: float, m1: float, ep_T: int) -> float:
    return min(m1, m1 * epoch / max(ep_T, 1))


# ----------------------------------------------------------------------------- trainer
class Trainer:
    def __init__(self, cfg: TrainConfig):
        import torch

        self.cfg = cfg
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.rank, self.world = init_distributed()
        self.rng = np.random.default_rng(cfg.seed + self.rank)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        from edgevos.models.gfrtm import build_gfrtm

        self.model = build_gfrtm(input_size=cfg.input_size, backbone=cfg.backbone, backbone_weights=cfg.backbone_weights,
                                 refiner_stride=cfg.refiner_stride, reuse_scale=cfg.reuse_scale,
                                 reuse_head=cfg.reuse_head, proj_dim=cfg.proj_dim,
                                 target_inputs=tuple(cfg.target_inputs))
        self._init_reuse_head()
        if cfg.init:
            self._init_from(cfg.init)
        self.log = open(self.out / "train_log.jsonl", "a") if self.rank == 0 else None

    # -- data
    def sequences(self):
        """(sequences, real flags): DAVIS-layout sequences (held-out ones excluded), then generated ones."""
        from edgevos.data import DavisDataset, SyntheticConfig, make_sequence

        seqs = []
        for root in self.cfg.davis:
            ds = DavisDataset(root)
            names = [n for n in ds.sequences if n not in self.cfg.heldout]
            seqs += [ds[n] for n in names]
        real = [True] * len(seqs)
        h, w = self.cfg.input_size
        for i in range(self.cfg.synthetic):
            seqs.append(make_sequence(SyntheticConfig(height=h, width=w, num_frames=self.cfg.synthetic_frames,
                                                      num_objects=1 + i % 3, seed=1000 + i,
                                                      speed=2.0 + (i % 5), name=f"synthetic-{i:03d}")))
            real.append(False)
        return seqs, real

    def prepare(self):
        seqs, real = self.sequences()
        entries = build_cache(self.model, seqs, self.cfg, self.out / "cache", real)
        self.cache = load_cache(entries)
        tracks_path = self.out / "cache" / f"tracks{self._tm_tag}.npz"
        if tracks_path.is_file():
            self.teacher = load_tracks(tracks_path)
        else:
            self.teacher = score_tracks(self.model, self.cache, self.cfg)
            if self.rank == 0:
                save_tracks(tracks_path, self.teacher)
        self.tracks = self.teacher
        self.runtime: List[Track] = []
        self.names = [c["name"] for c in self.cache]

    def rescore(self, tag: str):
        """Re-make the run-time tracks with the current decoder (cached per tag, so a resume reuses them)."""
        path = self.out / "cache" / f"tracks_runtime_{tag}{self._tm_tag}.npz"
        if path.is_file():
            self.runtime = load_tracks(path)
        else:
            self.runtime = runtime_tracks(self.model, self.cache, self.cfg, np.random.default_rng(self.cfg.seed + 17))
            if self.rank == 0:
                save_tracks(path, self.runtime)
        self._write({"phase": 1, "rescored": tag, "runtime_tracks": len(self.runtime), "time": time.time()})

    @property
    def _tm_tag(self) -> str:
        """Track files are kept per target-model setting ("" for the original K=32 on f16)."""
        c = self.model.config
        return "" if (c.proj_dim, tuple(c.target_inputs)) == (32, ("f16",)) else \
            f"_k{c.proj_dim}_{'+'.join(c.target_inputs)}"

    def _pick_track(self) -> Track:
        """Real tracks with probability ``real_share``; run-time tracks (once made) with ``runtime_share``."""
        pool = self.runtime if self.runtime and self.rng.random() < self.cfg.runtime_share else self.teacher
        real = [t for t in pool if t.real]
        synth = [t for t in pool if not t.real]
        use_real = bool(real) and (not synth or self.rng.random() < self.cfg.real_share)
        group = real if use_real else synth
        return group[self.rng.integers(len(group))]

    def _sample(self, gap: bool):
        """A (track, t[, prev]) sample; prev = t - n with n in 1..max_gap (not before the track's start)."""
        tr = self._pick_track()
        T = len(tr.scores)
        t = int(self.rng.integers(tr.ref + 1, T)) if T > tr.ref + 1 else tr.ref
        prev = max(tr.ref, t - int(self.rng.integers(1, self.cfg.max_gap + 1))) if gap else None
        return tr, t, prev, tr.flip

    def _feats(self, c, t, flip):
        """Cached features of frame ``t`` in the track's orientation (flipped frames were encoded flipped)."""
        import torch

        return [torch.from_numpy(_oriented(c, k, flip)[t].astype(np.float32))[None] for k in FEATS]

    def _tensor(self, a, flip=False):
        import torch

        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]

    def _score(self, tr: Track, t: int):
        s = tr.scores[t]
        return perturb_score(s, self.rng) if t != tr.ref and self.rng.random() < self.cfg.score_noise else s

    def _init_reuse_head(self, stride8=None):
        """A head that reads the last computed logits starts close to a known behaviour: ``residual``
        at a zero correction (a copy of the computed frame); ``blend`` with its stride-8 channel from
        ``stride8`` (a trained stride-8 head's ``(weight, bias)``, when given) and a small copy weight."""
        import torch

        head = self.model.config.reuse_head
        if head == "stride8":
            return
        conv = self.model.reuse_predict
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.zero_()
            if head == "blend":
                if stride8 is not None:
                    conv.weight[:1].copy_(stride8[0])
                    conv.bias[:1].copy_(stride8[1])
                conv.bias[1] = -2.0  # w = 0.12: mostly the stride-8 mask at the start

    def _init_from(self, path):
        """Take the segmentation network (phase 1) from an edgevos gfrtm checkpoint or a
        training checkpoint; the reuse-path modules (phase 2) keep their fresh initialisation unless
        ``init_reuse_path`` (a stride-8 head then seeds a ``blend`` head, see ``_init_reuse_head``)."""
        import torch

        ck = torch.load(path, map_location="cpu", weights_only=True)
        state = ck.get("state_dict", ck.get("model"))
        if not isinstance(state, dict):
            raise InputError(f"--init {path}: not an edgevos gfrtm checkpoint or training checkpoint")
        prefixes = ("level32.", "level16.", "level8.", "level4.", "predict.")
        if self.cfg.init_reuse_path:
            prefixes += PHASE2_MODULES
        own = self.model.state_dict()
        take = {k: v.float() for k, v in state.items() if k.startswith(prefixes)}
        if self.model.reads_prev_logits and "reuse_predict.weight" in take:
            stride8 = (take.pop("reuse_predict.weight"), take.pop("reuse_predict.bias"))
            if stride8[0].shape[0] == 1:
                self._init_reuse_head(stride8)
        bad = [k for k, v in take.items() if k not in own or own[k].shape != v.shape]
        if bad or not take:
            raise InputError(f"--init {path}: segmentation-network weights do not fit this model "
                             f"({bad[:3] or 'none found'}); use a checkpoint of the same backbone and widths")
        self.model.load_state_dict(take, strict=False)

    # -- checkpoints
    def save(self, phase, step, opt):
        import torch

        if self.rank != 0:
            return
        tmp = self.out / "checkpoint.pt.tmp"
        torch.save({"phase": phase, "step": step, "model": self.model.trainable_state_dict(),
                    "optimizer": opt.state_dict(), "config": asdict(self.cfg)}, tmp)
        os.replace(tmp, self.out / "checkpoint.pt")

    def resume(self):
        import torch

        p = self.out / "checkpoint.pt"
        if not p.is_file():
            return None
        ck = torch.load(p, map_location="cpu", weights_only=True)
        self.model.load_state_dict(ck["model"], strict=False)
        return ck

    def _write(self, rec):
        if self.log is None:
            return
        self.log.write(json.dumps(rec) + "\n")
        self.log.flush()

    # -- phases
    def phase1(self, start_step=0, opt_state=None):
        import torch
        import torch.nn.functional as F
        from tqdm import tqdm

        m = self.model
        params = [p for n, p in m.named_parameters() if n.split(".")[0] in ("level32", "level16", "level8", "level4", "predict")]
        opt = torch.optim.Adam(params, lr=self.cfg.lr1)
        if opt_state:
            opt.load_state_dict(opt_state)
        steps = self.cfg.phase1_steps
        sched = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
        self._rescored = []
        bar = tqdm(range(start_step, steps), desc="phase 1 (segmentation)", initial=start_step, total=steps)
        for step in bar:
            for g in opt.param_groups:
                g["lr"] = self.cfg.lr1 * sched(step)
            loss_sum = 0.0
            opt.zero_grad()
            for k, frac in enumerate(self.cfg.rescore_at):
                if step >= int(frac * steps) and len(self._rescored) <= k:
                    self._rescored.append(frac)
                    self.rescore(f"{k}")
            for _ in range(self.cfg.batch):
                tr, t, _, flip = self._sample(False)
                c = self.cache[tr.seq]
                f4, f8, f16, f32 = self._feats(c, t, flip)
                score = self._tensor(self._score(tr, t))
                target = self._tensor((_oriented(c, "masks", flip)[t] == tr.obj_id).astype(np.float32))
                logits, _ = m.decode_full(f4, f8, f16, f32, score)
                logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
                loss = F.binary_cross_entropy_with_logits(logits, target) / self.cfg.batch
                loss.backward()
                loss_sum += float(loss.detach())
            average_gradients(params, self.world)
            opt.step()
            bar.set_postfix(loss=f"{loss_sum:.4f}")
            if step % 25 == 0:
                self._write({"phase": 1, "step": step, "loss": loss_sum, "time": time.time()})
            if (step + 1) % self.cfg.checkpoint_every == 0:
                self.save(1, step + 1, opt)
        self.save(2, 0, torch.optim.Adam([torch.zeros(1)]))

    def phase2(self, start_step=0, opt_state=None):
        import torch
        import torch.nn.functional as F
        from tqdm import tqdm

        from edgevos.programs.base import resize_map

        m = self.model
        params = [p for n, p in m.named_parameters() if n.startswith(PHASE2_MODULES)]
        opt = torch.optim.Adam(params, lr=self.cfg.lr2)
        half = m.config.reuse_scale == 2
        if opt_state:
            try:
                opt.load_state_dict(opt_state)
            except ValueError:
                pass
        if not self.runtime and self.cfg.rescore_at:
            self.rescore(f"{len(self.cfg.rescore_at) - 1}")
        steps = self.cfg.phase2_steps
        bar = tqdm(range(start_step, steps), desc="phase 2 (reuse gate)", initial=start_step, total=steps)
        for step in bar:
            epoch = step * self.cfg.batch * self.world / self.cfg.epoch_samples
            mgn = margin(epoch, self.cfg.m1, self.cfg.ep_T)
            opt.zero_grad()
            logs = np.zeros(4)
            for _ in range(self.cfg.batch):
                tr, t, prev, flip = self._sample(True)
                c = self.cache[tr.seq]
                masks = _oriented(c, "masks", flip)
                f4, f8, _, _ = self._feats(c, t, flip)
                p4, p8, p16, p32 = self._feats(c, prev, flip)
                r4, r8_, _, _ = self._feats(c, tr.ref, flip)
                s_prev = self._tensor(tr.scores[prev])
                y_t = (masks[t] == tr.obj_id)
                y_prev = (masks[prev] == tr.obj_id)
                y16 = self._tensor(resize_map(y_t.astype(np.float32), tr.scores.shape[1:], area=True))
                with torch.no_grad():
                    if m.reads_prev_logits:  # the last computed frame's logits, which the head reads
                        prev_logits, r8_prev = m.decode_full(p4, p8, p16, p32, s_prev)
                    else:
                        prev_logits, r8_prev = None, m.deep_levels(p16, p32, s_prev)
                if half:  # the gate and the reuse path read the half-resolution encoding
                    g_t, g_prev, g_ref = (torch.from_numpy(_oriented(c, "h8", flip)[i].astype(np.float32))[None]
                                          for i in (t, prev, tr.ref))
                    h4 = torch.from_numpy(_oriented(c, "h4", flip)[t].astype(np.float32))[None]
                    mask16 = self._tensor(resize_map((masks[tr.ref] == tr.obj_id).astype(np.float32),
                                                     tuple(g_ref.shape[-2:]), area=True))
                    template, _ = m.matcher.template(g_ref, mask16)
                    p_gate, delta, _ = m.gate_forward(g_t, s_prev, template, m.matcher.embed(g_prev))
                    logits = m.decode_reuse_half(h4, r8_prev, s_prev, delta, prev_logits)
                else:
                    mask8 = self._tensor(resize_map((masks[tr.ref] == tr.obj_id).astype(np.float32), r8_.shape[-2:], area=True))
                    template, _ = m.matcher.template(r8_, mask8)
                    prev_embed = m.matcher.embed(p8)
                    p_gate, delta, _ = m.gate_forward(f8, s_prev, template, prev_embed)
                    logits = m.decode_reuse(f4, f8, r8_prev, s_prev, delta)
                logits = F.interpolate(logits, size=y_t.shape[-2:], mode="bilinear", align_corners=False)
                p_target = max(mgn, agreement_iou(y_t, y_prev))
                l_gp = gate_probability_loss(p_gate, torch.tensor([[p_target]]), self.cfg.m2)
                l_delta = F.mse_loss(delta, y16 - s_prev)
                l_bce = F.binary_cross_entropy_with_logits(logits, self._tensor(y_t.astype(np.float32)))
                loss = (l_gp + l_delta + l_bce) / self.cfg.batch
                loss.backward()
                logs += [float(loss.detach()), float(l_gp.detach()), float(l_delta.detach()), float(l_bce.detach())]
            average_gradients(params, self.world)
            opt.step()
            bar.set_postfix(gp=f"{logs[1] / self.cfg.batch:.3f}", bce=f"{logs[3] / self.cfg.batch:.3f}", m=f"{mgn:.2f}")
            if step % 25 == 0:
                self._write({"phase": 2, "step": step, "loss": logs[0], "gp": logs[1] / self.cfg.batch,
                             "delta": logs[2] / self.cfg.batch, "bce": logs[3] / self.cfg.batch, "margin": mgn,
                             "time": time.time()})
            if (step + 1) % self.cfg.checkpoint_every == 0:
                self.save(2, step + 1, opt)
        self.save(3, 0, opt)

    def run(self, phases=(1, 2)):
        from edgevos.models.weights import save_checkpoint

        ck = self.resume()
        phase, step, opt_state = (ck["phase"], ck["step"], ck["optimizer"]) if ck else (1, 0, None)
        self.prepare()
        if 1 in phases and phase <= 1:
            self.phase1(step if phase == 1 else 0, opt_state if phase == 1 else None)
            phase, step, opt_state = 2, 0, None
        if 2 in phases and phase <= 2:
            self.phase2(step if phase == 2 else 0, opt_state if phase == 2 else None)
        meta = {"train_config": asdict(self.cfg), "sequences": self.names, "world_size": self.world}
        if self.rank != 0:
            return self.out / "gfrtm_final.pt"
        return save_checkpoint(self.out / "gfrtm_final.pt", "gfrtm", self.model, meta=meta, half=True)
