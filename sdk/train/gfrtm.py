"""Training G-FRTM-fast on CPU (or GPUs with torchrun).

FRTM practice: the ImageNet backbone is frozen, so its features are computed
once and cached; the online target model is fitted per sequence (numpy, as at
run time) and its score maps cached too.  Then

* phase 1 trains the segmentation network (levels 32..4) on
  (features, target-model score) -> mask with BCE;
* phase 2 freezes it and trains the template matcher, reuse gate, delta
  generator and refine-translator with the paper's loss
  ``max(m2, |P_gate - P_target|)^2 + L2(delta, y'_t - S_{t-n}) + BCE``, with
  ``P_target = max(m, IoU(y_{t-n}, y_t))`` and ``m = min(m1, m1 * epoch / ep_T)``; a ``warp`` head's
  moved logits get a BCE of their own, so its motion field learns where the blend weight hides it.

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

Here: the TrainConfig, the trainer and ``edgevos train gfrtm``'s entry (:data:`TRAINING`);
the feature cache is :mod:`edgevos.train.gfrtm_cache`, the target-model tracks
:mod:`edgevos.train.gfrtm_tracks`, the gate's loss :mod:`edgevos.train.gate_loss` (their
names stay importable from here).
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
from edgevos.models.gfrtm_config import REUSE_HEADS
from edgevos.train.composites import composite_clips
from edgevos.train.config import BaseTrainConfig, parse_heldout
from edgevos.train.distributed import average_gradients, init_distributed
from edgevos.train.family import FamilyTraining
from edgevos.train.gate_loss import GATE_LOSSES, gate_probability_loss, margin
from edgevos.train.gfrtm_cache import FEATS, _oriented, build_cache, load_cache
from edgevos.train.gfrtm_tracks import (
    Track,
    load_tracks,
    perturb_score,
    runtime_tracks,
    save_tracks,
    score_tracks,
)
# the feature cache's and the tracks' other names, importable from here as before
from edgevos.train.gfrtm_cache import (  # noqa: F401
    _cache_half,
    _encode,
    _orientations,
    _resize_frame,
    _resize_mask,
)
from edgevos.train.gfrtm_tracks import TargetFeatures, _label16, _new_target_model, _objects  # noqa: F401

# modules trained in phase 2 (the reuse path)
PHASE2_MODULES = ("matcher.", "gate.", "delta.", "translator.", "reuse_level.", "reuse_predict.", "reuse_refine.",
                  "embed_full.", "reuse_warp.")


@dataclass
class TrainConfig(BaseTrainConfig):
    out: str = "runs/gfrtm"
    reuse_scale: int = 1  # GfrtmConfig.reuse_scale: 2 = half-resolution gate and reuse path
    refiner_stride: int = 8  # GfrtmConfig.refiner_stride: 16 translates the refiner state at stride 16
    reuse_head: str = "stride8"  # GfrtmConfig.reuse_head: stride8, residual, blend or warp (read the last computed logits)
    init: Optional[str] = None  # start from this checkpoint's weights (e.g. phase 1 of an earlier run)
    proj_dim: int = 32  # GfrtmConfig.proj_dim: the online target model's projection
    target_inputs: Tuple[str, ...] = ("f16",)  # GfrtmConfig.target_inputs: what the target model reads
    init_reuse_path: bool = False  # also take the init checkpoint's reuse path (matcher, gate, delta, translator, head)
    reuse_path_from: Optional[str] = None  # take the reuse path from this checkpoint instead (phase 2 continued on a new network)
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
    reuse_refine: int = 0  # GfrtmConfig.reuse_refine: channels of the image-guided refinement of reused frames
    computed_embed: str = "h8"  # GfrtmConfig.computed_embed: where a computed frame's gate embedding comes from
    warp_radius: int = 3  # GfrtmConfig.warp_radius: reach of the warp head's embedding correlation
    gate_loss: str = "squared"  # phase 2: the paper's squared error on P_gate, or "bce" (see gate_loss)
    gate_drop_scale: float = 4.0  # gate_target "accuracy": P_target = 1 - scale * (J computed - J reused)
    gate_target: str = "mask-iou"  # phase 2's P_target: IoU(y_{t-n}, y_t) (paper) or "agreement" (reused vs computed frame)


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
                                 reuse_head=cfg.reuse_head, reuse_refine=cfg.reuse_refine, proj_dim=cfg.proj_dim,
                                 computed_embed=cfg.computed_embed, gate_max_gap=cfg.max_gap,
                                 warp_radius=cfg.warp_radius,
                                 target_inputs=tuple(cfg.target_inputs))
        self._init_reuse_head()
        if cfg.init:
            self._init_from(cfg.init)
        if cfg.reuse_path_from:
            self._init_from(cfg.reuse_path_from, PHASE2_MODULES, "--reuse-path-from")
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
        comps = self.composites(seqs)
        seqs += comps
        real += [True] * len(comps)
        h, w = self.cfg.input_size
        for i in range(self.cfg.synthetic):
            seqs.append(make_sequence(SyntheticConfig(height=h, width=w, num_frames=self.cfg.synthetic_frames,
                                                      num_objects=1 + i % 3, seed=1000 + i,
                                                      speed=2.0 + (i % 5), name=f"synthetic-{i:03d}")))
            real.append(False)
        return seqs, real

    def composites(self, train):
        """``cfg.composites`` clips made from the training sequences (:mod:`edgevos.train.composites`)."""
        cfg = self.cfg
        return composite_clips(train, cfg.composites, cfg.seed + 101, cfg.input_size, cfg.composite_objects)

    def prepare(self):
        seqs, real = self.sequences()
        entries = build_cache(self.model, seqs, self.cfg, self.out / "cache", real)
        self.cache = load_cache(entries)
        self.names = [c["name"] for c in self.cache]
        tracks_path = self.out / "cache" / f"tracks{self._tm_tag}.npz"
        self.teacher = load_tracks(tracks_path, self.names) if tracks_path.is_file() else None
        if self.teacher is None:
            self.teacher = score_tracks(self.model, self.cache, self.cfg)
            if self.rank == 0:
                save_tracks(tracks_path, self.teacher, self.names)
        self.tracks = self.teacher
        self.runtime: List[Track] = []

    def rescore(self, tag: str):
        """Re-make the run-time tracks with the current decoder (cached per tag, so a resume reuses them)."""
        path = self.out / "cache" / f"tracks_runtime_{tag}{self._tm_tag}.npz"
        self.runtime = load_tracks(path, self.names) if path.is_file() else None
        if self.runtime is None:
            self.runtime = runtime_tracks(self.model, self.cache, self.cfg, np.random.default_rng(self.cfg.seed + 17))
            if self.rank == 0:
                save_tracks(path, self.runtime, self.names)
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
            if head in ("blend", "warp"):
                if stride8 is not None:
                    conv.weight[:1].copy_(stride8[0])
                    conv.bias[:1].copy_(stride8[1])
                conv.bias[1] = -2.0  # w = 0.12: mostly the stride-8 mask at the start

    def _init_from(self, path, prefixes=None, option="--init"):
        """Take the segmentation network (phase 1) from an edgevos gfrtm checkpoint or a
        training checkpoint; the reuse-path modules (phase 2) keep their fresh initialisation unless
        ``init_reuse_path`` (a stride-8 head then seeds a ``blend`` head, see ``_init_reuse_head``).
        ``prefixes`` names other modules to take (``--reuse-path-from``: the reuse path alone)."""
        import torch

        ck = torch.load(path, map_location="cpu", weights_only=True)
        state = ck.get("state_dict", ck.get("model"))
        if not isinstance(state, dict):
            raise InputError(f"{option} {path}: not an edgevos gfrtm checkpoint or training checkpoint")
        if prefixes is None:
            prefixes = ("level32.", "level16.", "level8.", "level4.", "predict.")
            if self.cfg.init_reuse_path:
                prefixes += PHASE2_MODULES
        own = self.model.state_dict()
        take = {k: v.float() for k, v in state.items() if k.startswith(prefixes)}
        src_head = (ck.get("config") or {}).get("reuse_head", "stride8")
        same_head = {src_head, self.model.config.reuse_head} <= {"blend", "warp"} or src_head == self.model.config.reuse_head
        if self.model.reads_prev_logits and "reuse_predict.weight" in take and not same_head:
            # another kind of head: a stride-8 one seeds a blend head's logit channel, a residual one starts
            # at zero; a head of the same kind is taken as it is, and a blend head seeds a warp head (whose
            # motion field starts at zero: the blend head's function)
            stride8 = (take.pop("reuse_predict.weight"), take.pop("reuse_predict.bias"))
            if stride8[0].shape[0] == 1:
                self._init_reuse_head(stride8)
        bad = [k for k, v in take.items() if k not in own or own[k].shape != v.shape]
        if bad and all(k.startswith("reuse_warp.") for k in bad):
            raise InputError(f"{option} {path}: its reuse path has a warp head's motion field, which a "
                             f"'{self.model.config.reuse_head}' head cannot take: use --reuse-head warp")
        if bad or not take:
            raise InputError(f"{option} {path}: weights do not fit this model "
                             f"({bad[:3] or 'none found'}); use a checkpoint of the same backbone and widths")
        self.model.load_state_dict(take, strict=False)
        if option == "--init" and not self.cfg.backbone_weights:
            # no --backbone-weights: the frozen backbone is the one --init was trained and saved with
            # (a continued run would otherwise save its new decoder on a freshly initialised backbone)
            bb = {k: v.to(own[k].dtype) for k, v in state.items()
                  if k.startswith("backbone.") and k in own and own[k].shape == v.shape}
            if bb:
                self.model.load_state_dict(bb, strict=False)
        if hasattr(self.model, "embed_full") and not any(k.startswith("embed_full.") for k in take):
            # a computed frame's f8 embedding starts as the gate's own embedding convs
            self.model.embed_full.load_state_dict(self.model.matcher.embed.state_dict())

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
            for k, frac in enumerate(self.cfg.rescore_at if self.cfg.runtime_share > 0 else ()):
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
        if not self.runtime and self.cfg.rescore_at and self.cfg.runtime_share > 0:
            self.rescore(f"{len(self.cfg.rescore_at) - 1}")
        steps = self.cfg.phase2_steps
        bar = tqdm(range(start_step, steps), desc="phase 2 (reuse gate)", initial=start_step, total=steps)
        for step in bar:
            epoch = step * self.cfg.batch * self.world / self.cfg.epoch_samples
            mgn = margin(epoch, self.cfg.m1, self.cfg.ep_T)
            opt.zero_grad()
            logs = np.zeros(5)
            for _ in range(self.cfg.batch):
                parts = {}
                tr, t, prev, flip = self._sample(True)
                c = self.cache[tr.seq]
                masks = _oriented(c, "masks", flip)
                f4, f8, f16, f32 = self._feats(c, t, flip)
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
                    # the last computed frame's embedding, made as the program makes it
                    prev_embed = m.embed_computed(p8) if m.config.computed_embed == "f8" else m.matcher.embed(g_prev)
                    p_gate, delta, embed = m.gate_forward(g_t, s_prev, template, prev_embed)
                    image_half = None
                    if m.config.reuse_refine:  # the half-resolution frame, RGB 0..255, as the program feeds it
                        image_half = torch.from_numpy(np.ascontiguousarray(
                            _oriented(c, "imgh", flip)[t].transpose(2, 0, 1)).astype(np.float32))[None]
                    logits = m.decode_reuse_half(h4, r8_prev, s_prev, delta, prev_logits, image_half, parts,
                                                 embed, prev_embed)
                else:
                    mask8 = self._tensor(resize_map((masks[tr.ref] == tr.obj_id).astype(np.float32), r8_.shape[-2:], area=True))
                    template, _ = m.matcher.template(r8_, mask8)
                    prev_embed = m.matcher.embed(p8)
                    p_gate, delta, _ = m.gate_forward(f8, s_prev, template, prev_embed)
                    logits = m.decode_reuse(f4, f8, r8_prev, s_prev, delta)
                logits = F.interpolate(logits, size=y_t.shape[-2:], mode="bilinear", align_corners=False)
                p_target = max(mgn, self._gate_target(m, logits, y_t, y_prev, (f4, f8, f16, f32), tr, t))
                l_gp = gate_probability_loss(p_gate, torch.tensor([[p_target]]), self.cfg.m2, self.cfg.gate_loss)
                l_delta = F.mse_loss(delta, y16 - s_prev)
                l_bce = F.binary_cross_entropy_with_logits(logits, self._tensor(y_t.astype(np.float32)))
                loss = l_gp + l_delta + l_bce
                l_warp = torch.zeros(())
                if "warped" in parts:  # the warp head's motion field also learns from its moved logits alone
                    warped = F.interpolate(parts["warped"], size=y_t.shape[-2:], mode="bilinear", align_corners=False)
                    l_warp = F.binary_cross_entropy_with_logits(warped, self._tensor(y_t.astype(np.float32)))
                    loss = loss + l_warp
                (loss / self.cfg.batch).backward()
                logs += [float(loss.detach()) / self.cfg.batch, float(l_gp.detach()), float(l_delta.detach()),
                         float(l_bce.detach()), float(l_warp.detach())]
            average_gradients(params, self.world)
            opt.step()
            bar.set_postfix(gp=f"{logs[1] / self.cfg.batch:.3f}", bce=f"{logs[3] / self.cfg.batch:.3f}", m=f"{mgn:.2f}")
            if step % 25 == 0:
                self._write({"phase": 2, "step": step, "loss": logs[0], "gp": logs[1] / self.cfg.batch,
                             "delta": logs[2] / self.cfg.batch, "bce": logs[3] / self.cfg.batch, "margin": mgn,
                             **({"warp": logs[4] / self.cfg.batch} if m.config.reuse_head == "warp" else {}),
                             "time": time.time()})
            if (step + 1) % self.cfg.checkpoint_every == 0:
                self.save(2, step + 1, opt)
        self.save(3, 0, opt)

    def _gate_target(self, m, reuse_logits, y_t, y_prev, feats_t, tr: Track, t: int) -> float:
        """Phase 2's P_target before the margin. ``mask-iou`` (the paper): IoU(y_{t-n}, y_t), how much
        the object moved. ``agreement``: IoU of the reused frame's mask with the mask a computed frame
        would give, so the gate learns when reusing costs nothing (what tau 1 vs tau measures).
        ``accuracy``: ``1 - drop_scale * max(0, IoU(computed, y_t) - IoU(reused, y_t))``, what reusing
        costs against the truth: a reused mask that differs from the computed one but is as good
        counts as free, one that loses a few points where the computed mask was right does not."""
        if self.cfg.gate_target == "mask-iou":
            return agreement_iou(y_t, y_prev)
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            full = m.decode_full(*feats_t, self._tensor(tr.scores[t]))[0]
            full = F.interpolate(full, size=y_t.shape[-2:], mode="bilinear", align_corners=False)
        reused = (reuse_logits.detach()[0, 0].numpy() > 0).astype(np.uint8)
        computed = (full[0, 0].numpy() > 0).astype(np.uint8)
        if self.cfg.gate_target == "accuracy":
            y = np.asarray(y_t).astype(np.uint8)
            drop = max(0.0, agreement_iou(computed, y) - agreement_iou(reused, y))
            return max(0.0, 1.0 - self.cfg.gate_drop_scale * drop)
        return agreement_iou(reused, computed)

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


# ----------------------------------------------------------------------------- edgevos train gfrtm
def add_arguments(g) -> None:
    """``edgevos train gfrtm``'s own options (the shared ones are :mod:`edgevos.train.cli`'s)."""
    g.add_argument("--refiner-stride", type=int, default=8, choices=[8, 16],
                   help="gfrtm: stride at which the refine-translator works (16: as Reuse_VOS, 4x cheaper)")
    g.add_argument("--reuse-scale", type=int, default=1, choices=[1, 2],
                   help="gfrtm: 2 runs the gate and the reuse path on a half-resolution encoding (needs --refiner-stride 16)")
    g.add_argument("--reuse-head", default="stride8", choices=list(REUSE_HEADS),
                   help="gfrtm (--reuse-scale 2): the reused frame's head: stride-8 logits, a correction of the "
                        "last computed frame's logits, a learned blend of both, or that blend with the computed "
                        "logits moved by a learned motion field (warp)")
    g.add_argument("--proj-dim", type=int, default=32,
                   help="channels of the online target model's projection (FRTM: 96)")
    g.add_argument("--target-inputs", default="f16", choices=["f16", "f16+f8", "f16+f32", "f16+f8+f32"],
                   help="encoder outputs the target model reads at stride 16 (f32 upsampled; slowfast: the "
                        "slow pathway's)")
    g.add_argument("--init-reuse-path", action="store_true",
                   help="gfrtm: also take --init's reuse path (matcher, gate, delta, translator) to continue phase 2")
    g.add_argument("--reuse-path-from", default=None, metavar="CKPT",
                   help="gfrtm: take the reuse path (matcher, gate, delta, translator, head) from this checkpoint "
                        "and the segmentation network from --init, to continue phase 2 on a new network")
    g.add_argument("--phase1-steps", type=int, default=3000)
    g.add_argument("--phase2-steps", type=int, default=2000)
    g.add_argument("--lr1", type=float, default=1e-3, help="phase 1 learning rate")
    g.add_argument("--lr2", type=float, default=5e-4, help="phase 2 learning rate (paper: 5e-4)")
    g.add_argument("--phases", default="1,2", help="phases to run")
    g.add_argument("--real-share", type=float, default=0.8, help="gfrtm: share of samples from real (DAVIS) sequences")
    g.add_argument("--runtime-share", type=float, default=0.75,
                   help="gfrtm: share of samples on run-time target-model tracks once they exist (0: "
                        "teacher-forced tracks only, none made)")
    g.add_argument("--score-noise", type=float, default=0.5,
                   help="gfrtm phase 1: probability of perturbing a sample's target-model score map")
    g.add_argument("--reuse-refine", type=int, default=0, metavar="CHANNELS",
                   help="gfrtm (--reuse-head residual/blend): an image-guided refinement of a reused frame's "
                        "logits with this many channels (0: none); it starts at a zero correction")
    g.add_argument("--gate-loss", default="squared", choices=list(GATE_LOSSES),
                   help="gfrtm phase 2: the gate's loss, the paper's squared error or the binary cross-entropy "
                        "(sharper near P_target 1, where reuse decisions fall)")
    g.add_argument("--warp-radius", type=int, default=3,
                   help="gfrtm --reuse-head warp: reach of the motion field's embedding correlation in stride-16 "
                        "cells each way ((2r+1)^2 displacements; default 3)")
    g.add_argument("--computed-embed", default="h8", choices=["h8", "f8"],
                   help="gfrtm (--reuse-scale 2): a computed frame's gate embedding from the gate (h8: it also "
                        "runs encoder_reuse + gate) or from its own f8 (f8: a frame that must compute skips them)")
    g.add_argument("--gate-drop-scale", type=float, default=4.0,
                   help="gfrtm --gate-target accuracy: P_target = 1 - scale x (J computed - J reused)")


def config_from_args(args) -> TrainConfig:
    """The gfrtm TrainConfig for parsed ``edgevos train gfrtm`` arguments."""
    heldout = parse_heldout(args.heldout)
    args.out = args.out or "runs/gfrtm"
    args.input_size = args.input_size or (256, 448)
    args.batch = args.batch or 4
    cfg = TrainConfig(out=args.out, davis=tuple(args.davis), heldout=heldout, synthetic=args.synthetic,
                      input_size=args.input_size, backbone=args.backbone, backbone_weights=args.backbone_weights,
                      phase1_steps=args.phase1_steps, phase2_steps=args.phase2_steps, batch=args.batch,
                      lr1=args.lr1, lr2=args.lr2, m1=args.m1, m2=args.m2, ep_T=args.ep_T,
                      epoch_samples=args.epoch_samples, threads=args.threads, seed=args.seed,
                      max_frames_per_sequence=args.max_frames, refiner_stride=args.refiner_stride, init=args.init,
                      max_gap=TrainConfig.max_gap if args.max_gap is None else args.max_gap, real_share=args.real_share, reuse_scale=args.reuse_scale,
                      reuse_head=args.reuse_head, init_reuse_path=args.init_reuse_path, proj_dim=args.proj_dim,
                      target_inputs=tuple(args.target_inputs.split("+")), runtime_share=args.runtime_share,
                      score_noise=args.score_noise, composites=args.composites,
                      composite_objects=args.composite_objects,
                      reuse_path_from=args.reuse_path_from, gate_target=args.gate_target or TrainConfig.gate_target,
                      gate_loss=args.gate_loss, gate_drop_scale=args.gate_drop_scale,
                      reuse_refine=args.reuse_refine, computed_embed=args.computed_embed,
                      warp_radius=args.warp_radius)
    return cfg


def train_from_args(cfg: TrainConfig, args) -> Path:
    """Train ``cfg`` through the phases ``--phases`` names; the final weights' path."""
    return Trainer(cfg).run(phases=tuple(int(p) for p in args.phases.split(",")))


#: G-FRTM-fast's entry in the family registry (``get_family("gfrtm").training()``)
TRAINING = FamilyTraining(add_arguments, config_from_args, train_from_args,
                          "defaults: --input-size 256x448, --batch 4, --out runs/gfrtm; --init takes the "
                          "checkpoint's segmentation network (e.g. with --phases 2)")
