"""One row of ``edgevos bench``: every sequence played through one session, with stage calls
counted, steady-state FPS and latency, J&F where there is ground truth, and energy where power
can be read."""
from __future__ import annotations

from typing import Dict, Optional

from edgevos.bench_data import MemorySource
from edgevos.errors import EdgevosError


class CallCounter:
    """Wraps a backend: counts stage calls (per-object stages run once per object)."""

    def __init__(self, backend):
        self._backend = backend
        self.counts: Dict[str, int] = {}

    def run(self, stage, feeds, out=None):
        self.counts[stage] = self.counts.get(stage, 0) + 1
        return self._backend.run(stage, feeds, out)

    def __getattr__(self, name):
        return getattr(self._backend, name)


class Collect:
    """A sink keeping every predicted mask (for J&F) and the stage calls each frame made."""

    def __init__(self, counter: Optional[CallCounter] = None):
        self.uri, self.frames, self.masks, self.calls = "memory://masks", 0, {}, {}
        self._counter, self._seen = counter, {}

    def write(self, index, rgb, result):
        self.masks[index] = result.mask
        self.frames += 1
        if self._counter is not None:
            now = dict(self._counter.counts)
            self.calls[index] = {k: v - self._seen.get(k, 0) for k, v in now.items() if v - self._seen.get(k, 0)}
            self._seen = now

    def close(self):
        pass


def steady_window(stats):
    """(first steady index, frames after it, seconds) as RunStats.steady_fps counts them."""
    r = stats.records
    if len(r) < 2:
        return 0, 0, 0.0
    start = min(stats.warmup, len(r) - 2) if len(r) > stats.warmup + 1 else 0
    return start, len(r) - 1 - start, r[-1].t_end - r[start].t_end


def run_row(make_session, sequences, warmup: int, power=None, status=None) -> dict:
    """Play every sequence through one session; aggregate steady-state stats, J&F and power."""
    import numpy as np

    from edgevos.metrics import evaluate_sequence
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.stats import percentiles

    session = make_session()
    program = getattr(session, "program", None)
    counter = None
    if program is not None and hasattr(program, "backend"):
        counter = program.backend = CallCounter(program.backend)
    per_call: Dict[str, list] = {}
    calls_per_frame: Dict[str, list] = {}
    steady, frames, n_steady, seconds = [], 0, 0, 0.0
    windows, j_all, f_all, per_seq = [], [], [], []
    if power is not None:
        power.start()
    try:
        for seq in sequences:
            imgs = [seq.frame(i) for i in range(len(seq))]
            gts = [seq.mask(i) for i in range(len(seq))]
            first = np.where(gts[0] == 255, 0, gts[0]).astype(np.uint8)
            gts_run = [first] + [g for g in gts[1:]]
            sink = Collect(counter)
            summary = run_pipeline(MemorySource(seq.name, imgs, gts_run), [sink], session, first_mask=first,
                                   warmup=warmup, status=None)
            stats = summary.stats
            if summary.stopped_by in ("SIGINT", "SIGTERM"):
                raise KeyboardInterrupt
            if summary.error:
                raise EdgevosError(f"{seq.name}: {summary.error}")
            start, n, span = steady_window(stats)
            windows.append((stats.records[start].t_end, stats.records[-1].t_end) if n else None)
            steady += stats.steady()
            for rec in stats.steady():
                calls = sink.calls.get(rec.index, {})
                for k, ms in rec.stage_ms.items():
                    nc = calls.get(k, 1 if counter is None else 0)
                    if nc:
                        per_call.setdefault(k, []).append(ms / nc)
                        calls_per_frame.setdefault(k, []).append(nc)
            frames += len(stats)
            n_steady, seconds = n_steady + n, seconds + span
            j = f = None
            if all(g is not None for g in gts) and len(gts) >= 3:
                preds = [sink.masks.get(i, np.zeros_like(first)) for i in range(len(gts))]
                ev = evaluate_sequence(gts, preds)["stats"]
                js = [s["J-Mean"] for s in ev.values()]
                fs = [s["F-Mean"] for s in ev.values()]
                j_all += js
                f_all += fs
                j, f = float(np.mean(js)), float(np.mean(fs))
            per_seq.append({"sequence": seq.name, "frames": len(stats), "fps": summary.fps,
                            "reuse_rate": summary.reuse_rate, "J": j, "F": f})
            if status:
                status(f"{seq.name}: {summary.fps or 0:.1f} FPS")
    finally:
        if power is not None:
            power.stop()
    reused = [r.reused for r in steady if r.reused is not None]
    stages = []
    for r in steady:
        for k in r.stage_ms:
            if k not in stages:
                stages.append(k)
    jm = float(np.mean(j_all)) if j_all else None
    fm = float(np.mean(f_all)) if f_all else None
    row = {
        "frames": frames,
        "steady_frames": n_steady,
        "fps": n_steady / seconds if seconds > 0 else None,
        "reuse_rate": sum(reused) / len(reused) if reused else None,
        "J&F": (jm + fm) / 2 if jm is not None else None,
        "J": jm,
        "F": fm,
        "latency_ms": {"e2e": percentiles([r.e2e_ms for r in steady]), "step": percentiles([r.step_ms for r in steady])},
        "stage_ms": {k: percentiles([r.stage_ms.get(k) for r in steady]) for k in stages},
        "stage_runs": {k: sum(1 for r in steady if k in r.stage_ms) / max(len(steady), 1) for k in stages},
        # backend stages only: latency of one call, and calls per frame when the stage runs (per object)
        "stage_call_ms": {k: percentiles(v) for k, v in per_call.items() if counter is None or k in counter.counts},
        "stage_calls_per_frame": {k: float(np.mean(v)) for k, v in calls_per_frame.items()
                                  if counter is None or k in counter.counts},
        "sequences": per_seq,
        "avg_watts": None,
        "energy_per_frame_j": None,
        "power_source": None,
    }
    if power is not None and power.available:
        energy, secs = 0.0, 0.0
        for w in windows:
            if w is None:
                continue
            s = power.summary(t0=w[0], t1=w[1])
            if s:
                energy, secs = energy + s["energy_j"], secs + s["seconds"]
        if secs > 0 and n_steady:
            row.update(avg_watts=energy / secs, energy_per_frame_j=energy / n_steady,
                       power_source=(power.summary() or {}).get("source"))
    return row
