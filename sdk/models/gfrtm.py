"""G-FRTM-fast: FRTM-fast with the learned reuse gate (Park et al.; Robinson et al.).

The network is a set of *stages* (pure tensor functions with fixed shapes) that
the host-side step program (:mod:`edgevos.programs.gfrtm`) calls per frame:

=================  =================================================  ========================
stage              inputs -> outputs                                  runs on
=================  =================================================  ========================
``encoder_low``    image -> f4, f8                                    every frame
``encoder_high``   f8 -> f16, f32                                     computed frames
``gate_template``  f8, mask8 -> template, embed                       first frame, per object
``gate``           f8, prev_score, template, prev_embed               every frame, per object
                   -> p_gate, delta, embed                            (skipped when tau = 1)
``decoder_full``   f4, f8, f16, f32, score -> logits, r8              computed frames
``decoder_reuse``  f4, f8, r8_prev, prev_score, delta -> logits       reused frames
=================  =================================================  ========================

With ``reuse_scale=2`` (the v2 reuse path) the gate and the reuse path never touch
the full-resolution encoder: ``encoder_reuse`` encodes a half-resolution copy of the
frame (image/2 -> h4 at stride 8, h8 at stride 16, same backbone weights), the gate
matches ``h8`` against a template made the same way, and ``decoder_reuse`` turns the
translated stride-16 refiner state and ``h4`` into stride-8 logits:

=================  =================================================  ========================
``encoder_reuse``  image_half -> h4, h8                               every frame (tau < 1)
``gate_template``  h8, mask16 -> template, embed                      first frame, per object
``gate``           h8, prev_score, template, prev_embed               every frame, per object
                   -> p_gate, delta, embed
``decoder_reuse``  h4, r8_prev, prev_score, delta -> logits           reused objects
=================  =================================================  ========================

A reused frame then costs the half-resolution encoder (a quarter of ``encoder_low``),
the gate and a thin stride-8 head.

The online target model (1x1 projection + 3x3 filter on f16) is fitted on the
host by :mod:`edgevos.target_model` and produces ``score``.  ``decoder_full``
and ``decoder_reuse`` share the shallow refinement levels (stride 8 and 4), as
in the paper's Figure 2: the reuse path replaces levels 32/16 by the
refine-translator applied to the stored stride-8 refiner state ``r8``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from edgevos.errors import InputError
from edgevos.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    imagenet_normalization,
    backbone_channels,
    build_backbone,
    freeze,
    load_torchvision_weights,
)
from edgevos.stages import StageSpec, TensorSpec


DECODERS = ("light", "frtm")

#: GfrtmConfig fields of the upstream structure at the published ResNet18 widths
#: (FRTM: 64 refiner channels, 96-channel target-model projection; Reuse_VOS: 64 key/value/output channels)
FRTM_PRESET = dict(backbone="resnet18", decoder="frtm", decoder_dim=64, embed_dim=64, dissim_dim=64, proj_dim=96)


REUSE_HEADS = ("stride8", "residual", "blend")


@dataclass(frozen=True)
class GfrtmConfig:
    backbone: str = "mobilenetv2"
    input_size: Tuple[int, int] = (480, 864)  # (H, W), multiples of 32
    decoder_dim: int = 32  # channels of the refinement network (levels 32, 16, 8)
    shallow_dim: int = 16  # channels of the light stride-4 level
    embed_dim: int = 32  # template-matching embedding channels
    dissim_dim: int = 64  # c_f: channels of the dissimilarity features D_t
    proj_dim: int = 32  # target model projection K (FRTM: 96 for ResNet18; MobileNetV2 f16 has only 96 channels)
    # encoder outputs the online target model reads, at stride 16: "f16" (FRTM: one backbone level),
    # optionally with "f32" (upsampled x2) and "f8" (area-pooled x2) stacked onto it
    target_inputs: Tuple[str, ...] = ("f16",)
    # "light": edgevos' light decoder; "frtm": the upstream structure (FRTM segmentation network,
    # Reuse_VOS template matching / gate / translator), so upstream checkpoints load (edgevos.models.upstream)
    decoder: str = "light"
    # light decoder: stride of the refiner state stored on computed frames and translated on
    # reused ones.  8 = after the stride-16 level's x2 upsampling; 16 = before it, as Reuse_VOS
    # stores and translates it (the refine-translator then costs a quarter).  Same decode_full
    # either way: only the place of one x2 upsampling moves.  ("frtm" is always 16.)
    refiner_stride: int = 8
    # 1: the gate and the reuse path run on encoder_low's f4/f8 (the paper's reuse path);
    # 2: on a half-resolution encoding of the frame (stage encoder_reuse), with a thin stride-8
    #    head, so a reused frame never runs the full-resolution encoder (light decoder,
    #    refiner_stride 16 only)
    reuse_scale: int = 1
    # reuse_scale 2 only, the thin stride-8 head of a reused frame:
    #   "stride8": stride-8 logits from the half-resolution features;
    #   "residual": a stride-8 correction added to the last computed frame's stride-4 logits (stage
    #     input ``prev_logits``), so a reused frame keeps the computed frame's stride-4 detail;
    #   "blend": stride-8 logits and a per-pixel weight w; logits = w * prev_logits + (1 - w) * up(stride-8),
    #     so the head copies the computed frame where nothing moved and re-derives the mask where it did
    reuse_head: str = "stride8"
    # reuse-gate training (paper defaults)
    tau: float = 1.0
    m1: float = 1.0
    m2: float = 0.0
    ep_T: int = 120

    def __post_init__(self):
        h, w = self.input_size
        if h % 32 or w % 32 or h <= 0 or w <= 0:
            raise InputError(
                f"input_size {h}x{w} is not a positive multiple of 32: use e.g. 480x864 or 256x448"
            )

        if self.decoder not in DECODERS:
            raise InputError(f"decoder '{self.decoder}' is unknown: choose one of {sorted(DECODERS)}")
        if self.refiner_stride not in (8, 16):
            raise InputError(f"refiner_stride {self.refiner_stride} is not supported: use 8 or 16")
        if self.reuse_scale not in (1, 2):
            raise InputError(f"reuse_scale {self.reuse_scale} is not supported: use 1 (paper) or 2 (half-resolution reuse path)")
        if self.reuse_scale == 2 and (self.decoder != "light" or self.refiner_stride != 16):
            raise InputError(
                f"reuse_scale 2 needs the light decoder and refiner_stride 16 "
                f"(got decoder={self.decoder}, refiner_stride={self.refiner_stride})"
            )
        object.__setattr__(self, "target_inputs", tuple(self.target_inputs))
        if "f16" not in self.target_inputs or not set(self.target_inputs) <= {"f8", "f16", "f32"} \
                or len(set(self.target_inputs)) != len(self.target_inputs):
            raise InputError(f"target_inputs {list(self.target_inputs)}: use f16, optionally with f8 and f32 "
                             "(e.g. ['f16', 'f32'])")
        if self.reuse_head not in REUSE_HEADS:
            raise InputError(f"reuse_head '{self.reuse_head}' is unknown: choose one of {list(REUSE_HEADS)}")
        if self.reuse_head != "stride8" and self.reuse_scale != 2:
            raise InputError(f"reuse_head '{self.reuse_head}' needs reuse_scale 2 (the half-resolution reuse path)")

    def sizes(self) -> Dict[str, Tuple[int, int]]:
        h, w = self.input_size
        return {s: (h // s, w // s) for s in (4, 8, 16, 32)} | {1: (h, w)}


# ----------------------------------------------------------------------------- blocks
def conv(cin, cout, k=3, stride=1, dilation=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, dilation * (k - 1) // 2, dilation=dilation)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class TSE(nn.Module):
    """Target segmentation encoder: backbone features + coarse score -> decoder features."""

    def __init__(self, cin, dim):
        super().__init__()
        self.reduce = conv(cin, dim, 1)
        self.transform = nn.Sequential(conv(dim + 1, dim), conv(dim, dim))

    def forward(self, f, score):
        return self.transform(torch.cat([self.reduce(f), score], 1))


class CAB(nn.Module):
    """Channel attention: the deeper level re-weights the shallower one."""

    def __init__(self, dim):
        super().__init__()
        self.attention = nn.Sequential(conv(2 * dim, dim, 1), nn.Conv2d(dim, dim, 1), nn.Sigmoid())

    def forward(self, deeper, shallower):
        w = self.attention(torch.cat([deeper, shallower], 1).mean((2, 3), keepdim=True))
        return deeper + shallower * w


class RRB(nn.Module):
    """Residual refinement block."""

    def __init__(self, dim):
        super().__init__()
        self.conv1x1 = conv(dim, dim, 1, relu=False)
        self.residual = nn.Sequential(conv(dim, dim), conv(dim, dim, relu=False))

    def forward(self, x):
        x = self.conv1x1(x)
        return F.relu(x + self.residual(x))


class RefineLevel(nn.Module):
    """One level of the segmentation network (FRTM: TSE -> CAB -> RRB -> x2 up)."""

    def __init__(self, cin, dim, has_deeper=True):
        super().__init__()
        self.tse = TSE(cin, dim)
        self.cab = CAB(dim) if has_deeper else None
        self.rrb = RRB(dim)

    def forward(self, f, score, deeper: Optional[torch.Tensor], upsample: bool = True):
        x = self.tse(f, score)
        if self.cab is not None:
            x = self.cab(deeper, x)
        x = self.rrb(x)
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False) if upsample else x


class LightLevel(nn.Module):
    """The stride-4 level, kept light: it runs on every frame, reused or not.

    TSE at ``dim`` channels, the (x2 upsampled) deeper level projected to
    ``dim``, one 3x3 conv.
    """

    def __init__(self, cin, deeper_dim, dim):
        super().__init__()
        self.tse = TSE(cin, dim)
        self.project = conv(deeper_dim, dim, 1, relu=False)
        self.fuse = conv(dim, dim)

    def forward(self, f, score, deeper):
        return self.fuse(F.relu(self.tse(f, score) + self.project(deeper)))


class RefineTranslator(nn.Module):
    """R8_{t-n} + delta -> estimated R8_t (paper Fig. 5a): dilated 3x3 convs (1/2/3), merge, ResBlock.

    Branches are half width: the translator runs on reused frames, whose whole
    point is to be cheap.
    """

    def __init__(self, dim):
        super().__init__()
        self.branches = nn.ModuleList([conv(dim + 1, dim // 2, 3, dilation=d) for d in (1, 2, 3)])
        self.merge = conv(3 * (dim // 2), dim, 1)
        self.res = RRB(dim)

    def forward(self, r8_prev, delta8):
        x = torch.cat([r8_prev, delta8], 1)
        x = self.merge(torch.cat([b(x) for b in self.branches], 1))
        return self.res(x) + r8_prev


class TemplateMatcher(nn.Module):
    """Light template matching (TTVOS-style): first-frame fg/bg prototypes of an f8 embedding.

    The template is made once from frame 0 and never updated.  Each frame's
    embedding is compared with it (cosine similarity to fg/bg prototypes) and
    with the last computed frame's embedding, next to the upsampled previous
    score; a few convs turn this into the dissimilarity features D_t.
    """

    def __init__(self, c8, embed_dim, dissim_dim):
        super().__init__()
        self.embed = nn.Sequential(conv(c8, embed_dim, 1), nn.Conv2d(embed_dim, embed_dim, 1))
        self.dissim = nn.Sequential(conv(2 * embed_dim + 4, dissim_dim // 2), conv(dissim_dim // 2, dissim_dim, 1))

    def template(self, f8, mask8):
        e = self.embed(f8)  # (B, E, H/8, W/8)
        fg = (e * mask8).sum((2, 3)) / (mask8.sum((2, 3)) + 1.0)
        bg = (e * (1 - mask8)).sum((2, 3)) / ((1 - mask8).sum((2, 3)) + 1.0)
        return torch.cat([fg, bg], 1), e  # (B, 2E), (B, E, H/8, W/8)

    def forward(self, f8, score8, template, prev_embed):
        e = self.embed(f8)
        n = e.shape[1]
        en = F.normalize(e, dim=1)
        fg = F.normalize(template[:, :n], dim=1)[:, :, None, None]
        bg = F.normalize(template[:, n:], dim=1)[:, :, None, None]
        sim = torch.cat([(en * fg).sum(1, keepdim=True), (en * bg).sum(1, keepdim=True)], 1)
        x = torch.cat([e, (e - prev_embed).abs(), score8, torch.sigmoid(score8), sim], 1)
        return self.dissim(x), e  # D_t (B, c_f, H/8, W/8)


class ReuseGate(nn.Module):
    """P_gate = sigmoid(w2 * pool(w1 * pool(D))): conv-pool-conv-pool with fixed pooling.

    The upstream head's AdaptiveMaxPool2d does not export at 60x108 features;
    a fixed 4x4 max pool followed by a global max pool exports at any size.
    """

    def __init__(self, dissim_dim):
        super().__init__()
        self.conv1 = conv(dissim_dim, 32, 1)
        self.pool1 = nn.MaxPool2d(4, 4, ceil_mode=True)
        self.conv2 = conv(32, 16)
        self.head = nn.Conv2d(16, 1, 1)
        # the paper initialises gates on with probability 15%
        nn.init.constant_(self.head.bias, -1.7346)

    def forward(self, d):
        x = self.conv2(self.pool1(self.conv1(d)))
        x = torch.amax(x, dim=(2, 3), keepdim=True)  # global max pool
        return torch.sigmoid(self.head(x)).flatten(1)  # (B, 1)


class DeltaGenerator(nn.Module):
    """One 3x3 conv: D_t -> delta score at stride 16 (stride 2 from stride-8 D_t, as in the paper;
    stride 1 when D_t is already at stride 16, on the half-resolution reuse path)."""

    def __init__(self, dissim_dim, stride: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(dissim_dim, 1, 3, stride, 1)

    def forward(self, d):
        return self.conv(d)


# ----------------------------------------------------------------------------- upstream-structured blocks
# Under ``decoder="frtm"`` the network after the backbone has the structure of the
# published models (FRTM's segmentation network; Reuse_VOS' template matching, gate,
# delta generator and translator), so their checkpoints give the same function.
# Parameter names are edgevos'; :mod:`edgevos.models.upstream` holds the name mapping.
def resize_to(x, ref):
    """Bilinear resize to ``ref``'s size; the identity (no op at all) when the sizes agree."""
    if tuple(x.shape[-2:]) == tuple(ref.shape[-2:]):
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class FrtmTSE(nn.Module):
    """TSE (FRTM): reduce = 1x1-ReLU-1x1 to ``dim``; transform = three 3x3 convs on [reduced, score]."""

    def __init__(self, cin, dim):
        super().__init__()
        n = dim + 1
        self.reduce = nn.Sequential(nn.Conv2d(cin, dim, 1), nn.ReLU(), nn.Conv2d(dim, dim, 1))
        self.transform = nn.Sequential(
            nn.Conv2d(n, n, 3, 1, 1), nn.ReLU(), nn.Conv2d(n, n, 3, 1, 1), nn.ReLU(), nn.Conv2d(n, dim, 3, 1, 1), nn.ReLU()
        )

    def forward(self, f, score):
        h = self.reduce(f)
        return self.transform(torch.cat([h, resize_to(score, h)], 1)), h


