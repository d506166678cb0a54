"""Training SlowFast-VOS on CPU (or several processes with ``torchrun``).

A sample is a short segment of a sequence, run **streaming** exactly as at run
time (one encoder pass per frame, per-layer histories), so the per-frame
training cost does not grow with the preset's window:

* warm-up: the ``receptive_field - 1`` frames before the segment run without
  gradients (the first of them, or the sequence start, fills the histories);
* the segment's ``clip_len`` frames run with gradients (through the cached
  histories too); every frame is supervised with BCE on its stride-4 logits
  (upsampled).  Semi-supervised: one object per sample, conditioned on the
  sequence's first frame + mask (the reference) and on the previous mask
  (ground truth before the segment, the model's own detached prediction
  after).  Unsupervised: the union of all objects, conditioned on the model's
  own previous prediction only;
* the gated slow pathway: at each segment frame t > start, the state of a
  computed frame t - n (n random) feeds ``decoder_reuse`` (BCE) and the gate
  (G-FRTM's loss ``max(m2, |P_gate - P_target|)^2``, ``P_target = max(m,
  IoU(y_{t-n}, y_t))``, margin schedule ``m = m1 * epoch / ep_T``).  As at run
  time, the frames in between are reused too (a chain of ``decoder_reuse``,
  each reading the mask of the frame before it), so from the second reused
  frame on the previous mask a reused frame reads is the reuse path's own; with
  ``gate_target="agreement"`` P_target is the IoU of the reused frame's mask with
  the mask the computed path gives on the same frame (what tau 1 against tau
  measures).  ``reuse_only`` trains just the gate and the reuse decoder of an
  ``init`` checkpoint: the computed path, and so every tau-1 result, is unchanged.

Freezing follows the model's ``freeze`` option.  With ``freeze="slowfast"`` the
encoder never changes, so its streaming outputs are computed once per
sequence and cached on disk (fp16), and only the heads train (no random-scale
augmentation in that mode: the cache is at the training resolution).

Defaults follow the SlowFast-VOS project recipe: lr 0.001, random scale 0.25
(0.4 for the 1-1 preset).  Data: DAVIS-layout folders (held-out sequences
excluded) plus synthetic sequences.  Progress bars, periodic checkpoints,
resume from ``<out>/checkpoint.pt``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from edgevos.train.distributed import average_gradients, init_distributed

from edgevos.errors import InputError
from edgevos.files import replacing
from edgevos.metrics import agreement_iou
from edgevos.train.composites import composite_clips
from edgevos.train.config import BaseTrainConfig, parse_heldout
from edgevos.train.family import FamilyTraining
from edgevos.train.gate_loss import gate_probability_loss, margin


@dataclass
class TrainConfig(BaseTrainConfig):
    out: str = "runs/slowfast"
    input_size: Tuple[int, int] = (128, 224)
    preset: str = "3-7"
    mode: str = "semi"
    freeze: str = "backbone"
    fast_gray: bool = False
    steps: int = 2000
    batch: int = 2
    clip_len: int = 4  # supervised frames per sample
    lr: float = 1e-3
    random_scale: Optional[float] = None  # None: 0.4 for 1-1, else 0.25
    max_gap: int = 5  # n in (t - n, t) for the reuse path
    checkpoint_every: int = 100
    target_model: bool = False  # SlowFastConfig.target_model: the decoder reads an online target model's score
    proj_dim: int = 32  # SlowFastConfig.proj_dim: the target model's projection channels
    target_inputs: Tuple[str, ...] = ("f16",)  # SlowFastConfig.target_inputs: what the target model reads
    corrupt_prev: float = 0.5  # probability that a segment starts from a corrupted previous mask
    tm_updates: str = "prediction"  # the target model's training updates: the model's own masks or "ground-truth"
    init: Optional[str] = None  # start from this slowfast checkpoint (layers that changed shape are widened)
    reuse_blend: bool = False  # SlowFastConfig.reuse_blend: the reuse decoder blends the previous mask in
    reuse_only: bool = False  # train only the gate and the reuse decoder of ``init`` (tau 1 stays unchanged)
    gate_target: str = "mask-iou"  # P_target: IoU(y_{t-n}, y_t) (G-FRTM paper) or "agreement" (reused vs computed)

    @property
    def scale(self) -> float:
        if self.random_scale is not None:
            return float(self.random_scale)
        return 0.4 if self.preset == "1-1" else 0.25


# ----------------------------------------------------------------------------- streaming in torch
class TorchStream:
    """The step program's streaming, in torch with autograd: histories are lists of tensors."""

    def __init__(self, model):
        self.m = model
        lay = model._layout_info()
        self.fast_keys, self.lat_keys, self.slow_keys = lay["fast_keys"], lay["lat_keys"], lay["slow_keys"]
        self.read = {k: (n, s) for k, (n, s, _) in model.ring_layout().items()}
        self.hist: Dict[str, list] = {}

    def _window(self, key):
        import torch

        n, s = self.read[key]
        h = self.hist[key]
        return torch.cat([h[len(h) - s * (n - j)] for j in range(n)], 0)

    def _push(self, key, item, first):
        n, s = self.read[key]
        if first:
            self.hist[key] = [item] * (n * s)
        else:
            self.hist[key] = (self.hist[key] + [item])[-n * s:]

    def step(self, image, first: bool, run_slow: bool = True):
        """image (1, 3, H, W) 0..255 -> dict of fast features (+ slow f4..f32 when run_slow)."""
        from edgevos.programs.slowfast import LATERAL_SOURCE

        m = self.m
        slow_stem, fast_in = m.frame_stem(image)
        fast, fnew = m.fast_body(fast_in, None if first else {k: self._window(k) for k in self.fast_keys})
        out = dict(zip(("fast_stem", "fast4", "fast8", "fast16", "fast32"), fast))
        snew = {}
        if run_slow:
            hist = None if first else {k: self._window(k) for k in self.lat_keys + self.slow_keys}
            slow, snew = m.slow_body(slow_stem, fast[:4], hist)
            out.update(zip(("f4", "f8", "f16", "f32"), slow))
        for k in self.fast_keys:
            self._push(k, fnew[k], first)
        for k in self.lat_keys:
            self._push(k, out[LATERAL_SOURCE[k]], first)
        for k in self.slow_keys:
            self._push(k, snew[k] if k in snew else self.hist[k][-1], first)
        return out


