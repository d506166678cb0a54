"""The reuse gate's loss, shared by the trainers: ``max(m2, |P_gate - P_target|)^2`` with
``P_target = max(m, IoU(y_{t-n}, y_t))`` and the margin schedule ``m = min(m1, m1 * epoch / ep_T)``
(the paper's), or the binary cross-entropy against the soft target, whose gradient grows as P_gate
nears 0 or 1, so the gate still separates a target of 0.92 from 0.99 (where the squared error is flat)."""
from __future__ import annotations

GATE_LOSSES = ("squared", "bce")


def gate_probability_loss(p_gate, p_target, m2: float, kind: str = "squared"):
    import torch

    if kind == "bce":
        eps = 1e-6
        return torch.nn.functional.binary_cross_entropy(p_gate.clamp(eps, 1 - eps), p_target.to(p_gate.dtype))
    return torch.clamp((p_gate - p_target).abs(), min=m2).pow(2).mean()


def margin(epoch: float, m1: float, ep_T: int) -> float:
    return min(m1, m1 * epoch / max(ep_T, 1))
