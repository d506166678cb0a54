"""SlowFast-VOS from 2D ImageNet weights, and freezing (see :mod:`edgevos.models.slowfast`): the
2D weights inflated into the slow pathway so that it starts as the 2D network per frame, and
``requires_grad`` per freezing option."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List

import torch

from edgevos.errors import InputError
from edgevos.models.backbones import build_backbone, load_torchvision_weights
from edgevos.models.slowfast_layers import BasicBlock3d

if TYPE_CHECKING:  # the model's module imports this one
    from edgevos.models.slowfast import SlowFastVOS

FREEZE = ("none", "backbone", "slowfast")


def inflate_from_2d(model: SlowFastVOS, state2d: Dict[str, torch.Tensor]) -> List[str]:
    """Copy 2D ImageNet weights into the slow pathway; returns the names copied exactly (frozen by "backbone").

    Temporal kernels get the 2D kernel at the *current-frame* tap and zeros at
    past taps (with causal convs this is what makes the slow pathway equal the
    2D network per frame); widened inputs (lateral channels) get zero weights;
    a projection shortcut added because of widening starts as ``[I | 0]``.
    """
    exact = []
    own = model.slow.state_dict()
    with torch.no_grad():
        for name, target in own.items():
            if name not in state2d:
                continue
            src = state2d[name].to(target.dtype)
            if target.dim() == 5 and src.dim() == 4:
                new = torch.zeros_like(target)
                new[:, :src.shape[1], -1] = src
                if target.shape[2] == 1 and target.shape[1] == src.shape[1]:
                    exact.append(name)
            elif target.shape == src.shape:
                new = src.clone()
                exact.append(name)
            else:
                raise InputError(f"2D weight '{name}' {tuple(src.shape)} does not fit the slow pathway {tuple(target.shape)}")
            target.copy_(new)
        # projection shortcuts that exist only because of widened inputs (resnet18 layer1.0)
        for name, module in model.slow.named_modules():
            if isinstance(module, BasicBlock3d) and module.downsample is not None and f"{name}.downsample.0.weight" not in state2d:
                w = module.downsample[0].weight
                w.zero_()
                c = w.shape[0]
                w[:, :c, 0, 0, 0] = torch.eye(c)
                bn = module.downsample[1]
                bn.weight.fill_(1.0)
                bn.bias.zero_()
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
    return ["slow." + n for n in exact]


def load_slow_weights(model: SlowFastVOS, path) -> None:
    """Load a torchvision ImageNet state dict (strict, via the 2D backbone) and inflate it into the slow pathway."""
    ref = build_backbone(model.config.backbone)
    load_torchvision_weights(ref, path)
    exact = inflate_from_2d(model, ref.state_dict())
    model.exact_2d = set(exact)
    apply_freeze(model, model.config.freeze)


def exact_2d_names(model: SlowFastVOS) -> set:
    """Slow pathway tensors whose shape equals the 2D backbone's (plain copies of ImageNet weights)."""
    if model.exact_2d:
        return model.exact_2d
    ref = build_backbone(model.config.backbone).state_dict()
    out = set()
    for name, v in model.slow.state_dict().items():
        r = ref.get(name)
        if r is None:
            continue
        if v.shape == r.shape or (v.dim() == 5 and v.shape[2] == 1 and v.shape[:2] == r.shape[:2] and v.shape[3:] == r.shape[2:]):
            out.add("slow." + name)
    model.exact_2d = out
    return out


def apply_freeze(model: SlowFastVOS, freeze: str) -> None:
    """Set requires_grad per the freezing option (see the module docstring)."""
    if freeze not in FREEZE:
        raise InputError(f"unknown freeze option '{freeze}': choose one of {list(FREEZE)}")
    if freeze == "none":
        frozen = set()
    elif freeze == "backbone":
        frozen = exact_2d_names(model)
    else:
        frozen = {n for n in model.state_dict() if n.split(".")[0] in ("slow", "fast", "laterals")}
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    model.frozen = frozen
