"""G-FRTM-fast's segmentation network blocks (see :mod:`edgevos.models.gfrtm`).

The light decoder's levels (TSE, CAB, RRB, the refinement level and the light stride-4
level), and under ``decoder="frtm"`` the upstream structure: FRTM's segmentation network
(its TSE, RRB with BatchNorm, CAB, levels and bicubic prediction head).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


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
