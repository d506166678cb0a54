"""SlowFast-VOS's decoder and heads (see :mod:`edgevos.models.slowfast`): reference prototypes,
the multi-scale mask decoder, the reuse decoder and the gate on the fast pathway."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgevos.models.gfrtm_heads import ReuseGate
from edgevos.models.gfrtm_layers import RRB, conv


class Reference(nn.Module):
    """Reference frame + mask -> fg/bg prototypes of a stride-16 embedding."""

    def __init__(self, c16, dim):
        super().__init__()
        self.embed = nn.Sequential(conv(c16, dim, 1), nn.Conv2d(dim, dim, 1))

    def template(self, f16, mask16):
        e = self.embed(f16)
        fg = (e * mask16).sum((2, 3)) / (mask16.sum((2, 3)) + 1.0)
        bg = (e * (1 - mask16)).sum((2, 3)) / ((1 - mask16).sum((2, 3)) + 1.0)
        return torch.cat([fg, bg], 1)  # (1, 2E)

    def similarity(self, f16, template):
        e = F.normalize(self.embed(f16), dim=1)
        n = e.shape[1]
        fg = F.normalize(template[:, :n], dim=1)[:, :, None, None]
        bg = F.normalize(template[:, n:], dim=1)[:, :, None, None]
        return torch.cat([(e * fg).sum(1, keepdim=True), (e * bg).sum(1, keepdim=True)], 1)  # (1, 2, H/16, W/16)


class MaskDecoder(nn.Module):
    """Multi-scale decoder: deep levels (32, 16) -> r8, shallow levels (8, 4) -> stride-4 logits.

    Conditioning: the previous predicted mask at every level and, in
    semi-supervised mode, the similarity to the reference prototypes at stride 16.
    """

    def __init__(self, c4, c8, c16, c32, d, d4, n_cond16):
        super().__init__()
        self.reduce32 = conv(c32, d, 1)
        self.level16 = conv(c16 + n_cond16, d)
        self.rrb16 = RRB(d)
        self.level8 = conv(c8 + 1, d)
        self.rrb8 = RRB(d)
        self.level4 = conv(c4 + 1, d4)
        self.project4 = conv(d, d4, 1, relu=False)
        self.fuse4 = conv(d4, d4)
        self.predict = nn.Conv2d(d4, 1, 3, 1, 1)

    @staticmethod
    def up(x, ref):
        return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)

    def deep(self, f16, f32, cond16):
        x = self.level16(torch.cat([f16, cond16], 1)) + self.up(self.reduce32(f32), f16)
        return self.rrb16(x)  # r8 source, (1, D, H/16, W/16)

    def shallow(self, f4, f8, r16, prev4):
        prev8 = F.avg_pool2d(prev4, 2)
        x = self.rrb8(self.level8(torch.cat([f8, prev8], 1)) + self.up(r16, f8))  # (1, D, H/8, W/8)
        return self.head(f4, x, prev4), x

    def head(self, f4, x8, prev4):
        x = self.fuse4(F.relu(self.level4(torch.cat([f4, prev4], 1)) + self.project4(self.up(x8, f4))))
        return self.predict(x)  # (1, 1, H/4, W/4)


class ReuseDecoder(nn.Module):
    """Reused frames: the last computed r8, translated by the current fast features, then the stride-4 head.

    ``blend``: the head also predicts, per stride-4 pixel, a weight w that mixes its own logits with
    the previous frame's (the logit of ``prev4``): ``w * logit(prev4) + (1 - w) * own``, so a reused
    frame can keep the previous mask where the thin fast features are unsure.  The weight's conv
    starts at zero weights and bias -2 (w = 0.12): a head trained without it starts near its function.
    """

    def __init__(self, cf4, cf8, d, d4, blend: bool = False):
        super().__init__()
        self.translate = nn.Sequential(conv(d + cf8 + 1, d), conv(d, d, 3, dilation=2), conv(d, d, relu=False))
        self.level4 = conv(cf4 + 1, d4)
        self.project4 = conv(d, d4, 1, relu=False)
        self.fuse4 = conv(d4, d4)
        self.predict = nn.Conv2d(d4, 1, 3, 1, 1)
        self.blend = None
        if blend:
            self.blend = nn.Conv2d(d4, 1, 3, 1, 1)
            nn.init.zeros_(self.blend.weight)
            nn.init.constant_(self.blend.bias, -2.0)

    def forward(self, fast4, fast8, r8_prev, prev4):
        prev8 = F.avg_pool2d(prev4, 2)
        x8 = F.relu(r8_prev + self.translate(torch.cat([r8_prev, fast8, prev8], 1)))
        up = F.interpolate(self.project4(x8), size=fast4.shape[-2:], mode="bilinear", align_corners=False)
        x = self.fuse4(F.relu(self.level4(torch.cat([fast4, prev4], 1)) + up))
        if self.blend is None:
            return self.predict(x)
        w = torch.sigmoid(self.blend(x))
        p = prev4.clamp(1e-4, 1 - 1e-4)
        return w * torch.log(p / (1 - p)) + (1 - w) * self.predict(x)


class SlowGate(nn.Module):
    """P(reuse) from the fast stride-8 features now vs at the last computed frame, and the previous mask."""

    def __init__(self, cf8, dim=32):
        super().__init__()
        self.project = conv(2 * cf8 + 1, dim, 3)
        self.gate = ReuseGate(dim)

    def forward(self, fast8, fast8_prev, prev4):
        prev8 = F.avg_pool2d(prev4, 2)
        return self.gate(self.project(torch.cat([fast8, (fast8 - fast8_prev).abs(), prev8], 1)))
