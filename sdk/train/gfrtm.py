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

Data: DAVIS-layout folders (held-out sequences never used) plus synthetic
sequences.  Progress bars, periodic checkpoints, resume.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from edgevos.errors import InputError
from edgevos.train.distributed import average_gradients, init_distributed

# Sequences of ../shared/data/davis2016-train never used for training: validation.
HELDOUT = ("bear", "car-turn", "dance-jump", "kite-walk", "motocross-bumps")


@dataclass
class TrainConfig:
    out: str = "runs/gfrtm"
    davis: Tuple[str, ...] = ()
    heldout: Tuple[str, ...] = HELDOUT
    synthetic: int = 30
    synthetic_frames: int = 30
    input_size: Tuple[int, int] = (256, 448)
    backbone: str = "mobilenetv2"
    backbone_weights: Optional[str] = None
    refiner_stride: int = 8  # GfrtmConfig.refiner_stride: 16 translates the refiner state at stride 16
    init: Optional[str] = None  # start from this checkpoint's weights (e.g. phase 1 of an earlier run)
    phase1_steps: int = 3000
    phase2_steps: int = 2000
    batch: int = 4
    lr1: float = 1e-3
    lr2: float = 5e-4
    epoch_samples: int = 400  # samples per "epoch" for the margin schedule
    m1: float = 1.0
    m2: float = 0.0
    ep_T: int = 120
    max_gap: int = 5  # n in (t - n, t) for phase 2
    num_augmentations: int = 5
    threads: int = 1
    seed: int = 0
    checkpoint_every: int = 250
    max_frames_per_sequence: int = 0  # 0 = all


# ----------------------------------------------------------------------------- data
@dataclass
class Track:
    seq: int  # index into the cache
    obj_id: int
    ref: int  # reference (first) frame
    scores: np.ndarray  # (T, h16, w16) float32 target-model scores (frame ref holds the label)


def _resize_frame(img, hw):
    import cv2

    return cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def _resize_mask(m, hw):
    import cv2

    return cv2.resize(m, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)


def build_cache(model, sequences, cfg: TrainConfig, cache_dir: Path):
    """Encode every frame once with the frozen backbone; fp16 on disk, one file per sequence."""
    import torch
    from tqdm import tqdm

    from edgevos.target_model import augment_first_frame

    cache_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for seq in tqdm(sequences, desc="feature cache", unit="seq"):
        path = cache_dir / f"{seq.name}.npz"
        if path.is_file():
            entries.append(path)
            continue
        n = len(seq) if not cfg.max_frames_per_sequence else min(len(seq), cfg.max_frames_per_sequence)
        feats = {k: [] for k in ("f4", "f8", "f16", "f32")}
        masks = []
        with torch.inference_mode():
            for i in range(n):
                img = _resize_frame(seq.frame(i), cfg.input_size)
                m = seq.mask(i)
                masks.append(_resize_mask(m, cfg.input_size) if m is not None else np.zeros(cfg.input_size, np.uint8))
                x = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32))
                f4, f8 = model.encode_low(x)
                f16, f32 = model.encode_high(f8)
                for k, v in zip(("f4", "f8", "f16", "f32"), (f4, f8, f16, f32)):
                    feats[k].append(v[0].numpy().astype(np.float16))
            # augmented first frames, per object, for the target model's initialisation
            img0 = _resize_frame(seq.frame(0), cfg.input_size)
            aug = {}
            for obj in [int(i) for i in np.unique(masks[0]) if i not in (0, 255)]:
                a_f16, a_lab = [], []
                for img_a, m_a in augment_first_frame(img0, (masks[0] == obj).astype(np.uint8), cfg.num_augmentations, cfg.seed):
                    x = torch.from_numpy(np.ascontiguousarray(img_a.transpose(2, 0, 1))[None].astype(np.float32))
                    a_f16.append(model.encode_high(model.encode_low(x)[1])[0][0].numpy().astype(np.float16))
                    a_lab.append(m_a.astype(np.uint8))
                aug[f"aug_f16_{obj}"] = np.stack(a_f16) if a_f16 else np.zeros((0,))
                aug[f"aug_mask_{obj}"] = np.stack(a_lab) if a_lab else np.zeros((0,))
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
        np.savez(tmp, masks=np.stack(masks), **{k: np.stack(v) for k, v in feats.items()}, **aug)
        os.replace(tmp, path)
        entries.append(path)
    return entries