class FrtmRRB(nn.Module):
    """RRB with BatchNorm (FRTM's ResNet18 setting): h = 1x1(x); relu(h + conv-BN-ReLU-conv(h))."""

    def __init__(self, dim):
        super().__init__()
        self.conv1x1 = nn.Conv2d(dim, dim, 1)
        self.residual = nn.Sequential(
            nn.Conv2d(dim, dim, 3, 1, 1), nn.BatchNorm2d(dim), nn.ReLU(), nn.Conv2d(dim, dim, 3, 1, 1, bias=False)
        )

    def forward(self, x):
        h = self.conv1x1(x)
        return F.relu(h + self.residual(h))


class FrtmCAB(nn.Module):
    """CAB (FRTM): global pools of both levels -> 1x1-ReLU-1x1 -> sigmoid re-weights the shallower
    level, plus the deeper level resized to it.  The deepest level's "deeper" input is already a
    (B, C, 1, 1) pool of its own reduced features."""

    def __init__(self, dim):
        super().__init__()
        self.attention = nn.Sequential(nn.Conv2d(2 * dim, dim, 1), nn.ReLU(), nn.Conv2d(dim, dim, 1))

    def forward(self, deeper, shallower):
        pooled = deeper if deeper.shape[-2:] == (1, 1) else deeper.mean((2, 3), keepdim=True)
        w = torch.sigmoid(self.attention(torch.cat([shallower.mean((2, 3), keepdim=True), pooled], 1)))
        deeper = deeper if deeper.shape[-2:] == (1, 1) else resize_to(deeper, shallower)  # 1x1 broadcasts
        return shallower * w + deeper


