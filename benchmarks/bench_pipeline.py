"""End-to-end FPS of the GStreamer pipeline versus a bare loop of Session.step.

Same bundle, same frames, same run: the bare loop steps over frames decoded
beforehand (no I/O); the pipeline decodes with GStreamer (file://), steps and
writes the sinks (overlay mp4 + DAVIS masks by default) through
``run_pipeline``.  Repeats are interleaved so machine load affects both alike.
Target ratio (pipeline / bare) >= 0.95.  Prints a table and writes JSON.

    python benchmarks/bench_pipeline.py --bundle BUNDLE [--source file://clip.mp4]
        [--frames 80] [--warmup 10] [--repeats 3] [--threads 1] [--tau 1.0] [--pin-inference 0]

``--pin-inference CORES`` adds a third run per repeat: the pipeline with
inference pinned to those cores and every GStreamer / sink thread on the
others (``edgevos run --pin-inference``); the bare loop stays unpinned.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "videos" / "cutie_example.mp4"


def _session(args):
    from edgevos.runtime.session import Session

    kw = {"backend": args.backend, "tau": args.tau}
    if args.precision:
        kw["precision"] = args.precision
    if args.threads:
        kw["threads"] = args.threads
    return Session.from_bundle(args.bundle, **kw)


def bare_fps(args, frames, mask) -> float:
    s = _session(args)
    s.start(frames[0], mask)
    ends = []
    for f in frames[1:]:
        s.step(f)
        ends.append(time.perf_counter())
    w = min(args.warmup, len(ends) - 2)
    return (len(ends) - 1 - w) / (ends[-1] - ends[w])


def pipeline_fps(args, mask, out_dir: Path, pin=None) -> dict:
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    shutil.rmtree(out_dir, ignore_errors=True)
    split = None
    if pin:
        from edgevos.runtime.affinity import CoreSplit, parse_cores

        split = CoreSplit(parse_cores(pin))
    session = split.build(lambda: _session(args)) if split is not None else _session(args)
    src = open_source(args.source)
    sinks = [open_sink(u.replace("{out}", str(out_dir)), fps=src.fps) for u in args.sinks]
    summary = run_pipeline(src, sinks, session, first_mask=mask, max_frames=args.frames,
                           warmup=args.warmup, handle_signals=False, core_split=split)
    return summary.as_dict()


def io_cpu_costs(args, frames, mask, out_dir: Path) -> dict:
    """CPU milliseconds per frame of the pipeline's I/O alone, no inference: decoding
    the source to RGB, and each sink writing the frames (with a fixed mask).  On a
    machine with few cores this is what competes with ``Session.step`` for CPU."""
    from edgevos.programs.base import StepResult
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    costs = {}
    src = open_source(args.source)
    c0, n = time.process_time(), 0
    for _ in src:
        n += 1
        if n == len(frames):
            break
    src.close()
    costs["decode"] = (time.process_time() - c0) * 1e3 / max(n, 1)
    ids = [int(v) for v in sorted(set(mask.ravel().tolist()) - {0})] or [1]
    for uri in args.sinks:
        shutil.rmtree(out_dir, ignore_errors=True)
        sink = open_sink(uri.replace("{out}", str(out_dir)), fps=25)
        c0 = time.process_time()
        for i, f in enumerate(frames):
            sink.write(i, f, StepResult(i, mask, None, ids, False, None, {}, 0.0))
        sink.close()
        costs[uri.split("://")[0] + " sink"] = (time.process_time() - c0) * 1e3 / len(frames)
    return costs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--source", default=f"file://{os.path.relpath(DEFAULT_CLIP)}")
    ap.add_argument("--sinks", nargs="*", default=["file://{out}/overlay.mp4", "masks://{out}/masks"])
    ap.add_argument("--box", default=None, help="x,y,w,h of the object (default: centre third of the frame)")
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tau", type=float, default=1.0)
    ap.add_argument("--pin-inference", metavar="CORES", default=None,
                    help="also run the pipeline with inference pinned to these cores (e.g. 0)")
    ap.add_argument("--out", default="runs/bench_pipeline.json")
    args = ap.parse_args(argv)

    from edgevos.data import grabcut_mask, parse_box
    from edgevos.runtime.sources import open_source

    src = open_source(args.source)
    frames = []
    for f in src:
        frames.append(f.rgb)
        if len(frames) == args.frames:
            break
    src.close()
    if len(frames) < args.warmup + 3:
        raise SystemExit(f"{args.source} has only {len(frames)} frames; need more than --warmup + 2")
    h, w = frames[0].shape[:2]
    box = parse_box(args.box) if args.box else (w // 3, h // 3, w // 3, h // 3)
    mask = src.first_mask if getattr(src, "first_mask", None) is not None else grabcut_mask(frames[0], [box])
    args.frames = len(frames)

    rows = []
    with tempfile.TemporaryDirectory(prefix="edgevos-bench-") as tmp:
        for r in range(args.repeats):
            b = bare_fps(args, frames, mask)
            p = pipeline_fps(args, mask, Path(tmp) / f"run{r}")
            row = {"bare_fps": round(b, 3), "pipeline_fps": p["fps"], "ratio": round(p["fps"] / b, 4),
                   "sink_ms_p50": p["latency_ms"]["sink"]["p50"], "wait_ms_p50": p["latency_ms"]["wait"]["p50"],
                   "step_ms_p50": p["latency_ms"]["step"]["p50"], "frames": p["frames"]}
            if args.pin_inference:
                q = pipeline_fps(args, mask, Path(tmp) / f"pin{r}", pin=args.pin_inference)
                row.update({"pinned_fps": q["fps"], "pinned_ratio": round(q["fps"] / b, 4),
                            "pinned_step_ms_p50": q["latency_ms"]["step"]["p50"],
                            "pinned_wait_ms_p50": q["latency_ms"]["wait"]["p50"], "affinity": q["affinity"]})
            rows.append(row)
    pin = bool(args.pin_inference)
    print(f"{'repeat':>6} {'bare FPS':>9} {'pipeline FPS':>13} {'ratio':>7} {'step p50':>9} {'sinks p50':>10} {'wait p50':>9}"
          + (f" {'pinned FPS':>11} {'ratio':>7} {'step p50':>9} {'wait p50':>9}" if pin else ""))
    for i, r in enumerate(rows):
        print(f"{i:6d} {r['bare_fps']:9.2f} {r['pipeline_fps']:13.2f} {r['ratio']:7.3f} {r['step_ms_p50']:9.2f} "
              f"{r['sink_ms_p50']:10.2f} {r['wait_ms_p50']:9.2f}"
              + (f" {r['pinned_fps']:11.2f} {r['pinned_ratio']:7.3f} {r['pinned_step_ms_p50']:9.2f} "
                 f"{r['pinned_wait_ms_p50']:9.2f}" if pin else ""))
    med = statistics.median(r["ratio"] for r in rows)
    print(f"median ratio pipeline/bare: {med:.3f} (target >= 0.95)")
    med_pin = statistics.median(r["pinned_ratio"] for r in rows) if pin else None
    if pin:
        print(f"median ratio pinned pipeline/bare: {med_pin:.3f} (inference on core(s) {args.pin_inference})")
    with tempfile.TemporaryDirectory(prefix="edgevos-io-") as tmp:
        io = io_cpu_costs(args, frames, mask, Path(tmp))
    step = statistics.median(r["step_ms_p50"] for r in rows)
    bare_ms = 1e3 / statistics.median(r["bare_fps"] for r in rows)
    print("\nI/O CPU per frame without inference (process CPU time; compare with the bare step):")
    print(f"{'part':>18} {'CPU ms/frame':>13}")
    print(f"{'bare step':>18} {bare_ms:13.2f}")
    for k, v in io.items():
        print(f"{k:>18} {v:13.2f}")
    total = bare_ms + sum(io.values())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"total CPU per frame {total:.2f} ms on {cores} core(s): the pipeline can reach the bare loop only if "
          f"I/O ({sum(io.values()):.2f} ms) runs entirely on other cores without slowing the step")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "bundle": str(args.bundle), "source": args.source, "sinks": args.sinks, "frames": args.frames,
        "warmup": args.warmup, "backend": args.backend, "threads": args.threads, "tau": args.tau,
        "machine": platform.machine(), "repeats": rows, "median_ratio": round(med, 4),
        "pin_inference": args.pin_inference, "median_ratio_pinned": round(med_pin, 4) if pin else None,
        "io_cpu_ms_per_frame": {k: round(v, 3) for k, v in io.items()}, "bare_step_ms": round(bare_ms, 3),
        "step_ms_p50_in_pipeline": round(step, 3), "cores": cores,
    }, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
