"""A toy model family, file 1 of 3: the PyTorch model (one stage) and its builder.

With ``toy_family_program.py`` (the torch-free step program) and ``toy_family_train.py``
(``edgevos train toy``: options, TrainConfig, trainer) this is a whole family;
``tests/test_new_family.py`` adds it to the family registry and trains and benchmarks it
through the generic paths, changing no other file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
from torch import nn

from edgevos.models.weights import checkpoint_config
from edgevos.stages import StageSpec, TensorSpec


@dataclass(frozen=True)
class ToyNetConfig:
    input_size: Tuple[int, int] = (64, 96)
    width: int = 4


class ToyNet(nn.Module):
    """``segment``: image (RGB 0..255) + the previous probability map (stride 4) -> logits (stride 4)."""

    def __init__(self, cfg: ToyNetConfig):
        super().__init__()
        self.config = cfg
        self.normalization = {"mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0], "input": "RGB uint8"}
        self.net = nn.Sequential(nn.Conv2d(4, cfg.width, 3, 1, 1), nn.ReLU(), nn.Conv2d(cfg.width, 1, 1))

    def forward(self, image, prev):
        return self.net(torch.cat([nn.functional.avg_pool2d(image / 255.0, 4), prev], 1))

    def stage_modules(self):
        return {"segment": self}

    def stage_specs(self):
        h, w = self.config.input_size
        return [StageSpec("segment", (TensorSpec("image", (1, 3, h, w)), TensorSpec("prev", (1, 1, h // 4, w // 4))),
                          (TensorSpec("logits", (1, 1, h // 4, w // 4)),), "image + previous mask -> logits")]


def build_toynet(weights=None, input_size=None, **overrides) -> ToyNet:
    ckpt, input_size, overrides = checkpoint_config("toy", weights, input_size, overrides)
    model = ToyNet(ToyNetConfig(input_size=tuple(input_size or ToyNetConfig.input_size), **overrides))
    if ckpt is not None:
        model.load_state_dict(ckpt["state_dict"])
    return model.eval()
