"""FPS budget mode: steer the reuse threshold live so a stream holds a target frame rate
with the least reuse.

The governor watches the period between consecutive frames (everything the loop
does per frame: decode, step, sinks) and moves tau with an integral controller:
below the target it lowers tau (the gate may skip more work), above it raises tau
back towards 1 (compute more frames).  Unlike a fixed frame-skip interval, the
frames it skips are the ones the gate judges safe to reuse; when even tau_min cannot
reach the target, the stream runs as fast as the model allows at tau_min.

    gov = FpsGovernor(target_fps=30)
    for frame in frames:
        session.tau = gov.tau
        r = session.step(frame)
        gov.observe(r.reused)
    gov.summary()   # achieved FPS, reuse rate, tau over time
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from edgevos.errors import InputError


@dataclass
class BudgetRecord:
    frame: int
    tau: float
    fps: float  # smoothed frame rate when tau was chosen
    reused: bool


@dataclass
class FpsGovernor:
    """Integral control of tau on the smoothed frame rate.

    Args:
        target_fps: the frame rate to hold.
        tau_min: the lowest tau it may set (more reuse, less accuracy).
        tau_max: the highest (1 = compute every frame).
        gain: tau change per frame per unit of relative FPS error.
        smoothing: weight of the newest frame period in the moving average.
        deadband: relative FPS surplus within which tau is left alone.
        clock: seconds, monotonic (tests pass a simulated one).
    """

    target_fps: float
    tau_min: float = 0.3
    tau_max: float = 1.0
    gain: float = 0.25
    smoothing: float = 0.15
    deadband: float = 0.03
    clock: Callable[[], float] = time.perf_counter
    tau: float = field(init=False)
    history: List[BudgetRecord] = field(default_factory=list, init=False)
    _last: Optional[float] = field(default=None, init=False)
    _period: Optional[float] = field(default=None, init=False)
    _first: Optional[float] = field(default=None, init=False)

    def __post_init__(self):
        if not self.target_fps or self.target_fps <= 0:
            raise InputError(f"target FPS {self.target_fps}: give a positive frame rate, e.g. --target-fps 30")
        if not 0.0 <= self.tau_min <= self.tau_max <= 1.0:
            raise InputError(f"tau range [{self.tau_min}, {self.tau_max}]: use 0 <= tau_min <= tau_max <= 1")
        self.tau = self.tau_max

    @property
    def fps(self) -> Optional[float]:
        """Smoothed frame rate (None before two frames)."""
        return None if not self._period else 1.0 / self._period

    def observe(self, reused: bool = False) -> float:
        """Call once per frame, after the frame's work; returns the tau for the next frame."""
        now = self.clock()
        if self._first is None:
            self._first = now
        if self._last is not None:
            dt = max(now - self._last, 1e-9)
            self._period = dt if self._period is None else (1 - self.smoothing) * self._period + self.smoothing * dt
            err = (1.0 / self._period - self.target_fps) / self.target_fps
            if err < 0 or err > self.deadband:
                self.tau = min(self.tau_max, max(self.tau_min, self.tau + self.gain * err))
        self.history.append(BudgetRecord(len(self.history), self.tau, self.fps or 0.0, bool(reused)))
        self._last = now
        return self.tau

    def summary(self) -> dict:
        """Achieved FPS (frames over wall time), reuse rate and tau statistics over the run."""
        n = len(self.history)
        elapsed = (self._last - self._first) if n > 1 else 0.0
        taus = [h.tau for h in self.history]
        return {
            "target_fps": self.target_fps,
            "achieved_fps": (n - 1) / elapsed if elapsed > 0 else None,
            "reuse_rate": sum(h.reused for h in self.history) / n if n else 0.0,
            "tau_mean": sum(taus) / n if n else self.tau,
            "tau_min_seen": min(taus) if taus else self.tau,
            "tau_over_time": [round(t, 3) for t in taus[:: max(1, n // 50)]],
        }
