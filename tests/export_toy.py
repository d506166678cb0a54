"""A tiny two-stage model family for testing the export machinery on its own.

``encoder``: image -> feat (stride 2) with a residual Add; ``head``: feat + previous
soft mask -> logits at image size.  The step program is torch-free and runs on
any Backend, like the real families' programs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgevos.stages import StageSpec, TensorSpec

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass(frozen=True)
class ToyConfig:
    width: int = 8


def toy_specs(h: int, w: int, c: int = 8):
    return [
        StageSpec(
            "encoder",
            (TensorSpec("image", (1, 3, h, w)),),
            (TensorSpec("feat", (1, c, h // 2, w // 2)),),
            "image -> stride-2 features",
        ),
        StageSpec(
            "head",
            (TensorSpec("feat", (1, c, h // 2, w // 2)), TensorSpec("prev", (1, 1, h // 2, w // 2))),
            (TensorSpec("logits", (1, 1, h, w)),),
            "features + previous soft mask -> logits",
        ),
    ]


def build_toy(h: int = 32, w: int = 48, c: int = 8, seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1), nn.ReLU())
            self.conv1 = nn.Conv2d(c, c, 3, 1, 1)
            self.conv2 = nn.Conv2d(c, c, 3, 1, 1)

        def forward(self, image):
            x = self.stem(image)
            y = self.conv2(torch.relu(self.conv1(x)))
            return torch.relu(x + y)

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.mix = nn.Sequential(nn.Conv2d(c + 1, c, 3, 1, 1), nn.ReLU())
            self.out = nn.Conv2d(c, 1, 1)

        def forward(self, feat, prev):
            x = self.mix(torch.cat([feat, prev], 1))
            x = self.out(x)
            return nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)

    modules = {"encoder": Encoder().eval(), "head": Head().eval()}
    return modules, toy_specs(h, w, c)


class ToyResult:
    def __init__(self, mask, prob):
        self.mask = mask
        self.prob = prob


class ToyProgram:
    """Host logic: normalise, encode, decode with the previous soft mask."""

    def __init__(self, backend):
        self.backend = backend
        spec = backend.spec("encoder").inputs[0]
        self.h, self.w = spec.shape[2], spec.shape[3]
        self.prev = None

    def _image(self, frame):
        x = (frame.astype(np.float32) / 255.0 - MEAN) / STD
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def start(self, frame, mask):
        self.prev = (mask[::2, ::2] > 0).astype(np.float32)[None, None]
        return ToyResult(mask > 0, None)

    def step(self, frame):
        feat = self.backend.run("encoder", {"image": self._image(frame)})["feat"]
        logits = self.backend.run("head", {"feat": feat, "prev": self.prev})["logits"]
        prob = 1.0 / (1.0 + np.exp(-logits[0, 0]))
        self.prev = prob[::2, ::2][None, None].astype(np.float32)
        return ToyResult(prob > 0.5, prob)


class ToySequence:
    """A moving bright square on a textured background (frames RGB uint8)."""

    def __init__(self, name="toy", n=6, h=32, w=48, seed=0):
        self.name, self.n, self.h, self.w = name, n, h, w
        rng = np.random.default_rng(seed)
        self.bg = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)

    def __len__(self):
        return self.n

    def mask(self, i):
        m = np.zeros((self.h, self.w), np.uint8)
        x = 4 + 2 * i
        m[8:20, x : x + 12] = 1
        return m

    def frame(self, i):
        f = self.bg.copy()
        f[self.mask(i) > 0] = (230, 200, 40)
        return f
