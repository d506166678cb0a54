"""Per-frame cost of ring-buffer operations, alone and inside a real streaming step.

Two measurements, both printed as tables and written to one JSON file:

* **synthetic** (always): push + the windows a streaming model reads, at fixed
  item shapes, for each storage layout (``mirrored``: shared memory mapped
  twice, nothing ever moves; ``sliding``: block copy when the storage end is
  reached).  Hot caches: a lower bound.
* **in situ** (``--bundle``, a SlowFast bundle): ``Session.step`` over real
  frames; the step program times its ring work (reserve the slots the stages
  write into, take the history windows, commit; with mirrored rings a lookup in
  the per-frame binding table built at ``start``) as the ``rings`` section of
  each step.  One session per layout, stepped in turn on the same frames, so
  machine load hits both alike.  The share is mean ring time / mean step time;
  the issue's target is < 1 %.

    python benchmarks/bench_ring.py [--synthetic-frames 300] [--out runs/bench_ring.json]
    python benchmarks/bench_ring.py --bundle runs/bundle_slowfast --precision int8-cpu
        --tau 1,0.7 --davis ../shared/data/davis2016-train --sequence bear [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from edgevos import ring as ring_mod
from edgevos.ring import RingBuffer

# name -> (capacity, item shape, dtype, slow window (k, stride))
CASES = {
    "fast 8x(64,60,108) f32": (8, (64, 60, 108), "float32", (3, 3)),
    "fast 8x(16,60,108) f32": (8, (16, 60, 108), "float32", (3, 3)),
    "slow 3x(512,15,27) f32": (3, (512, 15, 27), "float32", (3, 1)),
    "fast 8x(64,60,108) f16": (8, (64, 60, 108), "float16", (3, 3)),
    "fast 7x(8,120,216) f32": (7, (8, 120, 216), "float32", (4, 2)),
}


def bench_case(capacity, shape, dtype, slow, frames, layout):
    rb = RingBuffer(capacity, shape, dtype, layout=layout)
    src = [np.random.default_rng(i).standard_normal(shape).astype(dtype) for i in range(4)]
    for i in range(capacity):  # warm: fill once
        rb.push(src[i % 4])
    push_t, win_t = [], []
    sink = 0.0
    for i in range(frames):
        t0 = time.perf_counter()
        rb.push(src[i % 4])
        t1 = time.perf_counter()
        w = rb.window(capacity)
        s = rb.window(*slow)
        t2 = time.perf_counter()
        sink += float(w[-1, 0, 0, 0]) + float(s[0, 0, 0, 0])  # touch the views
        push_t.append(t1 - t0)
        win_t.append(t2 - t1)
    push_us = np.array(push_t) * 1e6
    win_us = np.array(win_t) * 1e6
    frame_us = push_us + win_us
    return {
        "layout": rb.layout,
        "capacity": capacity,
        "item_shape": list(shape),
        "dtype": dtype,
        "item_mb": round(float(np.prod(shape) * np.dtype(dtype).itemsize / 1e6), 3),
        "push_us_median": round(float(np.median(push_us)), 2),
        "push_us_p95": round(float(np.percentile(push_us, 95)), 2),
        "window_us_median": round(float(np.median(win_us)), 2),
        "frame_us_median": round(float(np.median(frame_us)), 2),
        "frame_us_mean": round(float(np.mean(frame_us)), 2),
        "_sink": sink,
    }


def synthetic(frames):
    rows = {}
    for name, (cap, shape, dtype, slow) in CASES.items():
        for layout in ("mirrored", "sliding"):
            r = bench_case(cap, shape, dtype, slow, frames, layout)
            r.pop("_sink")
            rows[f"{name} {r['layout']}"] = r
    hdr = (f"{'case':35s} {'item MB':>8s} {'push us':>9s} {'p95 us':>9s} {'window us':>10s} "
           f"{'frame us med':>13s} {'frame us mean':>14s}")
    print("synthetic (hot caches): push one item + read two windows")
    print(hdr)
    print("-" * len(hdr))
    for name, r in rows.items():
        print(f"{name:35s} {r['item_mb']:8.2f} {r['push_us_median']:9.1f} {r['push_us_p95']:9.1f} "
              f"{r['window_us_median']:10.2f} {r['frame_us_median']:13.1f} {r['frame_us_mean']:14.1f}")
    return rows


def _sessions(args, tau):
    """One session per layout ('sliding' is forced by making mirrored storage unavailable)."""
    from edgevos.runtime.session import Session

    out = {}
    make = ring_mod._mirrored_storage
    for layout in ("mirrored", "sliding"):
        if layout == "sliding":
            ring_mod._mirrored_storage = lambda *a: None
        try:
            s = Session.from_bundle(args.bundle, precision=args.precision, tau=tau, threads=args.threads)
        finally:
            ring_mod._mirrored_storage = make
        if not hasattr(s.program, "rings"):
            raise SystemExit(f"bundle {args.bundle} is a '{s.bundle.family}' model: it keeps no ring buffers "
                             "(use a SlowFast bundle)")
        got = {r.layout for r in s.program.rings.values()}
        if got != {layout}:
            print(f"note: asked for {layout} rings, got {sorted(got)}")
        out[layout] = s
    return out


def in_situ(args):
    from edgevos.data import DavisDataset, FirstFrames, SyntheticConfig, make_sequence

    if args.davis:
        seq = DavisDataset(args.davis, args.sequence)[args.sequence]
    else:
        seq = make_sequence(SyntheticConfig(height=480, width=854, num_frames=args.frames + 1, num_objects=1, seed=0))
    seq = FirstFrames(seq, args.frames + 1)
    frames = [seq.frame(i) for i in range(len(seq))]
    mask = seq.mask(0)
    rows = {}
    for tau in args.tau:
        sessions = _sessions(args, tau)
        ring_ms = {k: [] for k in sessions}
        step_ms = {k: [] for k in sessions}
        reused = {k: [] for k in sessions}
        for s in sessions.values():
            s.start(frames[0], mask)
        for rnd in range(args.rounds):
            for i, f in enumerate(frames[1:]):
                for k, s in sessions.items():
                    r = s.step(f)
                    if rnd == 0 and i < args.warmup:
                        continue
                    ring_ms[k].append(r.stage_ms.get("rings", 0.0))
                    step_ms[k].append(r.total_ms)
                    reused[k].append(r.reused)
        for k, s in sessions.items():
            a, b = np.array(ring_ms[k]), np.array(step_ms[k])
            rings = s.program.rings
            rows[f"tau {tau:g} {k}"] = {
                "tau": tau,
                "layout": k,
                "steps": len(a),
                "reuse_rate": round(float(np.mean(reused[k])), 3),
                "ring_us_median": round(float(np.median(a) * 1e3), 1),
                "ring_us_mean": round(float(np.mean(a) * 1e3), 1),
                "ring_us_p95": round(float(np.percentile(a, 95) * 1e3), 1),
                "step_ms_median": round(float(np.median(b)), 3),
                "step_ms_mean": round(float(np.mean(b)), 3),
                "ring_share_percent": round(float(100 * a.mean() / b.mean()), 3),
                "rings": {n: repr(r) for n, r in rings.items()},
                "ring_mb": round(sum(r.nbytes for r in rings.values()) / 1e6, 2),
            }
    hdr = (f"{'run':22s} {'reuse':>6s} {'ring us med':>12s} {'mean':>7s} {'p95':>7s} "
           f"{'step ms med':>12s} {'mean':>7s} {'ring share':>11s} {'ring MB':>8s}")
    print(f"\nin situ: {args.bundle} {args.precision}, {len(frames) - 1} frames x {args.rounds} rounds "
          f"({args.warmup} warm-up steps dropped), {args.threads} thread(s)")
    print(hdr)
    print("-" * len(hdr))
    for name, r in rows.items():
        print(f"{name:22s} {r['reuse_rate']:6.2f} {r['ring_us_median']:12.1f} {r['ring_us_mean']:7.1f} "
              f"{r['ring_us_p95']:7.1f} {r['step_ms_median']:12.3f} {r['step_ms_mean']:7.3f} "
              f"{r['ring_share_percent']:10.2f}% {r['ring_mb']:8.2f}")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synthetic-frames", type=int, default=300, help="synthetic pushes per case")
    ap.add_argument("--frames", type=int, default=80, help="in-situ frames (after the first)")
    ap.add_argument("--out", default="runs/bench_ring.json")
    ap.add_argument("--bundle", help="a SlowFast bundle: also measure ring work inside Session.step")
    ap.add_argument("--precision", default="int8-cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tau", default="1", help="comma-separated reuse-gate thresholds (in situ)")
    ap.add_argument("--davis", help="DAVIS-layout folder for the in-situ frames (default: a synthetic sequence)")
    ap.add_argument("--sequence", default="bear")
    ap.add_argument("--rounds", type=int, default=2, help="passes over the in-situ frames")
    ap.add_argument("--warmup", type=int, default=10, help="in-situ steps dropped at the start")
    args = ap.parse_args(argv)
    args.tau = [float(t) for t in str(args.tau).split(",")]
    result = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "numpy": np.__version__,
        "synthetic_frames": args.synthetic_frames,
        "synthetic": synthetic(args.synthetic_frames),
    }
    if args.bundle:
        result["in_situ"] = {"bundle": str(args.bundle), "precision": args.precision, "threads": args.threads,
                             "source": f"{args.davis}:{args.sequence}" if args.davis else "synthetic",
                             "rounds": args.rounds, "runs": in_situ(args)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