class FrtmLevel(nn.Module):
    """One FRTM refinement level: TSE -> RRB -> CAB(deeper) -> RRB, output at the level's own stride."""

    def __init__(self, cin, dim):
        super().__init__()
        self.tse = FrtmTSE(cin, dim)
        self.rrb1 = FrtmRRB(dim)
        self.cab = FrtmCAB(dim)
        self.rrb2 = FrtmRRB(dim)

    def forward(self, f, score, deeper: Optional[torch.Tensor]):
        h, reduced = self.tse(f, score)
        if deeper is None:  # the deepest level attends to its own pooled features
            deeper = reduced.mean((2, 3), keepdim=True)
        return self.rrb2(self.cab(deeper, self.rrb1(h)))


class Bicubic2x(nn.Module):
    """x2 bicubic upsampling (a = -0.75, half-pixel centres, replicated borders) as fixed depthwise convs.

    Output pixel 2k samples the input at k - 1/4 and 2k+1 at k + 1/4, i.e.
    ``F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)``,
    written with Pad/Conv/Reshape only so it exports and builds anywhere.
    """

    def __init__(self, channels):
        super().__init__()
        self.channels = channels

        def cubic(d, a=-0.75):
            d = abs(d)
            return (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1 if d < 1 else a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a

        even = [cubic(d) for d in (1.75, 0.75, 0.25, 1.25)] + [0.0]  # taps k-2 .. k+1
        odd = [0.0] + [cubic(d) for d in (1.25, 0.25, 0.75, 1.75)]  # taps k-1 .. k+2
        k = torch.tensor([even, odd], dtype=torch.float32).repeat(channels, 1)  # (2C, 5)
        self.register_buffer("kernel_w", k.view(2 * channels, 1, 1, 5), persistent=False)
        self.register_buffer("kernel_h", k.view(2 * channels, 1, 5, 1), persistent=False)

    def forward(self, x):
        b, c, h, w = x.shape
        x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), self.kernel_w, groups=c)  # (B, 2C, H, W)
        x = x.view(b, c, 2, h, w).permute(0, 1, 3, 4, 2).reshape(b, c, h, 2 * w)
        x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), self.kernel_h, groups=c)  # (B, 2C, H, 2W)
        return x.view(b, c, 2, h, 2 * w).permute(0, 1, 3, 2, 4).reshape(b, c, 2 * h, 2 * w)


