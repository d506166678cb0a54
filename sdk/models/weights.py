"""Checkpoints: shipped defaults by name, user files by path.

A checkpoint is ``{"family", "config", "state_dict", "meta"}`` saved with
``torch.save``; it is always loaded with ``weights_only=True`` (never unpickled).
Shipped checkpoints live in ``edgevos/weights/<family>_<name>.pt`` (fp16 storage).
"""
from __future__ import annotations

from pathlib import Path

from edgevos.errors import InputError
from edgevos.files import replacing

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def shipped(family: str):
    return sorted(p.stem[len(family) + 1:] for p in WEIGHTS_DIR.glob(f"{family}_*.pt"))


def resolve(family: str, weights) -> Path:
    p = Path(str(weights))
    if p.suffix in (".pt", ".pth") or p.exists():
        if not p.is_file():
            raise InputError(f"weights file '{p}' not found: pass an existing checkpoint or a shipped name {shipped(family)}")
        return p
    candidate = WEIGHTS_DIR / f"{family}_{weights}.pt"
    if not candidate.is_file():
        raise InputError(
            f"no shipped {family} weights named '{weights}': available {shipped(family) or 'none'}; "
            f"or pass a checkpoint path"
        )
    return candidate


def safe_load(path, what: str, fix: str, safe_globals=()):
    """``torch.load(weights_only=True)`` with errors that say what happened: a file with
    Python objects beyond tensors and plain containers is refused (its code never runs;
    ``fix`` says what to do instead); anything unreadable names the file.
    ``safe_globals``: extra (object, name) pairs allowed while unpickling."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's text suggests weights_only=False, i.e. running the file's code: never do that
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"refused to load {what} '{path}': it holds Python objects other than tensors and plain "
            f"containers ({first}); its code was never executed. {fix}"
        ) from None
    except Exception as exc:
        raise InputError(f"cannot load {what} '{path}': {exc}. {fix}") from exc


def load_checkpoint(family: str, weights) -> dict:
    import torch

    path = resolve(family, weights)
    ckpt = safe_load(path, "checkpoint",
                     "Use a state-dict checkpoint saved by edgevos (edgevos.models.weights.save_checkpoint) "
                     "from a source you trust")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise InputError(f"'{path}' is not an edgevos checkpoint (no 'state_dict')")
    if ckpt.get("family", family) != family:
        raise InputError(f"'{path}' is a {ckpt.get('family')} checkpoint, not {family}")
    return ckpt


def checkpoint_config(family: str, weights, input_size, overrides: dict):
    """(checkpoint or None, input size, config overrides) for a builder: a checkpoint's saved
    config under the caller's ``overrides``; ``input_size`` None means the size it was trained at."""
    if weights is None:
        return None, input_size, dict(overrides)
    ckpt = load_checkpoint(family, weights)
    saved = dict(ckpt.get("config", {}))
    trained = saved.pop("input_size", None)
    if input_size is None and trained is not None:
        input_size = trained
    return ckpt, input_size, {**saved, **overrides}


def save_checkpoint(path, family: str, model, meta: dict | None = None, half: bool = False) -> Path:
    import dataclasses

    import torch

    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    cfg = dataclasses.asdict(model.config)
    path = Path(path)
    with replacing(path) as tmp:
        torch.save({"family": family, "config": cfg, "state_dict": state, "meta": meta or {}}, tmp)
    return path
