"""Torchvision backbone weights given by path (``--backbone-weights``): checked with the
safe loader (:func:`edgevos.models.weights.safe_load`) before any work starts."""
from __future__ import annotations

from pathlib import Path

from edgevos.errors import InputError

FIX = ("Pass the torchvision ImageNet state dict of the backbone (mobilenet_v2-b0353104.pth or "
       "resnet18-f37072fd.pth) from a source you trust")


def check_backbone_weights(path) -> str:
    """Load ``path`` with the safe loader and check it is a state dict of tensors; returns
    the path.  A file holding other Python objects is refused (its code never runs)."""
    import warnings

    from edgevos.models.weights import safe_load

    p = Path(str(path))
    if not p.is_file():
        raise InputError(f"backbone weights '{path}' not found. {FIX}")
    with warnings.catch_warnings():  # torch's notes on pickle protocols say nothing to the user
        warnings.simplefilter("ignore", UserWarning)
        state = safe_load(p, "backbone weights", FIX)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(hasattr(v, "shape") for v in state.values()):
        raise InputError(f"backbone weights '{path}' is not a state dict of tensors. {FIX}")
    return str(path)


def backbone_weights_arg(text: str) -> str:
    """An argparse type: :func:`check_backbone_weights`, refused as a usage error (exit 2)."""
    import argparse

    try:
        return check_backbone_weights(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