def load_cache(entries):
    return [dict(np.load(p)) | {"name": p.stem} for p in entries]


def score_tracks(cache, cfg: TrainConfig, proj_dim: int) -> List[Track]:
    """Fit the online target model per (sequence, object) as at run time; teacher-forced updates."""
    from tqdm import tqdm

    from edgevos.target_model import TargetModel, TargetModelConfig
    from edgevos.programs.base import resize_map

    tcfg = TargetModelConfig(proj_dim=proj_dim)
    tracks = []
    for si, c in enumerate(tqdm(cache, desc="target model", unit="seq")):
        masks, f16 = c["masks"], c["f16"].astype(np.float32)
        hw16 = f16.shape[-2:]
        for obj in [int(i) for i in np.unique(masks[0]) if i not in (0, 255)]:
            lab = lambda m: resize_map((m == obj).astype(np.float32), hw16, area=True)
            tm = TargetModel(tcfg, in_channels=f16.shape[1], seed=cfg.seed)
            a_f = c.get(f"aug_f16_{obj}")
            a_m = c.get(f"aug_mask_{obj}")
            aug_f = [a.astype(np.float32) for a in a_f] if a_f is not None and a_f.ndim == 4 else None
            aug_l = [resize_map(m.astype(np.float32), hw16, area=True) for m in a_m] if aug_f else None
            if (lab(masks[0]) > 0.5).sum() == 0:
                print(f"skipping object {obj} of {c['name']}: it vanishes at the stride-16 feature resolution")
                continue
            tm.initialize(f16[0], lab(masks[0]), aug_f, aug_l)
            scores = np.zeros((len(masks),) + tuple(hw16), np.float32)
            scores[0] = lab(masks[0])
            for t in range(1, len(masks)):
                scores[t] = tm.classify(f16[t])
                tm.update(f16[t], lab(masks[t]))
            tracks.append(Track(si, obj, 0, scores))
    return tracks


# ----------------------------------------------------------------------------- losses
def gate_probability_loss(p_gate, p_target, m2: float):
    import torch

    return torch.clamp((p_gate - p_target).abs(), min=m2).pow(2).mean()


