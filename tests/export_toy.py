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

    def __init__(self, backend, config=None, tau=1.0, max_reuse=None):
        self.backend = backend
        self.tau, self.max_reuse = tau, max_reuse  # no reuse gate: kept for the Session interface
        spec = backend.spec("encoder").inputs[0]
        self.h, self.w = spec.shape[2], spec.shape[3]
        self.prev = None

    def _image(self, frame):
        import cv2

        self.frame_hw = frame.shape[:2]
        if frame.shape[:2] != (self.h, self.w):
            frame = cv2.resize(frame, (self.w, self.h), interpolation=cv2.INTER_LINEAR)
        x = (frame.astype(np.float32) / 255.0 - MEAN) / STD
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None])

    def start(self, frame, mask):
        import cv2

        m = cv2.resize((mask > 0).astype(np.uint8), (self.w // 2, self.h // 2), interpolation=cv2.INTER_NEAREST)
        self.prev = m.astype(np.float32)[None, None]
        return ToyResult((mask > 0).astype(np.uint8), None)

    def step(self, frame):
        feat = self.backend.run("encoder", {"image": self._image(frame)})["feat"]
        logits = self.backend.run("head", {"feat": feat, "prev": self.prev})["logits"]
        prob = 1.0 / (1.0 + np.exp(-logits[0, 0]))
        self.prev = prob[::2, ::2][None, None].astype(np.float32)
        import cv2

        mask = (prob > 0.5).astype(np.uint8)
        if mask.shape != tuple(self.frame_hw):
            mask = cv2.resize(mask, (self.frame_hw[1], self.frame_hw[0]), interpolation=cv2.INTER_NEAREST)
        return ToyResult(mask, prob)


class ToyModel:
    """The family-contract surface: stage_specs(), stage_modules(), config, normalization."""

    def __init__(self, input_size=(32, 48), width=8):
        self.config = ToyConfig(width)
        self._modules, self._specs = build_toy(input_size[0], input_size[1], width)
        self.normalization = {"mean": (MEAN * 255).tolist(), "std": (STD * 255).tolist(), "input": "RGB uint8"}

    def stage_specs(self):
        return list(self._specs)

    def stage_modules(self):
        return dict(self._modules)


def build_toy_model(weights=None, input_size=(32, 48), **overrides):
    return ToyModel(tuple(input_size), **overrides)


def register_toy_family(monkeypatch):
    """Make ``--family toy`` resolve to this module (for CLI tests)."""
    from edgevos.models import registry

    fam = registry.Family("toy", "toy test family", "export_toy:build_toy_model", "export_toy:ToyProgram")
    monkeypatch.setitem(registry.FAMILIES, "toy", fam)
    return fam


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
