"""What every training run shares: data, backbone, gate-loss schedule, run control."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

# Sequences of ../shared/data/davis2016-train never used for training: validation.
# ``soccerball`` adds a small object (0.6-2.6% of the frame).
HELDOUT = ("bear", "car-turn", "dance-jump", "kite-walk", "motocross-bumps", "soccerball")


def parse_heldout(text: Optional[str]) -> Tuple[str, ...]:
    """``--heldout``: comma-separated sequence names; None: :data:`HELDOUT`."""
    return tuple(s for s in text.split(",") if s) if text is not None else HELDOUT


@dataclass
class BaseTrainConfig:
    out: str = "runs/train"
    davis: Tuple[str, ...] = ()  # DAVIS-layout folders
    heldout: Tuple[str, ...] = HELDOUT
    synthetic: int = 30  # generated sequences added to the real ones
    synthetic_frames: int = 30
    input_size: Tuple[int, int] = (256, 448)
    backbone: str = "mobilenetv2"
    backbone_weights: Optional[str] = None  # torchvision ImageNet state dict
    # reuse-gate loss: max(m2, |P_gate - P_target|)^2, P_target = max(m, IoU), m = m1 * epoch / ep_T
    m1: float = 1.0
    m2: float = 0.0
    ep_T: int = 120
    epoch_samples: int = 400  # samples per "epoch" for the margin schedule
    threads: int = 1
    seed: int = 0
    checkpoint_every: int = 250
    max_frames_per_sequence: int = 0  # 0 = all
    composites: int = 0  # real clips made by pasting other training sequences' objects into a training sequence
    composite_objects: int = 2  # most sequences pasted into one composite clip