def margin(epoch: float, m1: float, ep_T: int) -> float:
    return min(m1, m1 * epoch / max(ep_T, 1))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


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
                                 refiner_stride=cfg.refiner_stride)
        if cfg.init:
            self._init_from(cfg.init)
        self.log = open(self.out / "train_log.jsonl", "a") if self.rank == 0 else None

    # -- data
    def sequences(self):
        from edgevos.data import DavisDataset, SyntheticConfig, make_sequence

        seqs = []
        for root in self.cfg.davis:
            ds = DavisDataset(root)
            names = [n for n in ds.sequences if n not in self.cfg.heldout]
            seqs += [ds[n] for n in names]
        h, w = self.cfg.input_size
        for i in range(self.cfg.synthetic):
            seqs.append(make_sequence(SyntheticConfig(height=h, width=w, num_frames=self.cfg.synthetic_frames,
                                                      num_objects=1 + i % 3, seed=1000 + i,
                                                      speed=2.0 + (i % 5), name=f"synthetic-{i:03d}")))
        return seqs

    def prepare(self):
        entries = build_cache(self.model, self.sequences(), self.cfg, self.out / "cache")
        self.cache = load_cache(entries)
        tracks_path = self.out / "cache" / "tracks.npz"
        if tracks_path.is_file():
            z = np.load(tracks_path, allow_pickle=False)
            meta = z["meta"]
            self.tracks = [Track(int(m[0]), int(m[1]), int(m[2]), z[f"s{i}"]) for i, m in enumerate(meta)]
        else:
            self.tracks = score_tracks(self.cache, self.cfg, self.model.config.proj_dim)
            if self.rank == 0:
                tmp = tracks_path.with_name(f".tracks.{os.getpid()}.npz")
                np.savez(tmp, meta=np.array([[t.seq, t.obj_id, t.ref] for t in self.tracks]),
                         **{f"s{i}": t.scores for i, t in enumerate(self.tracks)})
                os.replace(tmp, tracks_path)
        self.names = [c["name"] for c in self.cache]

    def _feats(self, c, t, flip):
        import torch

        out = []
        for k in ("f4", "f8", "f16", "f32"):
            a = c[k][t].astype(np.float32)
            out.append(a[..., ::-1] if flip else a)
        return [torch.from_numpy(np.ascontiguousarray(a))[None] for a in out]

    def _sample(self, gap: bool):
        """A (track, t[, prev]) sample with consistent horizontal flip."""
        tr = self.tracks[self.rng.integers(len(self.tracks))]
        T = len(tr.scores)
        t = int(self.rng.integers(tr.ref + 1, T))
        prev = max(tr.ref, t - int(self.rng.integers(1, self.cfg.max_gap + 1))) if gap else None
        return tr, t, prev, bool(self.rng.random() < 0.5)

    def _tensor(self, a, flip):
        import torch

        a = a[..., ::-1] if flip else a
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]

    def _init_from(self, path):
        """Take the segmentation network (phase 1) from an edgevos gfrtm checkpoint or a
        training checkpoint; the reuse-path modules (phase 2) keep their fresh initialisation."""
        import torch

        ck = torch.load(path, map_location="cpu", weights_only=True)
        state = ck.get("state_dict", ck.get("model"))
        if not isinstance(state, dict):
            raise InputError(f"--init {path}: not an edgevos gfrtm checkpoint or training checkpoint")
        phase1 = ("level32.", "level16.", "level8.", "level4.", "predict.")
        own = self.model.state_dict()
        take = {k: v.float() for k, v in state.items() if k.startswith(phase1)}
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
        bar = tqdm(range(start_step, steps), desc="phase 1 (segmentation)", initial=start_step, total=steps)
        for step in bar:
            for g in opt.param_groups:
                g["lr"] = self.cfg.lr1 * sched(step)
            loss_sum = 0.0
            opt.zero_grad()
            for _ in range(self.cfg.batch):
                tr, t, _, flip = self._sample(False)
                c = self.cache[tr.seq]
                f4, f8, f16, f32 = self._feats(c, t, flip)
                score = self._tensor(tr.scores[t], flip)
                target = self._tensor((c["masks"][t] == tr.obj_id).astype(np.float32), flip)
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
        params = [p for n, p in m.named_parameters() if n.split(".")[0] in ("matcher", "gate", "delta", "translator")]
        opt = torch.optim.Adam(params, lr=self.cfg.lr2)
        if opt_state:
            try:
                opt.load_state_dict(opt_state)
            except ValueError:
                pass
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
                f4, f8, _, _ = self._feats(c, t, flip)
                p4, p8, p16, p32 = self._feats(c, prev, flip)
                r4, r8_, _, _ = self._feats(c, tr.ref, flip)
                s_prev = self._tensor(tr.scores[prev], flip)
                y_t = (c["masks"][t] == tr.obj_id)
                y_prev = (c["masks"][prev] == tr.obj_id)
                y16 = self._tensor(resize_map(y_t.astype(np.float32), tr.scores.shape[1:], area=True), flip)
                mask8 = self._tensor(resize_map((c["masks"][tr.ref] == tr.obj_id).astype(np.float32), r8_.shape[-2:], area=True), flip)
                with torch.no_grad():
                    r8_prev = m.deep_levels(p16, p32, s_prev)
                template, _ = m.matcher.template(r8_, mask8)
                prev_embed = m.matcher.embed(p8)
                p_gate, delta, _ = m.gate_forward(f8, s_prev, template, prev_embed)
                logits = m.decode_reuse(f4, f8, r8_prev, s_prev, delta)
                logits = F.interpolate(logits, size=y_t.shape[-2:], mode="bilinear", align_corners=False)
                p_target = max(mgn, mask_iou(y_t, y_prev))
                l_gp = gate_probability_loss(p_gate, torch.tensor([[p_target]]), self.cfg.m2)
                l_delta = F.mse_loss(delta, y16 - s_prev)
                l_bce = F.binary_cross_entropy_with_logits(logits, self._tensor(y_t.astype(np.float32), flip))
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
