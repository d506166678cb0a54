"""Per-frame run statistics: latency, gate decisions, drops, steady-state FPS.

``RunStats.add(...)`` once per frame; ``summary()`` gives a dict (steady FPS
after ``warmup`` frames, p50/p95/p99 of end-to-end and per-stage latency,
reuse rate, dropped frames, accuracy against ground truth when the source has
it, power when measured), ``format_table`` prints it and ``write_json`` saves
the summary plus every per-frame record.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from edgevos import files


@dataclass
class FrameRecord:
    index: int
    t_end: float  # perf_counter when the frame was fully handled (sinks written)
    e2e_ms: float  # frame delivered by the source -> sinks written
    step_ms: Optional[float] = None  # Session.start/step
    sink_ms: Optional[float] = None
    wait_ms: Optional[float] = None  # time blocked waiting for the source
    stage_ms: Dict[str, float] = field(default_factory=dict)
    reused: Optional[bool] = None
    p_gate: Optional[float] = None
    dropped: int = 0  # frames dropped by the source since the previous record
    j: Optional[float] = None  # mean IoU with ground truth over GT objects


def percentiles(values, qs=(50, 95, 99)) -> Optional[dict]:
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return None
    a = np.asarray(v, dtype=np.float64)
    out = {f"p{q}": round(float(np.percentile(a, q)), 3) for q in qs}
    out["mean"] = round(float(a.mean()), 3)
    out["max"] = round(float(a.max()), 3)
    return out


class RunStats:
    """Collects :class:`FrameRecord` objects and summarises them.

    Memory is bounded for long live runs: at most ``max_records`` records are
    kept (the oldest half is dropped when the limit is hit).  Frame, drop,
    accuracy and reuse totals and the steady FPS are running totals over the
    whole run; only the latency percentiles describe the most recent window
    (``window_frames`` in the summary).
    """

    def __init__(self, warmup: int = 10, max_records: int = 5000):
        self.warmup = max(0, int(warmup))
        self.max_records = max(int(max_records), 2 * self.warmup + 4)
        self.records: List[FrameRecord] = []
        self.t_start = time.perf_counter()
        self.total = 0  # frames added over the whole run
        self.discarded = 0  # oldest records no longer held in memory
        self.dropped_total = 0
        self._j_sum = 0.0
        self._j_n = 0
        self._t_first = self._t_warm = self._t_last = None  # t_end of the first, warm-up boundary, last
        self._reuse = {"all": [0, 0], "steady": [0, 0]}  # [reused, frames with a gate decision]

    def add(self, rec: FrameRecord) -> FrameRecord:
        self.records.append(rec)
        if self.total == 0:
            self._t_first = rec.t_end
        if self.total == self.warmup:
            self._t_warm = rec.t_end
        self._t_last = rec.t_end
        if rec.reused is not None:
            for part in ("all", "steady") if self.total >= self.warmup else ("all",):
                self._reuse[part][0] += bool(rec.reused)
                self._reuse[part][1] += 1
        self.total += 1
        self.dropped_total += int(rec.dropped)
        if rec.j is not None and self.total > 1:  # the first frame's mask is given
            self._j_sum += float(rec.j)
            self._j_n += 1
        if len(self.records) > self.max_records:
            cut = len(self.records) - self.max_records // 2
            del self.records[:cut]
            self.discarded += cut
        return rec

    def __len__(self) -> int:
        return self.total

    # -- summaries -----------------------------------------------------------
    def steady(self) -> List[FrameRecord]:
        """Records after the warm-up (all of them when the run is shorter, or when
        the warm-up frames have already left the bounded window)."""
        if self.discarded:
            return self.records
        return self.records[self.warmup:] if len(self.records) > self.warmup + 1 else self.records

    def _past_warmup(self) -> bool:
        return self.total > self.warmup + 1

    def steady_fps(self) -> Optional[float]:
        """Frames per second over the steady part of the whole run: frames handled after
        the last warm-up frame divided by the wall time since it finished."""
        if self.total < 2:
            return None
        start_t, start = (self._t_warm, self.warmup) if self._past_warmup() else (self._t_first, 0)
        span = self._t_last - start_t
        n = self.total - 1 - start
        return n / span if span > 0 and n > 0 else None

    def reuse_rate(self) -> Optional[float]:
        """Reused frames / frames with a gate decision over the steady part of the whole run."""
        reused, n = self._reuse["steady" if self._past_warmup() else "all"]
        return reused / n if n else None

    def summary(self, power: Optional[dict] = None) -> dict:
        steady = self.steady()
        reuse = self.reuse_rate()
        stages = sorted({k for r in steady for k in r.stage_ms})
        fps = self.steady_fps()
        out = {
            "frames": self.total,
            "warmup": self.warmup,
            "steady_frames": self.total - self.warmup if self._past_warmup() else self.total,
            "fps": round(fps, 3) if fps else None,
            "wall_s": round(self.records[-1].t_end - self.t_start, 3) if self.records else 0.0,
            "reuse_rate": round(reuse, 4) if reuse is not None else None,
            "dropped": int(self.dropped_total),
            "latency_ms": {
                "e2e": percentiles([r.e2e_ms for r in steady]),
                "step": percentiles([r.step_ms for r in steady]),
                "sink": percentiles([r.sink_ms for r in steady]),
                "wait": percentiles([r.wait_ms for r in steady]),
            },
            "stage_ms": {k: percentiles([r.stage_ms.get(k) for r in steady]) for k in stages},
            "mean_j": round(self._j_sum / self._j_n, 4) if self._j_n else None,
            "power": power,
        }
        if self.discarded:
            out["window_frames"] = len(self.records)  # the latency percentiles describe this recent window
        return out

    def status_line(self, window: int = 30) -> str:
        """One line for a live display: FPS over the last ``window`` frames, reuse, latency."""
        r = self.records
        if not r:
            return "waiting for frames..."
        last = r[-window:]
        fps = (len(last) - 1) / (last[-1].t_end - last[0].t_end) if len(last) > 1 and last[-1].t_end > last[0].t_end else 0.0
        reused = [x.reused for x in last if x.reused is not None]
        reuse = f"reuse {100 * sum(reused) / len(reused):3.0f}%" if reused else "reuse  n/a"
        steps = sorted(x.step_ms for x in last if x.step_ms is not None)
        step = f"step p50 {steps[len(steps) // 2]:6.1f} ms" if steps else ""
        drops = self.dropped_total
        return f"frame {r[-1].index:6d} | {fps:6.1f} fps | {reuse} | {step} | e2e {r[-1].e2e_ms:6.1f} ms | dropped {drops}"

    def write_json(self, path, summary: Optional[dict] = None) -> Path:
        """Summary plus per-frame records, written atomically."""
        payload = {
            "summary": summary if summary is not None else self.summary(),
            "frames": [_record_dict(r, self.t_start) for r in self.records],
            "frames_not_logged": self.discarded,  # oldest records beyond max_records
        }
        return files.write_json(path, payload, indent=1, mode=0o644)


def _record_dict(r: FrameRecord, t0: float) -> dict:
    d = asdict(r)
    d["t"] = round(d.pop("t_end") - t0, 6)
    for k in ("e2e_ms", "step_ms", "sink_ms", "wait_ms", "p_gate", "j"):
        if d[k] is not None:
            d[k] = round(float(d[k]), 4)
    d["stage_ms"] = {k: round(float(v), 4) for k, v in d["stage_ms"].items()}
    return d


def _fmt(v, unit="", nd=1) -> str:
    if v is None:
        return "n/a"
    return f"{v:.{nd}f}{unit}"


def format_table(summary: dict) -> str:
    """A table a person can read."""
    rows = [
        ("frames", f"{summary['frames']} ({summary['steady_frames']} after {summary['warmup']} warm-up)"),
        ("steady FPS", _fmt(summary.get("fps"), "", 2)),
        ("reuse rate", _fmt(None if summary.get("reuse_rate") is None else 100 * summary["reuse_rate"], " %")),
        ("dropped frames", str(summary.get("dropped", 0))),
    ]
    if summary.get("mean_j") is not None:
        rows.append(("mean J vs ground truth", f"{summary['mean_j']:.4f}"))
    budget = summary.get("budget")
    if budget:
        achieved = budget.get("achieved_fps")
        rows.append(("FPS budget", f"target {budget['target_fps']:g}, achieved "
                                   f"{'n/a' if achieved is None else f'{achieved:.2f}'}, tau mean "
                                   f"{budget['tau_mean']:.2f} (min {budget['tau_min_seen']:.2f})"))
    power = summary.get("power")
    if power:
        rows.append(("power", f"{power['avg_watts']:.2f} W avg ({power['source']})"))
        rows.append(("energy per frame", _fmt(power.get("energy_per_frame_j"), " J", 3)))
    else:
        rows.append(("power", "n/a (no tegrastats/jtop on this machine)"))
    w = max(len(k) for k, _ in rows)
    lines = [f"{k:<{w}}  {v}" for k, v in rows]
    lat = [("end to end", summary["latency_ms"].get("e2e")), ("step", summary["latency_ms"].get("step")),
           ("sinks", summary["latency_ms"].get("sink")), ("source wait", summary["latency_ms"].get("wait"))]
    lat += [(f"  stage {k}", v) for k, v in summary.get("stage_ms", {}).items()]
    lines.append("")
    lw = max(len(k) for k, _ in lat)
    lines.append(f"{'latency (ms)':<{lw}}  {'p50':>8} {'p95':>8} {'p99':>8} {'mean':>8}")
    for k, v in lat:
        if v is None:
            lines.append(f"{k:<{lw}}  {'n/a':>8}")
        else:
            lines.append(f"{k:<{lw}}  {v['p50']:8.2f} {v['p95']:8.2f} {v['p99']:8.2f} {v['mean']:8.2f}")
    return "\n".join(lines)
