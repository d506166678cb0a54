"""ImageNet backbones exposing features at strides 4/8/16/32.

Module and parameter names follow torchvision exactly, so a torchvision state
dict (``resnet18-f37072fd.pth``, ``mobilenet_v2-b0353104.pth``) loads strictly
without torchvision installed.  Each backbone is split at stride 8 into
``low`` (image -> f4, f8) and ``high`` (f8 -> f16, f32), the two encoder stages
of the reuse gate: reused frames run only ``low``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import torch
from torch import nn

from edgevos.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalization() -> dict:
    """What a bundle manifest records about a stage's image input (normalised inside the stage)."""
    return {
        "mean": [m * 255 for m in IMAGENET_MEAN],
        "std": [s * 255 for s in IMAGENET_STD],
        "input": "RGB uint8 HxWx3 resized to input_size, as float32 (1,3,H,W) in 0..255",
    }


# ----------------------------------------------------------------------------- ResNet18
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    channels = (64, 128, 256, 512)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))

    def forward_low(self, x) -> Tuple[torch.Tensor, torch.Tensor]:
        f4 = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))  # (B, 64, H/4, W/4)
        return f4, self.layer2(f4)  # (B, 128, H/8, W/8)

    def forward_high(self, f8) -> Tuple[torch.Tensor, torch.Tensor]:
        f16 = self.layer3(f8)
        return f16, self.forward_top(f16)

    def forward_top(self, f16) -> torch.Tensor:
        return self.layer4(f16)

    ignored_keys = ("fc.",)


# ----------------------------------------------------------------------------- MobileNetV2
class ConvBNReLU(nn.Sequential):
    def __init__(self, cin, cout, k=3, stride=1, groups=1):
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        layers: List[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU(cin, hidden, k=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (width 1.0) without the last 1x1 conv and the classifier."""

    channels = (24, 32, 96, 320)
    # (expand t, out c, repeats n, stride s) from the MobileNetV2 paper
    settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self):
        super().__init__()
        layers: List[nn.Module] = [ConvBNReLU(3, 32, stride=2)]
        cin = 32
        for t, c, n, s in self.settings:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.features = nn.Sequential(*layers)  # features[0..17]

    def forward_low(self, x):
        f4 = self.features[:4](x)  # (B, 24, H/4, W/4)
        return f4, self.features[4:7](f4)  # (B, 32, H/8, W/8)

    def forward_high(self, f8):
        f16 = self.features[7:14](f8)  # (B, 96, H/16, W/16)
        return f16, self.forward_top(f16)

    def forward_top(self, f16):
        return self.features[14:18](f16)  # (B, 320, H/32, W/32)

    ignored_keys = ("classifier.", "features.18.")


BACKBONES = {"resnet18": ResNet18, "mobilenetv2": MobileNetV2}


def build_backbone(name: str) -> nn.Module:
    try:
        return BACKBONES[name]()
    except KeyError:
        raise InputError(f"unknown backbone '{name}': choose one of {sorted(BACKBONES)}") from None


def load_torchvision_weights(backbone: nn.Module, path) -> None:
    """Load a torchvision-format ImageNet state dict strictly (classifier keys ignored)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"backbone weights '{path}' not found: pass a torchvision state dict "
            f"(e.g. mobilenet_v2-b0353104.pth or resnet18-f37072fd.pth)"
        )
    from edgevos.models.weights import safe_load

    state = safe_load(path, "backbone weights", "Pass the torchvision ImageNet state dict of this backbone "
                                                "from a source you trust")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith(backbone.ignored_keys)}
    result = backbone.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise InputError(
            f"'{path}' does not fit a {type(backbone).__name__}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}; pass the torchvision weights of this backbone"
        )


def freeze(module: nn.Module) -> nn.Module:
    """Frozen as in FRTM: no gradients, BatchNorm statistics fixed."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def backbone_channels(name: str) -> Dict[str, int]:
    c = BACKBONES[name].channels
    return {"f4": c[0], "f8": c[1], "f16": c[2], "f32": c[3]}
