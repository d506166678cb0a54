"""SlowFast-VOS's temporal layers and pathways (see :mod:`edgevos.models.slowfast`): a causal
temporal convolution that runs on a clip, on one step with its histories, or on a first frame
as a constant past; ResNet18 and MobileNetV2 pathways built from it at a channel width ratio;
the fast -> slow lateral."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


class StepContext:
    """How temporal convs see time during one call: clip, step (with histories) or init."""

    def __init__(self, mode: str, hist: Optional[Dict[str, torch.Tensor]] = None):
        self.mode = mode
        self.hist = hist or {}
        self.new: Dict[str, torch.Tensor] = {}


class TemporalConv(nn.Module):
    """A causal (k_t, k, k) convolution on time-major tensors (T, C, H, W).

    * clip mode: all T steps; the past before the clip is the first step
      repeated; time stride ``t_stride`` (laterals) keeps steps 0, t_stride, ...
    * step mode: ``x`` is the current step (1, C, H, W), the context supplies the
      previous ``k_t - 1`` inputs; only the current output is computed and ``x``
      is recorded for the host's ring buffer.
    * init mode: as step mode with the current input as the whole past.

    ``as_conv2d`` computes the Conv3d as a sum of per-time-step Conv2d.
    ``partial`` (step and init modes, ``groups == 1``): the ring holds this layer's per-frame
    *partial products* instead of its inputs.  A frame's input meets the k_t kernel slices
    once, in one Conv2d with ``k_t * C_out`` outputs; the current output is the current
    frame's last slice plus, from each of the previous ``k_t - 1`` frames, the slice that
    lines up with it.  The same sum as the Conv3d, but a strided layer on a large input (the
    fast pathway's conv1) no longer re-reads ``k_t`` full-resolution frames every step.
    ``stacked`` (step and init modes, ``groups == 1``): the window's k_t time steps stacked as
    channels meet the kernel reshaped to (C_out, k_t * C_in, k, k) in one Conv2d: the same sum,
    without the Conv3d's layout transposes, and a Conv2d that BatchNorm folds into.
    k_t = 1 is an ordinary Conv2d.  Parameter names (``weight``, ``bias``) follow
    ``nn.Conv2d`` so inflated torchvision weights map by name.
    """

    def __init__(self, cin, cout, k_t=1, k=1, stride=1, padding=None, groups=1, bias=False, t_stride=1, key=""):
        super().__init__()
        self.k_t, self.k, self.stride, self.groups, self.t_stride = int(k_t), int(k), int(stride), int(groups), int(t_stride)
        self.padding = (k - 1) // 2 if padding is None else int(padding)
        self.weight = nn.Parameter(torch.empty(cout, cin // groups, self.k_t, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        fan_in = (cin // groups) * k * k * self.k_t
        nn.init.kaiming_uniform_(self.weight.view(cout, -1), a=math.sqrt(5))
        if self.bias is not None:
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        self.key = key
        self.ctx: Optional[StepContext] = None
        self.as_conv2d = False
        self.partial = False
        self.stacked = False

    def _conv2d(self, x, j):
        return F.conv2d(x, self.weight[:, :, j], self.bias if j == self.k_t - 1 else None, self.stride,
                        self.padding, 1, self.groups)

    def forward(self, x):
        if self.k_t == 1:
            return self._conv2d(x, 0)
        ctx = self.ctx
        if ctx is None or ctx.mode == "clip":
            return self._clip(x)
        if self.partial:
            return self._partial(x, ctx)
        past = ctx.hist[self.key] if ctx.mode == "step" else x.expand(self.k_t - 1, *x.shape[1:])
        ctx.new[self.key] = x
        window = torch.cat([past, x], 0)  # (k_t, C, H, W), oldest first
        if self.stacked and self.groups == 1:
            kt, c = window.shape[:2]
            w = self.weight.permute(0, 2, 1, 3, 4).reshape(self.weight.shape[0], kt * c, self.k, self.k)
            return F.conv2d(window.reshape(1, kt * c, *window.shape[2:]), w, self.bias, self.stride, self.padding)
        if self.as_conv2d:
            out = self._conv2d(window[0:1], 0)
            for j in range(1, self.k_t):
                out = out + self._conv2d(window[j:j + 1], j)
            return out
        y = F.conv3d(window.transpose(0, 1)[None], self.weight, self.bias, (1, self.stride, self.stride),
                     (0, self.padding, self.padding), 1, self.groups)  # (1, C', 1, H', W')
        return y[0].transpose(0, 1)

    def _partial(self, x, ctx):
        if self.groups != 1:
            raise ValueError("partial-product streaming needs groups == 1")
        kt, cout = self.k_t, self.weight.shape[0]
        w = self.weight.permute(2, 0, 1, 3, 4).reshape(kt * cout, self.weight.shape[1], self.k, self.k)
        p = F.conv2d(x, w, None, self.stride, self.padding)  # slice j (channels j*C_out ..) = kernel slice j * x
        kept = p[:, :(kt - 1) * cout]  # the slices later steps read
        ctx.new[self.key] = kept
        past = ctx.hist[self.key] if ctx.mode == "step" else kept.expand(kt - 1, *kept.shape[1:])
        out = p[:, (kt - 1) * cout:]
        for i in range(kt - 1):  # past[i] is the frame kt - 1 - i steps back: its slice i meets this step
            out = out + past[i:i + 1, i * cout:(i + 1) * cout]
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def _clip(self, x):  # x: (T, C, H, W)
        xp = torch.cat([x[:1].expand(self.k_t - 1, *x.shape[1:]), x], 0)
        n = (x.shape[0] - 1) // self.t_stride + 1
        if self.as_conv2d:
            out = None
            for j in range(self.k_t):
                y = self._conv2d(xp[j:j + (n - 1) * self.t_stride + 1:self.t_stride], j)
                out = y if out is None else out + y
            return out
        y = F.conv3d(xp.transpose(0, 1)[None], self.weight, self.bias, (self.t_stride, self.stride, self.stride),
                     (0, self.padding, self.padding), 1, self.groups)
        return y[0].transpose(0, 1)


def _width(c: int, w: float) -> int:
    return c if w >= 1 else max(4, int(round(c * w)))


class BasicBlock3d(nn.Module):
    """ResNet BasicBlock whose conv1 may be temporal; torchvision names."""

    def __init__(self, cin, cout, stride, k_t, key):
        super().__init__()
        self.conv1 = TemporalConv(cin, cout, k_t, 3, stride, key=key)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = TemporalConv(cout, cout, 1, 3)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(TemporalConv(cin, cout, 1, 1, stride, padding=0), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNetPathway(nn.Module):
    """ResNet18 layout at a channel width ratio; stem = conv1..maxpool (stride 4), stages layer1..layer4."""

    blocks = (2, 2, 2, 2)
    base = (64, 128, 256, 512)

    def __init__(self, in_ch, width, kernels: Dict[str, int], extra: Sequence[int], prefix: str):
        super().__init__()
        c = [_width(b, width) for b in self.base]
        self.conv1 = TemporalConv(in_ch, c[0], kernels.get("conv1", 1), 7, 2, 3, key=f"{prefix}_conv1")
        self.bn1 = nn.BatchNorm2d(c[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = c[0]
        for i, (cout, n) in enumerate(zip(c, self.blocks)):
            layer = []
            for b in range(n):
                name = f"layer{i + 1}.{b}.conv1"
                layer.append(BasicBlock3d(cin + (extra[i] if b == 0 else 0), cout, 2 if (i and not b) else 1,
                                          kernels.get(name, 1), f"{prefix}_{name.replace('.', '_')}"))
                cin = cout
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.channels = [c[0]] + c  # stem, res2..res5

    @staticmethod
    def candidates(stage_from: int):
        """Block convs that may get a temporal kernel, in network order, from res{stage_from} on."""
        return [f"layer{i}.{b}.conv1" for i in range(stage_from - 1, 5) for b in range(2)]

    stem_conv = "conv1"

    def stem(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def stage(self, i, x):  # i = 0..3 -> res2..res5
        return getattr(self, f"layer{i + 1}")(x)


class ConvBNAct(nn.Sequential):
    def __init__(self, cin, cout, k=3, stride=1, groups=1, k_t=1, key=""):
        super().__init__(TemporalConv(cin, cout, k_t, k, stride, groups=groups, key=key), nn.BatchNorm2d(cout),
                         nn.ReLU6(inplace=True))


class InvertedResidual3d(nn.Module):
    def __init__(self, cin, cout, stride, expand, k_t, key, hidden_from=None):
        super().__init__()
        hidden = int(round((hidden_from or cin) * expand))
        self.use_res = stride == 1 and cin == cout
        layers: List[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(cin, hidden, 1, k_t=k_t, key=key))
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden), TemporalConv(hidden, cout, 1, 1),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetPathway(nn.Module):
    """MobileNetV2 layout (torchvision names) at a channel width ratio.

    stem = features[0:2] (stride 2), res2 = [2:4] (4), res3 = [4:7] (8),
    res4 = [7:14] (16), res5 = [14:18] (32).
    """

    settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    bounds = (0, 2, 4, 7, 14, 18)
    first_of_stage = (2, 4, 7, 14)

    def __init__(self, in_ch, width, kernels: Dict[str, int], extra: Sequence[int], prefix: str):
        super().__init__()
        cin = _width(32, width)
        layers: List[nn.Module] = [ConvBNAct(in_ch, cin, 3, 2, k_t=kernels.get("features.0.0", 1), key=f"{prefix}_features_0_0")]
        n_idx = 1
        for t, c, n, s in self.settings:
            cout = _width(c, width)
            for i in range(n):
                name = f"features.{n_idx}.conv.0.0"
                add = extra[self.first_of_stage.index(n_idx)] if n_idx in self.first_of_stage else 0
                # widened inputs (lateral channels) keep the 2D network's hidden width
                layers.append(InvertedResidual3d(cin + add, cout, s if i == 0 else 1, t, kernels.get(name, 1),
                                                 f"{prefix}_features_{n_idx}", hidden_from=cin))
                cin = cout
                n_idx += 1
        self.features = nn.Sequential(*layers)
        self.channels = [_width(16, width), _width(24, width), _width(32, width), _width(96, width), _width(320, width)]

    @classmethod
    def candidates(cls, stage_from: int):
        first = cls.bounds[stage_from - 1]
        return [f"features.{i}.conv.0.0" for i in range(max(first, 2), 18)]

    stem_conv = "features.0.0"

    def stem(self, x):
        return self.features[0:2](x)

    def stage(self, i, x):
        return self.features[self.bounds[i + 1]:self.bounds[i + 2]](x)


PATHWAYS = {"resnet18": ResNetPathway, "mobilenetv2": MobileNetPathway}


def allocate_kernels(candidates: Sequence[Tuple[str, int]], budget: int) -> Dict[str, int]:
    """Paper kernel sizes in network order until ``budget`` time steps of lag are used."""
    out = {}
    for name, k in candidates:
        if budget <= 0:
            break
        k = min(k, budget + 1)
        out[name] = k
        budget -= k - 1
    return out


class Lateral(nn.Module):
    """Fast -> slow fusion: Conv3d (k, 1, 1), stride (alpha, 1, 1), 2x fast channels, BN, ReLU."""

    def __init__(self, cf, k_t, alpha, key):
        super().__init__()
        self.conv = TemporalConv(cf, 2 * cf, k_t, 1, t_stride=alpha, key=key)
        self.bn = nn.BatchNorm2d(2 * cf)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))
