"""SlowFast-VOS: a two-pathway (Slow + Fast) encoder with a mask decoder, streamed frame by frame.

Sources: SlowFast (Feichtenhofer et al., ICCV 2019) for the encoder and the
SlowFast-VOS project (pathway presets, modes, freezing, training recipe).

Encoder
-------
* **Slow pathway**: the 2D backbone (``mobilenetv2`` by default, whose ImageNet
  weights ship in ``../shared/weights``, or ``resnet18``) at full channels.
  Temporal kernel 1 in the stem, res2 and res3; temporal kernel 3 in the
  res4/res5 blocks (in the first conv of a ResNet block, in the expansion 1x1 of
  a MobileNetV2 block, where SlowFast-R50 puts it in its bottleneck).
* **Fast pathway**: the same architecture at ``beta`` = 1/8 of the channels,
  temporal kernel 5 in conv1 and 3 in the blocks, no temporal downsampling,
  RGB or (``fast_gray``) grayscale input.
* **Lateral fusion** fast -> slow after the stem, res2, res3 and res4: a
  time-strided Conv3d, kernel (5, 1, 1), stride (alpha, 1, 1), ``2 * C_fast``
  output channels (= 2 * beta * C), BN, ReLU, concatenated to the slow features.
  The final stride-32 features are slow res5 concatenated with fast res5.

Presets and temporal extent
---------------------------
A preset ``"S-F"`` names the frames each pathway sees: the slow pathway S frames,
a uniform subsample (stride ``alpha``) of the fast pathway's F consecutive frames,
both ending at the frame being segmented::

    preset  slow  fast  alpha   slow frames for the frame t
    1-1      1     1     1      t                       (no temporal context)
    3-3      3     3     1      t-2, t-1, t
    7-7      7     7     1      t-6 .. t
    1-7      1     7     7      t
    3-7      3     7     3      t-6, t-3, t

Every temporal convolution is **causal** (it sees the current and past time
steps only).  The paper's kernel sizes are allocated in network order until a
pathway's own temporal extent equals its preset frame count: the fast pathway
gets conv1 k=min(5, F) then k=3 blocks while ``F - 1`` frames of lag are left;
the slow pathway gets k=3 in res4/res5 blocks while ``S - 1`` slow steps are
left; laterals use k=min(5, F).  So 1-1 is purely per-frame, 7-7 has 5+3 in the
fast stem/res2 and three k=3 slow blocks.  Laterals compose with the slow
temporal convs, so the model's total receptive field (``receptive_field``, in
frames) is larger than F (e.g. 17 for 7-7 and 3-7); clip mode recomputes over
that many frames, streaming never does.

Streaming (the stages)
----------------------
Because every temporal layer is causal, a frame is encoded once: each temporal
layer keeps its *input* activations of past frames in a ring buffer (the host
holds them, :mod:`edgevos.programs.slowfast`) and a stage computes only the
newest time step from ``history window ++ current input``.  The per-frame cost
is that of one frame, whatever the preset's window.  The fast pathway's strided
conv1 (k_t up to 5 on the full-resolution input) keeps its per-frame partial
products instead (``TemporalConv.partial``): each frame meets its kernel once.
Every other temporal layer runs its window as one Conv2d over the time steps
stacked as channels (``TemporalConv.stacked``): no Conv3d in a streamed stage.

===================  ==========================================================  ==================
stage                inputs -> outputs                                           runs
===================  ==========================================================  ==================
``frame_stem``       image -> fast_in                                            every frame
``fast_body``        fast_in, hist_fast_* -> fast_stem, fast4..fast32, new_*     every frame
``fast_body_init``   fast_in -> (same)                                           first frame
``slow_body``        image, fast_stem..fast16, hist_lat_*, hist_slow_*           computed frames
                     -> f4, f8, f16, f32, new_slow_* (the slow stem runs here)
``slow_body_init``   image, fast_stem..fast16 -> (same)                          first frame
``reference``        f16, mask16 -> template                                     first frame, per object
                                                                                 (semi-supervised)
``gate``             fast8, fast8_prev, prev_prob -> p_gate                      per object, tau < 1
``mask_decoder``     f4, f8, f16, f32, fast32, [template], prev_prob             computed frames,
                     -> logits (stride 4), r8                                    per object
``decoder_reuse``    fast4, fast8, r8_prev, prev_prob -> logits                  reused frames
===================  ==========================================================  ==================

``hist_<layer>`` is that layer's input at the previous ``k - 1`` time steps
(oldest first; at stride ``alpha`` for slow layers) and ``new_<layer>`` its input
(its partial products, for a ``partial`` layer) at the current frame, which the host
pushes into the layer's ring.  The
``*_init`` stages treat the first frame as a constant past (every history is the
current input repeated): identical to clip mode with the first frame repeated.

``clip(frames)`` is the same network as an ordinary 3D (clip) model: all time
steps of a clip, causal replicate padding, laterals with time stride ``alpha``.
With a clip at least ``receptive_field`` long (or starting at the sequence
start) its last step equals the streaming output.

Gated slow pathway
------------------
The fast pathway is cheap and sees motion, so it runs every frame.  A reuse
gate on its stride-8 features (current vs the last computed frame, plus the
previous mask) gives ``P_gate``; when ``P_gate >= tau`` the slow pathway and the
deep decoder are skipped and ``decoder_reuse`` refines the last computed frame's
stride-8 decoder state with the current fast features.  tau = 1 disables it.

Temporal Conv3d as Conv2d sums
------------------------------
``conv3d_as_conv2d=True`` computes every temporal convolution as the sum over
its k time steps of a Conv2d with that step's kernel slice (pytorchvideo's
mobile form), in clip mode too.  It is numerically the Conv3d (tested).  The
streamed stages need no option for this: their temporal layers are partial
products or stacked Conv2d (see Streaming), so exported stages contain only 2D
convolutions, INT8-friendly on ONNX Runtime, TensorRT and DLA.

Modes and freezing
------------------
``mode="semi"``: the decoder is conditioned on the reference frame and mask
(fg/bg prototypes of a stride-16 embedding; per object) and on the previous
predicted mask.  ``mode="unsupervised"``: no mask is given; the decoder segments
the primary (moving) object, conditioned only on its own previous prediction.
``freeze``: ``"slowfast"`` freezes the whole two-pathway encoder (the project
document's best semi-supervised recipe, for a pretrained encoder),
``"backbone"`` only the slow pathway's ImageNet 2D layers (inflated temporal
convs, widened convs, the fast pathway and laterals train), ``"none"`` nothing.
BatchNorm layers of frozen parts (pretrained statistics) always use their running
statistics; every other BatchNorm (the fast pathway, the laterals, new layers) trains
with batch statistics in ``train()`` mode, so the layers that start from random
initialisation get a normalisation at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from edgevos.errors import InputError
from edgevos.models.backbones import IMAGENET_MEAN, IMAGENET_STD, imagenet_normalization
from edgevos.models.slowfast_heads import MaskDecoder, Reference, ReuseDecoder, SlowGate
from edgevos.models.slowfast_init import FREEZE, apply_freeze, inflate_from_2d, load_slow_weights
from edgevos.models.slowfast_layers import PATHWAYS, Lateral, StepContext, TemporalConv, allocate_kernels
from edgevos.programs.slowfast import PRESETS, check_preset  # torch-free: shared with the step program
from edgevos.stages import StageSpec, TensorSpec

__all__ = ["BACKBONES", "FREEZE", "MODES", "PRESETS", "SlowFastConfig", "SlowFastVOS", "apply_freeze",
           "build_slowfast", "inflate_from_2d", "load_slow_weights"]

BACKBONES = ("mobilenetv2", "resnet18")
MODES = ("semi", "unsupervised")
GRAY = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class SlowFastConfig:
    preset: str = "3-7"
    backbone: str = "mobilenetv2"
    input_size: Tuple[int, int] = (480, 864)  # (H, W), multiples of 32
    mode: str = "semi"
    beta: float = 0.125  # fast pathway channel ratio
    fast_gray: bool = False  # grayscale input to the fast pathway
    fast_conv1_kernel: int = 5
    temporal_kernel: int = 3
    lateral_kernel: int = 5
    freeze: str = "backbone"
    conv3d_as_conv2d: bool = False
    decoder_dim: int = 32
    shallow_dim: int = 16
    embed_dim: int = 32
    # semi-supervised: the decoder also reads the coarse score of an online target model (FRTM's,
    # edgevos.target_model, fitted by the host on the slow pathway's stride-16 features)
    target_model: bool = False
    proj_dim: int = 32  # the target model's projection channels
    # slow-pathway outputs the target model reads at stride 16: f16, optionally with f8 (pooled) / f32
    target_inputs: Tuple[str, ...] = ("f16",)
    # the reuse decoder also blends the previous frame's mask in (slowfast_heads.ReuseDecoder's ``blend``)
    reuse_blend: bool = False
    # reuse gate (G-FRTM's loss and defaults)
    tau: float = 1.0
    m1: float = 1.0
    m2: float = 0.0
    ep_T: int = 120

    def __post_init__(self):
        check_preset(self.preset)
        h, w = self.input_size
        if h % 32 or w % 32 or h <= 0 or w <= 0:
            raise InputError(f"input_size {h}x{w} is not a positive multiple of 32: use e.g. 480x864 or 256x448")
        for name, value, valid in (("backbone", self.backbone, BACKBONES), ("mode", self.mode, MODES),
                                   ("freeze", self.freeze, FREEZE)):
            if value not in valid:
                raise InputError(f"unknown {name} '{value}': choose one of {list(valid)}")
        if not 0 < self.beta <= 1:
            raise InputError(f"beta={self.beta} must be in (0, 1] (the paper uses 1/8)")
        object.__setattr__(self, "target_inputs", tuple(self.target_inputs))
        if "f16" not in self.target_inputs or not set(self.target_inputs) <= {"f8", "f16", "f32"} \
                or len(set(self.target_inputs)) != len(self.target_inputs):
            raise InputError(f"target_inputs {list(self.target_inputs)}: use f16, optionally with f8 and f32")
        if self.proj_dim < 1:
            raise InputError(f"proj_dim={self.proj_dim}: use a positive number of projected channels")
        if self.target_model and self.mode != "semi":
            raise InputError("target_model needs mode='semi': the target model is fitted on the first frame's mask")

    @property
    def slow_frames(self) -> int:
        return check_preset(self.preset)[0]

    @property
    def fast_frames(self) -> int:
        return check_preset(self.preset)[1]

    @property
    def alpha(self) -> int:
        return check_preset(self.preset)[2]


# ----------------------------------------------------------------------------- the model
class SlowFastVOS(nn.Module):
    def __init__(self, cfg: SlowFastConfig):
        super().__init__()
        self.config = cfg
        S, Fr, alpha = check_preset(cfg.preset)
        P = PATHWAYS[cfg.backbone]
        # -- temporal kernels (see the module docstring)
        fast_k = allocate_kernels([(P.stem_conv, cfg.fast_conv1_kernel)] + [(n, cfg.temporal_kernel) for n in P.candidates(2)],
                           Fr - 1)
        slow_k = allocate_kernels([(n, cfg.temporal_kernel) for n in P.candidates(4)], S - 1)
        k_lat = min(cfg.lateral_kernel, Fr)
        fin = 1 if cfg.fast_gray else 3
        probe = P(3, cfg.beta, {}, (0, 0, 0, 0), "probe")
        cf = probe.channels  # fast channels: stem, res2..res5
        lat = [2 * c for c in cf[:4]]
        self.slow = P(3, 1.0, slow_k, lat, "slow")
        self.fast = P(fin, cfg.beta, fast_k, (0, 0, 0, 0), "fast")
        self.laterals = nn.ModuleList([Lateral(cf[i], k_lat, alpha, f"lat_{n}")
                                       for i, n in enumerate(("stem", "res2", "res3", "res4"))])
        cs = self.slow.channels
        self.feature_channels = {"f4": cs[1] + lat[1], "f8": cs[2] + lat[2], "f16": cs[3] + lat[3], "f32": cs[4],
                                 "fast32": cf[4]}
        self.fast_channels = cf
        self.kernels = {"fast": fast_k, "slow": slow_k, "lateral": k_lat}
        self.alpha = alpha
        # stride of the slow stem (4 for resnet18, 2 for mobilenetv2)
        self.stem_stride = 4 if cfg.backbone == "resnet18" else 2
        self.temporal_convs = [m for m in self.modules() if isinstance(m, TemporalConv) and m.k_t > 1]
        for m in self.modules():
            if isinstance(m, TemporalConv):
                m.as_conv2d = cfg.conv3d_as_conv2d
        fast = set(map(id, self.fast.modules()))
        for m in self.temporal_convs:  # the fast pathway's strided temporal convs stream partial products,
            if m.groups == 1:          # the others stack time as channels
                m.partial = id(m) in fast and m.stride > 1
                m.stacked = not m.partial
        # -- heads
        fc = self.feature_channels
        d = cfg.decoder_dim
        self.semi = cfg.mode == "semi"
        self.reference = Reference(fc["f16"], cfg.embed_dim) if self.semi else None
        self.decoder = MaskDecoder(fc["f4"], fc["f8"], fc["f16"], fc["f32"] + fc["fast32"], d, cfg.shallow_dim,
                                   (3 + cfg.target_model) if self.semi else 1)
        self.reuse_decoder = ReuseDecoder(cf[1], cf[2], d, cfg.shallow_dim, blend=cfg.reuse_blend)
        self.gate = SlowGate(cf[2])
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.register_buffer("gray", torch.tensor(GRAY).view(1, 3, 1, 1), persistent=False)
        self.frozen: set = set()  # names of the tensors frozen (apply_freeze)
        self.exact_2d: Optional[set] = None  # slow pathway tensors that are plain 2D ImageNet copies
        self._layout = None
        apply_freeze(self, cfg.freeze)

    # ------------------------------------------------------------------ basics
    @property
    def normalization(self) -> dict:
        return imagenet_normalization()

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():  # frozen (pretrained) BatchNorm keeps its running statistics
            if isinstance(m, nn.BatchNorm2d) and not any(p.requires_grad for p in m.parameters()):
                m.eval()
        return self

    def set_conv3d_as_conv2d(self, flag: bool) -> "SlowFastVOS":
        """Switch every temporal conv between the Conv3d and the Conv2d-sum form (same numbers)."""
        for m in self.modules():
            if isinstance(m, TemporalConv):
                m.as_conv2d = bool(flag)
        self.config = _replace(self.config, conv3d_as_conv2d=bool(flag))
        return self

    @property
    def receptive_field(self) -> int:
        """Frames that influence one output (the clip length at which clip mode equals streaming)."""
        P = type(self.slow)
        a = self.alpha

        def stage_of(name):  # 0 = stem, 1..4 = res2..res5
            if name in ("conv1", "features.0.0"):
                return 0
            if name.startswith("layer"):
                return int(name[5])
            idx = int(name.split(".")[1])
            return max(i for i, b in enumerate(P.bounds[:-1]) if idx >= b)

        fast_lag = [0] * 5
        for n, k in self.kernels["fast"].items():
            for s in range(stage_of(n), 5):
                fast_lag[s] += k - 1
        slow_lag = [0] * 5
        for n, k in self.kernels["slow"].items():
            slow_lag[stage_of(n)] += a * (k - 1)
        after = [sum(slow_lag[s + 1:]) for s in range(5)]
        paths = [fast_lag[4], sum(slow_lag)]
        paths += [fast_lag[s] + self.kernels["lateral"] - 1 + after[s] for s in range(4)]
        return 1 + max(paths)

    def _fast_input(self, image):
        x = (image - self.mean) / self.std
        if self.config.fast_gray:
            return (x * self.gray).sum(1, keepdim=True)
        return x

    def _with_context(self, ctx: Optional[StepContext]):
        for m in self.temporal_convs:
            m.ctx = ctx

    # ------------------------------------------------------------------ encoder pieces
    def slow_stem(self, image):
        """(T, 3, H, W) 0..255 -> the slow pathway's stem features."""
        return self.slow.stem((image - self.mean) / self.std)

    def frame_stem(self, image):
        """(1, 3, H, W) 0..255 -> slow stem features, fast pathway input."""
        return self.slow_stem(image), self._fast_input(image)

    def fast_forward(self, fast_in):
        f = [self.fast.stem(fast_in)]
        for i in range(4):
            f.append(self.fast.stage(i, f[-1]))
        return f  # fast_stem, fast4, fast8, fast16, fast32 (stride of the backbone's stem, 4, 8, 16, 32)

    def slow_forward(self, slow_stem, fast_feats):
        s = torch.cat([slow_stem, self.laterals[0](fast_feats[0])], 1)
        outs = []
        for i in range(4):
            s = self.slow.stage(i, s)
            if i < 3:
                s = torch.cat([s, self.laterals[i + 1](fast_feats[i + 1])], 1)
            outs.append(s)
        return outs  # f4, f8, f16, f32 (slow res5)

    def _run(self, mode, fn, hist=None):
        ctx = StepContext(mode, hist)
        self._with_context(ctx)
        try:
            out = fn()
        finally:
            self._with_context(None)
        return out, ctx.new

    # ------------------------------------------------------------------ clip mode
    def clip(self, frames) -> Dict[str, torch.Tensor]:
        """Clip mode: ``frames`` (T, 3, H, W) 0..255 ending at the frame to segment -> its features.

        Every time step of every layer is computed (an ordinary 3D network).
        Fewer frames than ``receptive_field`` are treated as a sequence start
        (the first frame repeated before it).  Returns f4, f8, f16, f32 and the
        fast features of the last frame, each (1, C, h, w).
        """
        T = frames.shape[0]
        a = self.alpha
        n = max(T, self.receptive_field)
        n += (-(n - 1)) % a  # the last frame is a slow frame: (n - 1) % alpha == 0
        if n > T:
            frames = torch.cat([frames[:1].expand(n - T, *frames.shape[1:]), frames], 0)
        self._with_context(None)
        slow_stem = self.frame_stem(frames[::a].contiguous())[0]  # (T_slow, C, h, w)
        fast = self.fast_forward(self._fast_input(frames))
        outs = self.slow_forward(slow_stem, fast)
        last = {k: v[-1:] for k, v in zip(("f4", "f8", "f16", "f32"), outs)}
        last.update({k: v[-1:] for k, v in zip(("fast_stem", "fast4", "fast8", "fast16", "fast32"), fast)})
        return last

    # ------------------------------------------------------------------ step mode
    def fast_body(self, fast_in, hist=None):
        """Step (hist given) or init (hist None): -> fast features, new inputs of the fast temporal layers."""
        return self._run("init" if hist is None else "step", lambda: self.fast_forward(fast_in), hist)

    def slow_body(self, slow_stem, fast_feats, hist=None):
        return self._run("init" if hist is None else "step", lambda: self.slow_forward(slow_stem, fast_feats), hist)

    # ------------------------------------------------------------------ decoder pieces
    def decode(self, f4, f8, f16, f32, fast32, template, prev_prob, score=None):
        """Full decoder -> (logits at stride 4, r8).  ``score``: the target model's (1, 1, H/16, W/16)
        coarse score (``target_model`` models)."""
        h16 = F.interpolate(prev_prob, size=f16.shape[-2:], mode="bilinear", align_corners=False)
        cond = torch.cat([self.reference.similarity(f16, template), h16], 1) if self.semi else h16
        if self.config.target_model:
            cond = torch.cat([cond, score], 1)
        r16 = self.decoder.deep(f16, torch.cat([f32, fast32], 1), cond)
        logits, r8 = self.decoder.shallow(f4, f8, r16, prev_prob)
        return logits, r8

    def decode_reuse(self, fast4, fast8, r8_prev, prev_prob):
        return self.reuse_decoder(fast4, fast8, r8_prev, prev_prob)

    def forward_clip(self, frames, template=None, prev_prob=None, score=None):
        """Clip mode end to end: logits (1, 1, H/4, W/4) of the clip's last frame."""
        f = self.clip(frames)
        if prev_prob is None:
            prev_prob = torch.zeros(1, 1, f["f4"].shape[2], f["f4"].shape[3])
        if score is None and self.config.target_model:
            score = torch.zeros(1, 1, f["f16"].shape[2], f["f16"].shape[3])
        return self.decode(f["f4"], f["f8"], f["f16"], f["f32"], f["fast32"], template, prev_prob, score)[0]

    # ------------------------------------------------------------------ stages
    def _layout_info(self):
        """Channels/strides of every stage tensor, from one tiny init-mode pass (cached)."""
        if self._layout is not None:
            return self._layout
        h0, w0 = 64, 64
        with torch.no_grad():
            image = torch.zeros(1, 3, h0, w0)
            slow_stem, fast_in = self.frame_stem(image)
            fast, fnew = self.fast_body(fast_in)
            outs, snew = self.slow_body(slow_stem, fast)
        shape = lambda t: (int(t.shape[1]), h0 // int(t.shape[2]))  # (channels, stride)
        lay = {"slow_stem": shape(slow_stem), "fast_in": shape(fast_in)}
        lay.update({k: shape(v) for k, v in zip(("fast_stem", "fast4", "fast8", "fast16", "fast32"), fast)})
        lay.update({k: shape(v) for k, v in zip(("f4", "f8", "f16", "f32"), outs)})
        k_of = {m.key: m.k_t for m in self.temporal_convs}
        fast_keys = [k for k in fnew]  # in call order
        # rings the host fills with the stage input itself (no ``new_*`` output): fast_in
        lay["fast_input_keys"] = [k for k in fast_keys if fnew[k] is fast_in]
        slow_keys = [k for k in snew if not k.startswith("lat_")]
        lat_keys = [k for k in snew if k.startswith("lat_")]
        lay["hist"] = {k: shape((fnew | snew)[k]) + (k_of[k],) for k in fast_keys + slow_keys + lat_keys}
        lay["fast_keys"], lay["slow_keys"], lay["lat_keys"] = fast_keys, slow_keys, lat_keys
        self._layout = lay
        return lay

    def ring_layout(self) -> Dict[str, Tuple[int, int, Tuple[int, ...]]]:
        """{layer key: (history length k - 1, time stride, item shape)} of every temporal layer."""
        lay = self._layout_info()
        H, W = self.config.input_size
        out = {}
        for k, (c, s, kt) in lay["hist"].items():
            stride = self.alpha if k.startswith("slow_") else 1
            out[k] = (kt - 1, stride, (c, H // s, W // s))
        return out

    def stage_modules(self) -> Dict[str, nn.Module]:
        lay = self._layout_info()
        mods = {
            "frame_stem": _Stage(self, "frame_stem", lay),
            "fast_body": _Stage(self, "fast_body", lay),
            "fast_body_init": _Stage(self, "fast_body_init", lay),
            "slow_body": _Stage(self, "slow_body", lay),
            "slow_body_init": _Stage(self, "slow_body_init", lay),
            "gate": _Stage(self, "gate", lay),
            "mask_decoder": _Stage(self, "mask_decoder", lay),
            "decoder_reuse": _Stage(self, "decoder_reuse", lay),
        }
        if self.semi:
            mods["reference"] = _Stage(self, "reference", lay)
        return mods

    def stage_specs(self) -> List[StageSpec]:
        cfg = self.config
        lay = self._layout_info()
        H, W = cfg.input_size
        d = cfg.decoder_dim

        def t(name, key=None, c=None, s=None):
            c0, s0 = lay[key or name] if key or name in lay else (c, s)
            c, s = (c if c is not None else c0), (s if s is not None else s0)
            return TensorSpec(name, (1, c, H // s, W // s))

        def hist(k):
            c, s, kt = lay["hist"][k]
            return TensorSpec(f"hist_{k}", (kt - 1, c, H // s, W // s))

        def new(k):
            c, s, _ = lay["hist"][k]
            return TensorSpec(f"new_{k}", (1, c, H // s, W // s))

        fast_out = tuple(t(n) for n in ("fast_stem", "fast4", "fast8", "fast16", "fast32"))
        fast_new = tuple(new(k) for k in lay["fast_keys"] if k not in lay["fast_input_keys"])
        fast_hist = tuple(hist(k) for k in lay["fast_keys"])
        slow_in = (t("image", c=3, s=1),) + fast_out[:4]
        slow_out = tuple(t(n) for n in ("f4", "f8", "f16", "f32"))
        slow_new = tuple(new(k) for k in lay["slow_keys"])
        slow_hist = tuple(hist(k) for k in lay["lat_keys"] + lay["slow_keys"])
        prev = t("prev_prob", c=1, s=4)
        template = TensorSpec("template", (1, 2 * cfg.embed_dim))
        cond = ((template,) if self.semi else ()) + ((t("score", c=1, s=16),) if cfg.target_model else ())
        specs = [
            StageSpec("frame_stem", (t("image", c=3, s=1),), (t("fast_in"),),
                      "image (RGB 0..255) -> fast pathway input"),
            StageSpec("fast_body", (t("fast_in"),) + fast_hist, fast_out + fast_new,
                      "fast pathway, newest time step from ring histories -> fast features, new ring items"),
            StageSpec("fast_body_init", (t("fast_in"),), fast_out + fast_new,
                      "fast pathway on the first frame (constant past)"),
            StageSpec("slow_body", slow_in + slow_hist, slow_out + slow_new,
                      "slow stem + laterals + slow pathway, newest time step -> f4, f8, f16, f32, new ring items"),
            StageSpec("slow_body_init", slow_in, slow_out + slow_new, "slow pathway on the first frame (constant past)"),
        ]
        if self.semi:
            specs.append(StageSpec("reference", (t("f16"), t("mask16", c=1, s=16)), (template,),
                                   "reference frame + mask -> fg/bg prototypes"))
        specs += [
            StageSpec("gate", (t("fast8"), t("fast8_prev", key="fast8"), prev), (TensorSpec("p_gate", (1, 1)),),
                      "fast features now vs last computed frame + previous mask -> P(reuse)"),
            StageSpec("mask_decoder", slow_out + (t("fast32"),) + cond + (prev,),
                      (t("logits", c=1, s=4), t("r8", c=d, s=8)), "full decoder -> logits (stride 4), stride-8 state"),
            StageSpec("decoder_reuse", (t("fast4"), t("fast8"), t("r8_prev", c=d, s=8), prev), (t("logits", c=1, s=4),),
                      "reuse path: last computed r8 + current fast features -> logits (stride 4)"),
        ]
        return specs

    def trainable_state_dict(self) -> Dict[str, torch.Tensor]:
        """Everything but the frozen parts (those come from ImageNet weights or a pretrained encoder)."""
        return {k: v for k, v in self.state_dict().items() if k not in self.frozen}


class _Stage(nn.Module):
    """One stage as its own module (what gets exported); shares parameters with the model."""

    def __init__(self, model: SlowFastVOS, name: str, layout: dict):
        super().__init__()
        self.model = model
        self.name = name
        self.layout = layout

    def forward(self, *inputs):
        m, lay, name = self.model, self.layout, self.name
        if name == "frame_stem":  # every frame: the fast pathway's input only
            return (m._fast_input(inputs[0]),)
        if name in ("fast_body", "fast_body_init"):
            keys = lay["fast_keys"]
            hist = dict(zip(keys, inputs[1:])) if name == "fast_body" else None
            feats, new = m.fast_body(inputs[0], hist)
            return tuple(feats) + tuple(new[k] for k in keys if k not in lay["fast_input_keys"])
        if name in ("slow_body", "slow_body_init"):
            keys = lay["lat_keys"] + lay["slow_keys"]
            hist = dict(zip(keys, inputs[5:])) if name == "slow_body" else None
            outs, new = m.slow_body(m.slow_stem(inputs[0]), list(inputs[1:5]), hist)
            return tuple(outs) + tuple(new[k] for k in lay["slow_keys"])
        if name == "reference":
            return (m.reference.template(*inputs),)
        if name == "gate":
            return (m.gate(*inputs),)
        if name == "mask_decoder":
            f4, f8, f16, f32, fast32 = inputs[:5]
            template = inputs[5] if m.semi else None
            score = inputs[6] if m.config.target_model else None
            return tuple(m.decode(f4, f8, f16, f32, fast32, template, inputs[-1], score))
        if name == "decoder_reuse":
            return (m.decode_reuse(*inputs),)
        raise KeyError(name)


def _replace(cfg, **kw):
    from dataclasses import replace

    return replace(cfg, **kw)


# ----------------------------------------------------------------------------- builders
def build_slowfast(weights=None, input_size=None, backbone_weights=None, **overrides) -> SlowFastVOS:
    """Build SlowFast-VOS.

    weights: None (random heads), "default" (shipped checkpoint) or a path to an
        edgevos slowfast checkpoint (its config, except input_size, is used).
    backbone_weights: a torchvision ImageNet state dict for the slow pathway's 2D
        layers (mobilenet_v2-b0353104.pth or resnet18-f37072fd.pth), inflated.
    overrides: SlowFastConfig fields, e.g. ``preset="7-7"``, ``mode="unsupervised"``,
        ``conv3d_as_conv2d=True``.
    """
    from edgevos.models import weights as shipped

    # default size: the one the weights were trained at
    ckpt, input_size, overrides = shipped.checkpoint_config("slowfast", weights, input_size, overrides)
    fields = set(SlowFastConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InputError(f"unknown SlowFast option(s) {unknown}: valid ones are {sorted(fields - {'input_size'})}")
    if input_size is None:
        input_size = SlowFastConfig.input_size
    cfg = SlowFastConfig(input_size=tuple(int(v) for v in input_size), **overrides)
    model = SlowFastVOS(cfg)
    if backbone_weights is not None:
        load_slow_weights(model, backbone_weights)
    if ckpt is not None:
        state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or missing:
            raise InputError(f"checkpoint '{weights}' does not fit SlowFast-VOS {cfg.preset} ({cfg.backbone}): "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval()
