"""The reuse gate's loss, shared by the trainers: ``max(m2, |P_gate - P_target|)^2`` with
``P_target = max(m, IoU(y_{t-n}, y_t))`` and the margin schedule ``m = min(m1, m1 * epoch / ep_T)``."""
from __future__ import annotations


def gate_probability_loss(p_gate, p_target, m2: float):
    import torch

    return torch.clamp((p_gate - p_target).abs(), min=m2).pow(2).mean()


def margin(epoch: float, m1: float, ep_T: int) -> float:
    return min(m1, m1 * epoch / max(ep_T, 1))