class FrtmPredict(nn.Module):
    """FRTM's final prediction: bicubic x2, 3x3 conv + ReLU, bicubic x2, 3x3 conv -> logits at stride 1."""

    def __init__(self, dim):
        super().__init__()
        self.up1 = Bicubic2x(dim)
        self.conv1 = nn.Conv2d(dim, dim // 2, 3, 1, 1)
        self.up2 = Bicubic2x(dim // 2)
        self.conv2 = nn.Conv2d(dim // 2, 1, 3, 1, 1)

    def forward(self, x):
        return self.conv2(self.up2(F.relu(self.conv1(self.up1(x)))))


class FrtmTranslator(nn.Module):
    """Reuse_VOS' translator: three dilated 3x3 convs (1/2/3) on [R_prev, delta], a 5x5 merge conv,
    then an RRB; no activation between, no skip to R_prev."""

    def __init__(self, dim, branch_dim=48):
        super().__init__()
        self.branches = nn.ModuleList([nn.Conv2d(dim + 1, branch_dim, 3, 1, d, dilation=d) for d in (1, 2, 3)])
        self.merge = nn.Conv2d(3 * branch_dim, dim, 5, 1, 2)
        self.res = FrtmRRB(dim)

    def forward(self, r_prev, delta):
        x = torch.cat([r_prev, delta], 1)
        return self.res(self.merge(torch.cat([b(x) for b in self.branches], 1)))


def _grouped(n, k=5):
    return nn.Conv2d(n, n, k, 1, k // 2, groups=n // 4)


class KeyValueTemplateMatcher(nn.Module):
    """Reuse_VOS' template matching.

    Template (first frame, never updated): value (B, V, HW) and key (B, K, HW) of
    [f8, mask8] -> softmax over K of value @ key^T / sqrt(HW) -> (B, V, K).
    Query: key of [f8, previous score at stride 8]; similarity = template @ key
    (B, V, H, W); D_t = relu(blend([feat, similarity])).

    The matcher keeps no previous-frame embedding: ``embed`` is a (B, 1) carrier that
    keeps the stage signature shared with the light matcher (``gate_template`` writes
    the template's foreground fraction, ``gate`` passes ``prev_embed`` through).
    """

    def __init__(self, c8, key_dim, value_dim, out_dim):
        super().__init__()
        cin = c8 + 1
        self.template_key = nn.Sequential(nn.Conv2d(cin, key_dim, 1), nn.LeakyReLU(0.2), _grouped(key_dim))
        self.template_value = nn.Sequential(nn.Conv2d(cin, value_dim, 1), nn.LeakyReLU(0.2), _grouped(value_dim))
        self.query_key = nn.Sequential(nn.Conv2d(cin, key_dim, 1), _grouped(key_dim), nn.LeakyReLU(0.2))
        self.query_feat = nn.Sequential(nn.Conv2d(cin, out_dim, 1), _grouped(out_dim), nn.LeakyReLU(0.2))
        self.blend = nn.Sequential(_grouped(value_dim + out_dim), nn.Conv2d(value_dim + out_dim, out_dim, 1))

    def template(self, f8, mask8):
        x = torch.cat([f8, mask8], 1)
        value = self.template_value(x).flatten(2)  # (B, V, HW)
        key = self.template_key(x).flatten(2)  # (B, K, HW)
        t = torch.softmax(torch.bmm(value, key.transpose(1, 2)) / math.sqrt(key.shape[-1]), dim=2)
        return t, mask8.mean((2, 3))  # (B, V, K), (B, 1)

    def forward(self, f8, score8, template, prev_embed):
        x = torch.cat([f8, score8], 1)
        key = self.query_key(x)
        b, _, h, w = key.shape
        sim = torch.bmm(template, key.flatten(2)).view(b, -1, h, w)  # (B, V, H/8, W/8)
        return F.relu(self.blend(torch.cat([self.query_feat(x), sim], 1))), prev_embed


def adaptive_max_pool_static(x, size: int):
    """AdaptiveMaxPool2d(size) for a fixed input size, as slices + max (exports at any size).

    Window i covers [floor(i*n/size), ceil((i+1)*n/size)), as torch's adaptive pooling;
    max is separable, so rows are pooled first, then columns.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])

    def windows(n):
        return [(i * n // size, -(-(i + 1) * n // size)) for i in range(size)]

    if h % size == 0 and w % size == 0:
        return F.max_pool2d(x, (h // size, w // size))
    x = torch.cat([x[:, :, a:b].amax(2, keepdim=True) for a, b in windows(h)], 2)
    return torch.cat([x[:, :, :, a:b].amax(3, keepdim=True) for a, b in windows(w)], 3)


class AdaptivePoolGate(nn.Module):
    """Reuse_VOS' gate head: maxpool to 7x7, 3x3/2 conv + BN, maxpool to 3x3, 3x3/2 conv -> 2 logits;
    P_gate = softmax(logits)[0] (probability to reuse).  The adaptive pools run as fixed slices
    (:func:`adaptive_max_pool_static`), exact at the stage's fixed size."""

    def __init__(self, dissim_dim, hidden=16):
        super().__init__()
        self.conv1 = nn.Conv2d(dissim_dim, hidden, 3, 2, 1)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, 2, 3, 2, 0)

    def forward(self, d):
        x = self.bn1(self.conv1(adaptive_max_pool_static(d, 7)))
        logits = self.conv2(adaptive_max_pool_static(x, 3)).flatten(1)  # (B, 2)
        return torch.softmax(logits, 1)[:, :1]  # (B, 1)


# ----------------------------------------------------------------------------- the model
class GFRTM(nn.Module):
    def __init__(self, cfg: GfrtmConfig):
        super().__init__()
        self.config = cfg
        ch = backbone_channels(cfg.backbone)
        d = cfg.decoder_dim
        self.backbone = freeze(build_backbone(cfg.backbone))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        if cfg.decoder == "frtm":
            self._build_frtm(cfg, ch)
            return
        # segmentation network, deep (32, 16) and shallow (8, 4) levels
        self.level32 = RefineLevel(ch["f32"], d, has_deeper=False)
        self.level16 = RefineLevel(ch["f16"], d)
        self.level8 = RefineLevel(ch["f8"], d)
        self.level4 = LightLevel(ch["f4"], d, cfg.shallow_dim)
        self.predict = nn.Conv2d(cfg.shallow_dim, 1, 3, 1, 1)
        # reuse path
        self.matcher = TemplateMatcher(ch["f8"], cfg.embed_dim, cfg.dissim_dim)
        self.gate = ReuseGate(cfg.dissim_dim)
        self.delta = DeltaGenerator(cfg.dissim_dim, stride=2 if cfg.reuse_scale == 1 else 1)
        self.translator = RefineTranslator(d)
        if cfg.reuse_scale == 2:  # the thin stride-8 head of the half-resolution reuse path
            self.reuse_level = LightLevel(ch["f4"], d, cfg.shallow_dim)
            self.reuse_predict = nn.Conv2d(cfg.shallow_dim, 2 if cfg.reuse_head == "blend" else 1, 3, 1, 1)

    def _build_frtm(self, cfg: GfrtmConfig, ch: Dict[str, int]):
        """The upstream structure: four full FRTM levels (32 -> 4), FRTM's bicubic prediction head,
        Reuse_VOS' matcher / gate / delta / translator.  The refiner state handed from the deep to
        the shallow levels (``r8``) is the stride-16 level's output, at stride 16 as upstream."""
        d = cfg.decoder_dim
        self.level32 = FrtmLevel(ch["f32"], d)
        self.level16 = FrtmLevel(ch["f16"], d)
        self.level8 = FrtmLevel(ch["f8"], d)
        self.level4 = FrtmLevel(ch["f4"], d)
        self.predict = FrtmPredict(d)
        self.matcher = KeyValueTemplateMatcher(ch["f8"], cfg.embed_dim, cfg.embed_dim, cfg.dissim_dim)
        self.gate = AdaptivePoolGate(cfg.dissim_dim)
        self.delta = DeltaGenerator(cfg.dissim_dim)
        self.translator = FrtmTranslator(d)

    @property
    def frtm(self) -> bool:
        return self.config.decoder == "frtm"

    @property
    def normalization(self) -> dict:
        return imagenet_normalization()

    # -- pieces -------------------------------------------------------------------------
    def encode_low(self, image):
        return self.backbone.forward_low((image - self.mean) / self.std)

    def encode_high(self, f8):
        return self.backbone.forward_high(f8)

    @staticmethod
    def _resize(x, ref):
        return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)

    def deep_levels(self, f16, f32, score):
        if self.frtm:
            return self.level16(f16, score, self.level32(f32, score, None))  # (B, D, H/16, W/16)
        x = self.level32(f32, self._resize(score, f32), None)
        # the refiner state: (B, D, H/8, W/8), or (B, D, H/16, W/16) before the x2 upsampling
        return self.level16(f16, score, x, upsample=self.config.refiner_stride == 8)

    def shallow_levels(self, f4, f8, score, r8):
        if self.frtm:
            return self.predict(self.level4(f4, score, self.level8(f8, score, r8)))  # logits (B, 1, H, W)
        if self.config.refiner_stride == 16:
            r8 = F.interpolate(r8, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = self.level8(f8, self._resize(score, f8), r8)
        x = self.level4(f4, self._resize(score, f4), x)  # (B, D4, H/4, W/4)
        # logits stay at stride 4: the host resizes them once, straight to the frame's size
        return self.predict(x)

    def decode_full(self, f4, f8, f16, f32, score):
        r8 = self.deep_levels(f16, f32, score)
        return self.shallow_levels(f4, f8, score, r8), r8

    @property
    def reads_prev_logits(self) -> bool:
        """The reuse path reads the last computed frame's logits (``reuse_head`` residual or blend)."""
        return self.config.reuse_head in ("residual", "blend")

    def decode_reuse_half(self, h4, r_prev, prev_score, delta, prev_logits=None):
        """The half-resolution reuse path: translated stride-16 state + h4 (stride 8) -> stride-8 logits,
        or, with a ``reuse_head`` that reads ``prev_logits`` (the last computed frame's stride-4 logits),
        stride-4 logits made from them (see :class:`GfrtmConfig`)."""
        score = prev_score + delta
        r = self.translator(r_prev, delta)  # (B, D, H/16, W/16)
        r = F.interpolate(r, scale_factor=2.0, mode="bilinear", align_corners=False)
        out = self.reuse_predict(self.reuse_level(h4, self._resize(score, h4), r))  # (B, 1 or 2, H/8, W/8)
        head = self.config.reuse_head
        if head == "stride8":
            return out
        up = F.interpolate(out, size=prev_logits.shape[-2:], mode="bilinear", align_corners=False)
        if head == "residual":
            return prev_logits + up
        w = torch.sigmoid(up[:, 1:2])
        return w * prev_logits + (1 - w) * up[:, :1]

    def decode_reuse(self, f4, f8, r8_prev, prev_score, delta):
        score = prev_score + delta
        if self.frtm:
            return self.shallow_levels(f4, f8, score, self.translator(r8_prev, resize_to(delta, r8_prev)))
        r8 = self.translator(r8_prev, self._resize(delta, r8_prev))
        return self.shallow_levels(f4, f8, score, r8)

    def gate_forward(self, f8, prev_score, template, prev_embed):
        d, e = self.matcher(f8, resize_to(prev_score, f8), template, prev_embed)
        return self.gate(d), self.delta(d), e

    # -- stages ----------------------------------------------------------------------------
    def stage_modules(self) -> Dict[str, nn.Module]:
        funcs = _STAGE_FUNCS
        if self.config.reuse_scale == 2:
            funcs = _STAGE_FUNCS_PREV_LOGITS if self.reads_prev_logits else _STAGE_FUNCS_HALF
        return {name: _Stage(self, fn) for name, fn in funcs.items()}

    def stage_specs(self) -> List[StageSpec]:
        cfg = self.config
        ch = backbone_channels(cfg.backbone)
        sz = cfg.sizes()
        d, e = cfg.decoder_dim, cfg.embed_dim

        def t(name, c, s):
            return TensorSpec(name, (1, c) + tuple(sz[s]))

        f4, f8, f16, f32 = t("f4", ch["f4"], 4), t("f8", ch["f8"], 8), t("f16", ch["f16"], 16), t("f32", ch["f32"], 32)
        score = t("score", 1, 16)
        if cfg.reuse_scale == 2:
            h4, h8 = t("h4", ch["f4"], 8), t("h8", ch["f8"], 16)
            template, embed, prev_embed = TensorSpec("template", (1, 2 * e)), t("embed", e, 16), t("prev_embed", e, 16)
            half = TensorSpec("image_half", (1, 3, sz[1][0] // 2, sz[1][1] // 2))
            return [
                StageSpec("encoder_low", (t("image", 3, 1),), (f4, f8), "image (RGB 0..255) -> stride 4/8 features"),
                StageSpec("encoder_high", (f8,), (f16, f32), "stride 8 -> stride 16/32 features"),
                StageSpec("encoder_reuse", (half,), (h4, h8),
                          "half-resolution image -> stride 8/16 features for the gate and the reuse path"),
                StageSpec("gate_template", (h8, t("mask16", 1, 16)), (template, embed),
                          "first-frame template (fg/bg prototypes) and embedding, half resolution"),
                StageSpec("gate", (h8, t("prev_score", 1, 16), template, prev_embed),
                          (TensorSpec("p_gate", (1, 1)), t("delta", 1, 16), embed),
                          "template matching -> reuse probability, delta score, embedding"),
                StageSpec("decoder_full", (f4, f8, f16, f32, score), (t("logits", 1, 4), t("r8", d, 16)),
                          "full segmentation network -> logits (stride 4) and stride-16 refiner state"),
                StageSpec("decoder_reuse", (h4, t("r8_prev", d, 16), t("prev_score", 1, 16), t("delta", 1, 16),
                                            t("prev_logits", 1, 4)),
                          (t("logits", 1, 4),),
                          f"refine-translator + thin stride-8 head ({cfg.reuse_head}) with the last computed "
                          "frame's logits -> logits (stride 4)")
                if self.reads_prev_logits else
                StageSpec("decoder_reuse", (h4, t("r8_prev", d, 16), t("prev_score", 1, 16), t("delta", 1, 16)),
                          (t("logits", 1, 8),),
                          "refine-translator + thin stride-8 head -> logits (stride 8)"),
            ]
        if self.frtm:  # same stages and names; upstream shapes (see _build_frtm)
            template, embed, prev_embed = (TensorSpec("template", (1, e, e)), TensorSpec("embed", (1, 1)),
                                           TensorSpec("prev_embed", (1, 1)))
            r_stride, logit_stride = 16, 1
        else:
            template, embed, prev_embed = TensorSpec("template", (1, 2 * e)), t("embed", e, 8), t("prev_embed", e, 8)
            r_stride, logit_stride = cfg.refiner_stride, 4
        return [
            StageSpec("encoder_low", (t("image", 3, 1),), (f4, f8), "image (RGB 0..255) -> stride 4/8 features"),
            StageSpec("encoder_high", (f8,), (f16, f32), "stride 8 -> stride 16/32 features"),
            StageSpec("gate_template", (f8, t("mask8", 1, 8)), (template, embed),
                      "first-frame template (fg/bg prototypes) and embedding"),
            StageSpec("gate", (f8, t("prev_score", 1, 16), template, prev_embed),
                      (TensorSpec("p_gate", (1, 1)), t("delta", 1, 16), embed),
                      "template matching -> reuse probability, delta score, embedding"),
            StageSpec("decoder_full", (f4, f8, f16, f32, score), (t("logits", 1, logit_stride), t("r8", d, r_stride)),
                      f"full segmentation network -> logits (stride {logit_stride}) and stride-{r_stride} refiner state"),
            StageSpec("decoder_reuse", (f4, f8, t("r8_prev", d, r_stride), t("prev_score", 1, 16), t("delta", 1, 16)),
                      (t("logits", 1, logit_stride),),
                      f"refine-translator + shallow levels -> logits (stride {logit_stride})"),
        ]

    def trainable_state_dict(self) -> Dict[str, torch.Tensor]:
        """Everything but the frozen ImageNet backbone."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}


_STAGE_FUNCS = {
    "encoder_low": lambda m, image: m.encode_low(image),
    "encoder_high": lambda m, f8: m.encode_high(f8),
    "gate_template": lambda m, f8, mask8: m.matcher.template(f8, mask8),
    "gate": lambda m, f8, prev_score, template, prev_embed: m.gate_forward(f8, prev_score, template, prev_embed),
    "decoder_full": lambda m, f4, f8, f16, f32, score: m.decode_full(f4, f8, f16, f32, score),
    "decoder_reuse": lambda m, f4, f8, r8_prev, prev_score, delta: m.decode_reuse(f4, f8, r8_prev, prev_score, delta),
}

_STAGE_FUNCS_HALF = dict(
    _STAGE_FUNCS,
    encoder_reuse=lambda m, image_half: m.encode_low(image_half),
    gate_template=lambda m, h8, mask16: m.matcher.template(h8, mask16),
    gate=lambda m, h8, prev_score, template, prev_embed: m.gate_forward(h8, prev_score, template, prev_embed),
    decoder_reuse=lambda m, h4, r8_prev, prev_score, delta: m.decode_reuse_half(h4, r8_prev, prev_score, delta),
)

_STAGE_FUNCS_PREV_LOGITS = dict(
    _STAGE_FUNCS_HALF,
    decoder_reuse=lambda m, h4, r8_prev, prev_score, delta, prev_logits: m.decode_reuse_half(
        h4, r8_prev, prev_score, delta, prev_logits),
)


class _Stage(nn.Module):
    """A stage as its own module (what gets exported); shares parameters with the model."""

    def __init__(self, model: GFRTM, fn):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *inputs):
        out = self.fn(self.model, *inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


# ----------------------------------------------------------------------------- builders
def build_gfrtm(weights=None, input_size=None, backbone_weights=None, **overrides) -> GFRTM:
    """Build G-FRTM-fast.

    input_size: (H, W); None = the size the checkpoint was trained at (480x864 without weights).
    weights: None (random decoder), "default" (shipped checkpoint) or a path to an
        edgevos checkpoint (a state dict saved with ``torch.save``; loaded with
        ``weights_only=True``).
    backbone_weights: a torchvision ImageNet state dict for the backbone (a
        checkpoint, when given, carries its own backbone and overrides it).
    """
    from edgevos.models import weights as shipped

    # default size: the one the weights were trained at
    ckpt, input_size, overrides = shipped.checkpoint_config("gfrtm", weights, input_size, overrides)
    if "reuse_residual" in overrides:  # the boolean that preceded reuse_head
        overrides["reuse_head"] = "residual" if overrides.pop("reuse_residual") else overrides.get("reuse_head", "stride8")
    if input_size is None:
        input_size = GfrtmConfig.input_size
    cfg = GfrtmConfig(input_size=tuple(int(v) for v in input_size), **overrides)
    model = GFRTM(cfg)
    if backbone_weights is not None:
        load_torchvision_weights(model.backbone, backbone_weights)
    if ckpt is not None:
        state = {k: v.float() for k, v in ckpt["state_dict"].items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or missing:
            raise InputError(
                f"checkpoint '{weights}' does not fit G-FRTM-fast ({cfg.backbone}): "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
    freeze(model.backbone)
    return model.eval()
