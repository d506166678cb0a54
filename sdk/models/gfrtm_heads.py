"""G-FRTM-fast's reuse path (see :mod:`edgevos.models.gfrtm`): the refine-translator, the
template matcher, the reuse gate, the delta generator and the heads of a reused frame (the
``warp`` head's motion field, an image-guided refinement); under ``decoder="frtm"`` Reuse_VOS'
translator, key/value template matcher and adaptive-pool gate."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgevos.models.gfrtm_layers import RRB, FrtmRRB, conv


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


class LocalCorrelation(nn.Module):
    """Cosine of an embedding at p with another's at p + d for every d in [-r, r]^2 (row-major), zero
    outside the frame: (B, E, h, w) x 2 -> (B, (2r+1)^2, h, w).  One slice, product and channel sum
    per displacement: in ONNX Runtime this is faster than one Gather (non-leading axis: 9x slower) or
    a grouped-conv sum (1.3x slower), measured at 24x42.  Its nodes (named ``.../correlate/...``) stay
    in float when a stage is quantized (``edgevos.export.quantize.excluded_nodes``)."""

    def __init__(self, radius: int):
        super().__init__()
        self.radius = radius

    def forward(self, embed, prev_embed):
        r, k = self.radius, 2 * self.radius + 1
        cur = F.normalize(embed, dim=1)
        prev = F.pad(F.normalize(prev_embed, dim=1), (r, r, r, r))
        h, w = (int(n) for n in cur.shape[-2:])  # static sizes (plain ints under ONNX tracing too)
        return torch.cat([(cur * prev[..., dy:dy + h, dx:dx + w]).sum(1, keepdim=True)
                          for dy in range(k) for dx in range(k)], 1)


class ReuseWarp(nn.Module):
    """The ``warp`` reuse head's motion field: a per-cell displacement (in stride-8 cells) that moves
    the last computed frame's logits to where the object now is.

    It reads a local correlation of the gate's embeddings (this frame's against the last computed
    frame's, both L2-normalised, displacements up to ``radius`` stride-16 cells each way: the
    motion evidence), the thin head's stride-8 features and the computed logits average-pooled to
    stride 8.  Three 3x3 convs, the middle one dilated; the last starts at zero, so a head trained
    without it keeps its behaviour (an identity warp) until the field has learned.
    """

    def __init__(self, dim: int, radius: int = 3, hidden: int = 16):
        super().__init__()
        self.correlate = LocalCorrelation(radius)
        cost = (2 * radius + 1) ** 2
        self.body = nn.Sequential(conv(dim + 1 + cost, hidden, 3), conv(hidden, hidden, 3, dilation=2))
        self.out = nn.Conv2d(hidden, 2, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def correlation(self, embed, prev_embed):
        """(B, (2r+1)^2, h, w): cosine of this frame's embedding at p with the computed frame's at p + d,
        d row-major over [-r, r]^2 (zero outside the frame)."""
        return self.correlate(embed, prev_embed)

    def forward(self, x8, prev_logits, embed, prev_embed):
        """x8: (B, dim, h, w) stride-8 features; prev_logits: (B, 1, 2h, 2w) stride-4 logits; embed,
        prev_embed: (B, E, h/2, w/2) the gate's embeddings.  Returns prev_logits sampled at
        (position + displacement), border values outside."""
        cost = F.interpolate(self.correlation(embed, prev_embed), size=x8.shape[-2:], mode="bilinear",
                             align_corners=False)
        flow = self.out(self.body(torch.cat([x8, F.avg_pool2d(prev_logits, 2), cost], 1)))  # (B, 2, h, w), cells
        h4, w4 = (int(n) for n in prev_logits.shape[-2:])
        # stride-8 cells -> stride-4 pixels -> grid_sample's [-1, 1] units (align_corners=True)
        flow = F.interpolate(flow, size=(h4, w4), mode="bilinear", align_corners=False)
        scale = torch.tensor([4.0 / max(w4 - 1, 1), 4.0 / max(h4 - 1, 1)], dtype=flow.dtype).view(1, 2, 1, 1)
        # the identity grid, a float32 constant in the exported graph (torch.linspace traces as float64)
        ys, xs = np.meshgrid(np.linspace(-1, 1, h4), np.linspace(-1, 1, w4), indexing="ij")
        base = torch.from_numpy(np.stack([xs, ys], -1)[None].astype(np.float32)).to(flow.dtype)
        grid = base + (flow * scale).permute(0, 2, 3, 1)
        return F.grid_sample(prev_logits, grid, mode="bilinear", padding_mode="border", align_corners=True)


class ImageGuidedRefine(nn.Module):
    """A reused frame's stride-4 logits corrected from the image itself: the normalised
    half-resolution frame, average-pooled to stride 4, and the logits go through three 3x3 convs
    whose output is added to the logits.  The last conv starts at zero (no correction), so a
    reuse path trained without it keeps its behaviour until this head has learned.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv(4, channels, 3), conv(channels, channels, 3))
        self.out = nn.Conv2d(channels, 1, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, logits4, image_half):
        """logits4: (B, 1, H/4, W/4); image_half: (B, 3, H/2, W/2), normalised."""
        guide = F.avg_pool2d(image_half, 2)
        return logits4 + self.out(self.body(torch.cat([logits4, guide], 1)))


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
# Under ``decoder="frtm"`` the reuse path has Reuse_VOS' structure (template matching, gate,
# delta generator and translator), so its checkpoints give the same function; parameter
# names are edgevos', :mod:`edgevos.models.upstream` holds the name mapping.
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