def _scaled(frame, mask, s: float, hw):
    """Resize by ``s`` then centre crop / zero pad to ``hw`` (random-scale augmentation)."""
    import cv2

    h, w = hw
    sh, sw = max(8, int(round(h * s))), max(8, int(round(w * s)))
    f = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    m = cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_NEAREST)
    of, om = np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8)
    y0, x0 = (sh - h) // 2, (sw - w) // 2
    ys, xs = slice(max(0, y0), max(0, y0) + min(h, sh)), slice(max(0, x0), max(0, x0) + min(w, sw))
    yd, xd = slice(max(0, -y0), max(0, -y0) + min(h, sh)), slice(max(0, -x0), max(0, -x0) + min(w, sw))
    of[yd, xd], om[yd, xd] = f[ys, xs], m[ys, xs]
    return of, om


def _area(a, hw):
    import cv2

    return cv2.resize(np.ascontiguousarray(a, dtype=np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def corrupt_mask(y: np.ndarray, rng) -> np.ndarray:
    """A previous mask as a tracker gets it wrong: shifted, dilated or eroded, sometimes with a
    spurious blob; (H, W) float 0/1 in and out."""
    import cv2

    h, w = y.shape
    out = y.astype(np.uint8)
    dy, dx = (int(v) for v in rng.integers(-max(1, h // 12), max(1, h // 12) + 1, 2))
    out = np.roll(out, (dy, dx), (0, 1))
    k = int(rng.integers(1, max(2, min(h, w) // 16) + 1))
    kernel = np.ones((k, k), np.uint8)
    out = cv2.dilate(out, kernel) if rng.random() < 0.5 else cv2.erode(out, kernel)
    if rng.random() < 0.3:
        r = int(rng.integers(2, max(3, min(h, w) // 8)))
        cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
        cv2.circle(out, (cx, cy), r, 1, -1)
    return out.astype(np.float32)


#: modules a checkpoint of another mode (semi-supervised / unsupervised) need not fit: they start fresh
HEADS = ("decoder.", "reference.", "reuse_decoder.", "gate.")
#: what ``reuse_only`` trains: the gated slow pathway's decision and its decoder
REUSE_PATH = ("reuse_decoder.", "gate.")


def init_from(model, path) -> List[str]:
    """Load a slowfast checkpoint into ``model``; a decoder input that grew (e.g. the target model's
    score channel) keeps the old channels' weights and starts the new ones at zero.  Head tensors of
    another shape (a checkpoint of the other mode) keep their fresh initialisation; their names are
    returned.  The encoder must fit."""
    import torch

    from edgevos.models.weights import load_checkpoint

    state = load_checkpoint("slowfast", path)["state_dict"]
    own = model.state_dict()
    take, fresh = {}, []
    for k, v in state.items():
        if k not in own:
            continue
        v = v.to(own[k].dtype)
        if v.shape == own[k].shape:
            take[k] = v
        elif v.dim() == 4 and v.shape[0] == own[k].shape[0] and v.shape[2:] == own[k].shape[2:] \
                and v.shape[1] < own[k].shape[1]:
            w = torch.zeros_like(own[k])
            w[:, :v.shape[1]] = v
            take[k] = w
        elif k.startswith(HEADS):
            fresh.append(k)
        else:
            raise InputError(f"--init {path}: '{k}' {tuple(v.shape)} does not fit {tuple(own[k].shape)}; "
                             f"use a checkpoint of the same preset and backbone")
    model.load_state_dict(take, strict=False)
    return fresh


# ----------------------------------------------------------------------------- trainer
class Trainer:
    def __init__(self, cfg: TrainConfig, model=None):
        import torch

        from edgevos.models.slowfast import build_slowfast

        self.cfg = cfg
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.rank, self.world = _init_distributed()
        self.rng = np.random.default_rng(cfg.seed + self.rank)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.model = model or build_slowfast(input_size=cfg.input_size, preset=cfg.preset, backbone=cfg.backbone,
                                             backbone_weights=cfg.backbone_weights, mode=cfg.mode, freeze=cfg.freeze,
                                             fast_gray=cfg.fast_gray, target_model=cfg.target_model,
                                             proj_dim=cfg.proj_dim, target_inputs=tuple(cfg.target_inputs),
                                             reuse_blend=cfg.reuse_blend)
        if cfg.init and model is None:
            init_from(self.model, cfg.init)
        if cfg.reuse_only:
            if not cfg.init and model is None:
                raise InputError("--reuse-only trains the gate and the reuse decoder of a trained network: "
                                 "give it with --init <slowfast checkpoint>")
            for name, p in self.model.named_parameters():  # frozen BatchNorm then keeps its statistics (train())
                if not name.startswith(REUSE_PATH):
                    p.requires_grad_(False)
        self.rf = self.model.receptive_field
        self.log = open(self.out / "train_log.jsonl", "a") if self.rank == 0 else None

    # -- data
    def sequences(self):
        from edgevos.data import DavisDataset, SyntheticConfig, make_sequence

        seqs = []
        for root in self.cfg.davis:
            ds = DavisDataset(root)
            seqs += [ds[n] for n in ds.sequences if n not in self.cfg.heldout]
        h, w = self.cfg.input_size
        seqs += composite_clips(seqs, self.cfg.composites, self.cfg.seed + 101, (h, w), self.cfg.composite_objects)
        for i in range(self.cfg.synthetic):
            seqs.append(make_sequence(SyntheticConfig(height=h, width=w, num_frames=self.cfg.synthetic_frames,
                                                      num_objects=1 + i % 3, seed=1000 + i, speed=2.0 + (i % 5),
                                                      name=f"synthetic-{i:03d}")))
        return seqs

    def prepare(self):
        """Frames and masks at the training resolution, in memory (uint8); encoder cache when frozen."""
        import cv2
        from tqdm import tqdm

        h, w = self.cfg.input_size
        self.data = []
        for seq in tqdm(self.sequences(), desc="load", unit="seq", disable=self.rank != 0):
            n = len(seq) if not self.cfg.max_frames_per_sequence else min(len(seq), self.cfg.max_frames_per_sequence)
            frames = np.stack([cv2.resize(seq.frame(i), (w, h), interpolation=cv2.INTER_AREA) for i in range(n)])
            masks = np.stack([cv2.resize(seq.mask(i), (w, h), interpolation=cv2.INTER_NEAREST) for i in range(n)])
            masks[masks == 255] = 0
            ids = [int(i) for i in np.unique(masks[0]) if i != 0]
            if n >= 2 and ids:
                self.data.append({"name": seq.name, "frames": frames, "masks": masks, "ids": ids})
        if not self.data:
            from edgevos.errors import DataError

            raise DataError("no usable training sequences (each needs >= 2 frames and an object in its first mask)")
        self.cache = None
        if self.cfg.freeze == "slowfast":
            self.cache = [self._encode_cached(d) for d in tqdm(self.data, desc="encoder cache", unit="seq",
                                                                disable=self.rank != 0)]

    def _encode_cached(self, d):
        import torch

        path = self.out / "cache" / f"{self.cfg.preset}-{self.cfg.backbone}-{d['name']}.npz"
        if path.is_file():
            return dict(np.load(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        stream, feats = TorchStream(self.model), {}
        with torch.no_grad():
            for t, f in enumerate(d["frames"]):
                out = stream.step(self._image(f), first=t == 0)
                for k in ("f4", "f8", "f16", "f32", "fast4", "fast8", "fast32"):
                    feats.setdefault(k, []).append(out[k][0].numpy().astype(np.float16))
        arrays = {k: np.stack(v) for k, v in feats.items()}
        with replacing(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return arrays

    @staticmethod
    def _image(frame):
        import torch

        return torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1))[None].astype(np.float32))

    @staticmethod
    def _map(a, size=None):
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
        return x if size is None else F.adaptive_avg_pool2d(x, size)

    # -- one sample
    def _sample(self):
        d_i = int(self.rng.integers(len(self.data)))
        d = self.data[d_i]
        T = len(d["frames"])
        L = min(self.cfg.clip_len, T - 1)
        t0 = int(self.rng.integers(1, T - L + 1))
        obj = int(self.rng.choice(d["ids"]))
        s = 1.0 + float(self.rng.uniform(-self.cfg.scale, self.cfg.scale)) if self.cache is None else 1.0
        flip = bool(self.rng.random() < 0.5)
        return d_i, t0, L, obj, s, flip

    def sample_loss(self, epoch: float):
        import torch
        import torch.nn.functional as F

        m, cfg = self.model, self.cfg
        d_i, t0, L, obj, s, flip = self._sample()
        d = self.data[d_i]
        teacher = cfg.tm_updates == "ground-truth"
        h, w = cfg.input_size
        hw4 = (h // 4, w // 4)

        def frame_mask(t):
            f, mk = d["frames"][t], d["masks"][t]
            if s != 1.0:
                f, mk = _scaled(f, mk, s, cfg.input_size)
            if flip:
                f, mk = f[:, ::-1], mk[:, ::-1]
            y = (mk == obj) if m.semi else (mk > 0)
            return f, y.astype(np.float32)

        warm = []
        if self.cache is not None:
            c = self.cache[d_i]
            get = lambda t: {k: torch.from_numpy(np.ascontiguousarray(c[k][t][..., ::-1] if flip else c[k][t]).astype(np.float32))[None]
                             for k in c}
        else:
            stream = TorchStream(m)
            w0 = max(0, t0 - (self.rf - 1))
            warm = []
            with torch.no_grad():
                for t in range(w0, t0):
                    f, y = frame_mask(t)
                    warm.append((self._target_x(stream.step(self._image(f), first=t == w0)), y))
            get = None
        template, tm = None, None
        if m.semi:
            f_ref, y_ref = frame_mask(0)
            with torch.no_grad():
                ref = get(0) if get else TorchStream(m).step(self._image(f_ref), first=True)
            template = m.reference.template(ref["f16"], self._map(y_ref, ref["f16"].shape[-2:]))
            if m.config.target_model:
                try:
                    tm = self._target_model(self._target_x(ref), y_ref)
                except InputError:  # the scaled reference object vanished at stride 16: draw another sample
                    return self.sample_loss(epoch)
                if teacher:  # the memory a run would hold at t0, with ground-truth masks
                    for f16_w, y_w in warm:
                        tm.update(f16_w, _area(y_w, f16_w.shape[-2:]))
        if m.semi:
            y_prev = frame_mask(t0 - 1)[1]
            if self.rng.random() < cfg.corrupt_prev:
                y_prev = corrupt_mask(y_prev, self.rng)
            prev = self._map(y_prev, hw4)
        else:
            prev = torch.zeros(1, 1, *hw4)
        states, ys = [], []
        loss = torch.zeros(())
        logs = np.zeros(3)
        mgn = margin(epoch, cfg.m1, cfg.ep_T)
        for t in range(t0, t0 + L):
            f, y = frame_mask(t)
            feats = get(t) if get else stream.step(self._image(f), first=(t == t0 and t0 == 0))
            f16 = self._target_x(feats) if tm is not None else None
            score = torch.from_numpy(tm.classify(f16)[None, None].astype(np.float32)) if tm is not None else None
            with torch.set_grad_enabled(not cfg.reuse_only):  # reuse_only: the computed path is frozen
                logits, r8 = m.decode(feats["f4"], feats["f8"], feats["f16"], feats["f32"], feats["fast32"], template,
                                      prev, score)
            target = self._map(y)
            bce = F.binary_cross_entropy_with_logits(F.interpolate(logits, size=(h, w), mode="bilinear",
                                                                   align_corners=False), target)
            if not cfg.reuse_only:
                loss = loss + bce
            logs[0] += float(bce.detach())
            if states:
                n = int(self.rng.integers(1, min(cfg.max_gap, len(states)) + 1))
                p_f4, p_f8, p_r8, p_y, p_prob = states[-n]
                # as at run time: the frames between t - n and t were reused too, each reading the one before
                prev_r = p_prob
                for k in range(n - 1, 0, -1):
                    prev_r = torch.sigmoid(m.decode_reuse(states[-k][0], states[-k][1], p_r8.detach(), prev_r))
                lr_ = m.decode_reuse(feats["fast4"], feats["fast8"], p_r8.detach(), prev_r)
                bce_r = F.binary_cross_entropy_with_logits(F.interpolate(lr_, size=(h, w), mode="bilinear",
                                                                         align_corners=False), target)
                p_gate = m.gate(feats["fast8"], p_f8.detach(), prev_r)
                if cfg.gate_target == "agreement":  # the reused mask against the computed one, same frame
                    p_target = max(mgn, agreement_iou(lr_.detach()[0, 0].numpy() > 0, logits.detach()[0, 0].numpy() > 0))
                else:
                    p_target = max(mgn, agreement_iou(y > 0.5, p_y > 0.5))
                gp = gate_probability_loss(p_gate, torch.tensor([[p_target]]), cfg.m2)
                loss = loss + bce_r + gp
                logs[1] += float(bce_r.detach())
                logs[2] += float(gp.detach())
            prev = torch.sigmoid(logits).detach()
            states.append((feats["fast4"], feats["fast8"], r8, y, prev))
            if tm is not None:  # the run time's online update: the model's own prediction, or the truth
                tm.update(f16, _area(y if teacher else prev[0, 0].numpy(), f16.shape[-2:]))
        return loss / L, logs / L

    def _target_x(self, feats) -> np.ndarray:
        """(C, H/16, W/16): the slow-pathway outputs the target model reads (``target_inputs``),
        stacked at stride 16 as the program stacks them."""
        from edgevos.programs.base import stack_at

        names = self.model.config.target_inputs
        return stack_at({k: feats[k].detach().numpy() for k in names}, names, tuple(feats["f16"].shape[-2:]))

    def _target_model(self, f16, y_ref):
        """The run time's target model, fitted on the reference frame (no augmentations, as the program)."""
        from edgevos.target_model import TargetModel, TargetModelConfig

        cfg = TargetModelConfig(proj_dim=self.model.config.proj_dim, num_augmentations=0, refit_solver="matrix_free")
        tm = TargetModel(cfg, in_channels=f16.shape[0], seed=int(self.rng.integers(1 << 30)))
        tm.initialize(f16, _area(y_ref, f16.shape[-2:]))
        return tm

    # -- checkpoints
    def save(self, step, opt):
        import torch

        if self.rank != 0:
            return
        with replacing(self.out / "checkpoint.pt") as tmp:
            torch.save({"step": step, "model": self.model.state_dict(), "optimizer": opt.state_dict(),
                        "config": _jsonable(asdict(self.cfg))}, tmp)

    def resume(self):
        import torch

        p = self.out / "checkpoint.pt"
        if not p.is_file():
            return None
        ck = torch.load(p, map_location="cpu", weights_only=True)
        self.model.load_state_dict(ck["model"])
        return ck

    def run(self) -> Path:
        import torch
        from tqdm import tqdm

        from edgevos.models.weights import save_checkpoint

        ck = self.resume()
        self.prepare()
        m, cfg = self.model, self.cfg
        params = [p for p in m.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        start = 0
        if ck is not None:
            start = int(ck["step"])
            try:
                opt.load_state_dict(ck["optimizer"])
            except ValueError:
                pass
        m.train()
        bar = tqdm(range(start, cfg.steps), desc=f"slowfast {cfg.preset}", initial=start, total=cfg.steps,
                   disable=self.rank != 0)
        for step in bar:
            epoch = step * cfg.batch * self.world / cfg.epoch_samples
            opt.zero_grad()
            logs = np.zeros(3)
            for _ in range(cfg.batch):
                loss, lg = self.sample_loss(epoch)
                if loss.requires_grad:  # reuse_only: a one-frame segment has nothing to train
                    (loss / cfg.batch).backward()
                logs += lg / cfg.batch
            _average_gradients(params, self.world)
            opt.step()
            bar.set_postfix(bce=f"{logs[0]:.3f}", reuse=f"{logs[1]:.3f}", gate=f"{logs[2]:.3f}")
            if self.log and step % 10 == 0:
                self.log.write(json.dumps({"step": step, "bce": logs[0], "bce_reuse": logs[1], "gate": logs[2],
                                           "time": time.time()}) + "\n")
                self.log.flush()
            if (step + 1) % cfg.checkpoint_every == 0:
                self.save(step + 1, opt)
        self.save(cfg.steps, opt)
        m.eval()
        meta = {"train_config": _jsonable(asdict(cfg)), "sequences": [d["name"] for d in self.data]}
        return save_checkpoint(self.out / f"slowfast_{cfg.preset}_final.pt", "slowfast", m, meta=meta, half=True)


def _jsonable(d):
    return json.loads(json.dumps(d, default=list))


_init_distributed = init_distributed
_average_gradients = average_gradients


# ----------------------------------------------------------------------------- edgevos train slowfast
def add_arguments(g) -> None:
    """``edgevos train slowfast``'s own options (the shared ones are :mod:`edgevos.train.cli`'s)."""
    g.add_argument("--preset", default="3-7", help="pathway preset: 1-1, 3-3, 7-7, 1-7, 3-7 (slow - fast frames)")
    g.add_argument("--mode", default="semi", choices=["semi", "unsupervised"])
    g.add_argument("--freeze", default="backbone", choices=["none", "backbone", "slowfast"],
                   help="backbone: slow pathway's ImageNet 2D layers; slowfast: the whole encoder (features cached)")
    g.add_argument("--steps", type=int, default=2000)
    g.add_argument("--clip-len", type=int, default=4, help="supervised frames per streamed training segment")
    g.add_argument("--lr", type=float, default=1e-3, help="learning rate (project recipe: 0.001)")
    g.add_argument("--random-scale", type=float, default=None, help="random scale augmentation (default 0.25; 0.4 for 1-1)")
    g.add_argument("--fast-gray", action="store_true", help="grayscale input to the fast pathway")
    g.add_argument("--target-model", action="store_true",
                   help="semi-supervised: the decoder also reads an online target model's score (FRTM's)")
    g.add_argument("--corrupt-prev", type=float, default=0.5,
                   help="probability that a training segment starts from a corrupted previous mask")
    g.add_argument("--reuse-blend", action="store_true",
                   help="the reuse decoder also predicts a per-pixel weight that blends the previous frame's mask "
                        "in (new layers start near the plain decoder)")
    g.add_argument("--reuse-only", action="store_true",
                   help="train only the gate and the reuse decoder of the --init checkpoint (tau 1 unchanged)")
    g.add_argument("--tm-updates", default="prediction", choices=["prediction", "ground-truth"],
                   help="--target-model: update the target model in training with the model's own masks (as at "
                        "run time) or with the ground truth (teacher-forced; also on the warm-up frames)")


def config_from_args(args) -> TrainConfig:
    """The slowfast TrainConfig for parsed ``edgevos train slowfast`` arguments."""
    from edgevos.programs.slowfast import check_preset

    check_preset(args.preset)  # a wrong name fails before torch loads
    heldout = parse_heldout(args.heldout)
    cfg = TrainConfig(out=args.out or f"runs/slowfast-{args.preset}", davis=tuple(args.davis), heldout=heldout,
                      synthetic=args.synthetic, input_size=args.input_size or (128, 224), preset=args.preset,
                      backbone=args.backbone, backbone_weights=args.backbone_weights, mode=args.mode,
                      freeze=args.freeze, fast_gray=args.fast_gray, steps=args.steps, batch=args.batch or 2,
                      clip_len=args.clip_len, lr=args.lr, random_scale=args.random_scale, m1=args.m1, m2=args.m2,
                      ep_T=args.ep_T, epoch_samples=args.epoch_samples, threads=args.threads, seed=args.seed,
                      max_frames_per_sequence=args.max_frames, target_model=args.target_model,
                      corrupt_prev=args.corrupt_prev, init=args.init, composites=args.composites,
                      composite_objects=args.composite_objects,
                      tm_updates=args.tm_updates, proj_dim=args.proj_dim,
                      target_inputs=tuple(args.target_inputs.split("+")), max_gap=TrainConfig.max_gap if args.max_gap is None else args.max_gap,
                      gate_target=args.gate_target or TrainConfig.gate_target, reuse_only=args.reuse_only,
                      reuse_blend=args.reuse_blend)
    if cfg.gate_target not in ("mask-iou", "agreement"):
        raise InputError(f"--gate-target {cfg.gate_target}: slowfast trains mask-iou or agreement")
    return cfg


def train_from_args(cfg: TrainConfig, args) -> Path:
    """Train ``cfg``; the final weights' path."""
    return Trainer(cfg).run()


#: SlowFast-VOS's entry in the family registry (``get_family("slowfast").training()``)
TRAINING = FamilyTraining(add_arguments, config_from_args, train_from_args,
                          "defaults: --input-size 128x224, --batch 2, --out runs/slowfast-PRESET; --init takes "
                          "every layer, widened where the new model reads more inputs")
