"""Per-frame cost of ring-buffer push + window at streaming-model shapes.

Each row simulates one frame of a streaming model: push the new frame's
features into its pathway buffer, then take the windows the model reads
(the full fast window and a strided slow window).  Prints a table and writes
JSON.  Compare the per-frame microseconds with a step's milliseconds.

    python benchmarks/bench_ring.py [--frames 500] [--out runs/bench_ring.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from edgevos.runtime.ring import RingBuffer

# name -> (capacity, item shape, dtype, slow window (k, stride))
CASES = {
    "fast 8x(64,60,108) f32": (8, (64, 60, 108), "float32", (3, 3)),
    "fast 8x(16,60,108) f32": (8, (16, 60, 108), "float32", (3, 3)),
    "slow 3x(512,15,27) f32": (3, (512, 15, 27), "float32", (3, 1)),
    "fast 8x(64,60,108) f16": (8, (64, 60, 108), "float16", (3, 3)),
    "fast 7x(8,120,216) f32": (7, (8, 120, 216), "float32", (4, 2)),
}


def bench_case(capacity, shape, dtype, slow, frames):
    rb = RingBuffer(capacity, shape, dtype)
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
    item_mb = np.prod(shape) * np.dtype(dtype).itemsize / 1e6
    return {
        "capacity": capacity,
        "item_shape": list(shape),
        "dtype": dtype,
        "item_mb": round(float(item_mb), 3),
        "push_us_median": round(float(np.median(push_us)), 2),
        "push_us_p95": round(float(np.percentile(push_us, 95)), 2),
        "window_us_median": round(float(np.median(win_us)), 2),
        "frame_us_median": round(float(np.median(push_us + win_us)), 2),
        "push_gbps": round(float(2 * item_mb / 1e3 / (np.median(push_us) / 1e6)), 2),
        "_sink": sink,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--out", default="runs/bench_ring.json")
    ap.add_argument("--step-ms", type=float, default=None,
                    help="a measured Session.step time to report ring cost as a percentage of")
    args = ap.parse_args(argv)
    rows = {}
    for name, (cap, shape, dtype, slow) in CASES.items():
        r = bench_case(cap, shape, dtype, slow, args.frames)
        r.pop("_sink")
        rows[name] = r
    hdr = f"{'case':26s} {'item MB':>8s} {'push us':>9s} {'p95 us':>9s} {'window us':>10s} {'frame us':>9s} {'GB/s':>6s}"
    if args.step_ms:
        hdr += f" {'% of step':>9s}"
    print(hdr)
    print("-" * len(hdr))
    for name, r in rows.items():
        line = (f"{name:26s} {r['item_mb']:8.2f} {r['push_us_median']:9.1f} {r['push_us_p95']:9.1f} "
                f"{r['window_us_median']:10.2f} {r['frame_us_median']:9.1f} {r['push_gbps']:6.1f}")
        if args.step_ms:
            pct = r["frame_us_median"] / 1e3 / args.step_ms * 100
            r["percent_of_step"] = round(pct, 3)
            line += f" {pct:9.3f}"
        print(line)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "frames": args.frames,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "numpy": np.__version__,
        "step_ms": args.step_ms,
        "cases": rows,
    }, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
