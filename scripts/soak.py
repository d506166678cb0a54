#!/usr/bin/env python
"""Soak test: stream many synthetic frames through the full runtime and watch memory and
file descriptors.

    python scripts/soak.py                       # 10000 frames, masks:// + file:// (MP4) + json:// sinks
    python scripts/soak.py --frames 300 --bare   # bare Session.step loop, no sinks

Pipeline: a test:// sequence (looped, frame index continuing) -> Session from an ONNX
Runtime bundle (exported in a child process when --bundle is not given) ->
run_pipeline with masks://, file:// (overlay MP4) and json:// sinks.  Every --every frames it
samples RSS (/proc/self/status VmRSS; psutil when installed) and open file descriptors
(/proc/self/fd).  Targets: RSS growth after warm-up < 2 %, no fd growth; warm-up lasts
until the run's bounded per-frame record buffer is full (``--max-records``, 5000 frames).  Prints a
table and writes JSON (--json).  Exit code 0 when both targets hold, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path



def rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    return float("nan")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def random_bundle(out: Path, input_size: str) -> Path:
    """Random-weight fp32 G-FRTM bundle (exported in a child process: GStreamer may be loaded here)."""
    from edgevos import export_bundle

    return export_bundle(out, "gfrtm", precisions=["fp32"], calib_frames=4, input_size=input_size, parity=False,
                         progress=False, isolate=True)


class Sampler:
    """A sink that samples RSS and fds every ``every`` frames (and at close)."""

    def __init__(self, every: int, t0: float):
        from edgevos.runtime.uri import parse_sink

        self.uri = parse_sink("json://soak-sampler")  # for the summary only; nothing is written
        self.every, self.t0, self.frames, self.rows = every, t0, 0, []

    def sample(self, frame: int) -> None:
        self.rows.append({"frame": frame, "t_s": round(time.perf_counter() - self.t0, 2),
                          "rss_mb": round(rss_mb(), 2), "fds": fd_count()})

    def write(self, frame_index, rgb, result) -> None:
        self.frames += 1
        if self.frames % self.every == 0:
            self.sample(self.frames)

    def close(self) -> None:
        pass


def looped_source(frames: int, size: str, seed: int = 0, period: int = 100):
    """test:// frames repeated every ``period`` frames, index continuing (a long synthetic stream
    without holding all of it in memory)."""
    from edgevos.runtime.sources import Frame, Source, open_source

    base = open_source(f"test://?frames={period}&size={size}&objects=1&seed={seed}")
    period_frames = [f.rgb for f in base]

    class Looped(Source):
        def __iter__(self):
            for i in range(frames):
                if self._stop.is_set():
                    return
                f = period_frames[i % period]
                self.delivered += 1
                yield Frame(i, i / 30.0, f, None)

    src = Looped(base.uri)
    src.first_mask, src.size, src.fps = base.first_mask, base.size, 30.0
    return src


def run(args) -> dict:
    from edgevos.runtime.session import Session

    work = Path(args.out or tempfile.mkdtemp(prefix="edgevos-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    bundle = Path(args.bundle) if args.bundle else random_bundle(work / "bundle", args.input_size)
    session = Session.from_bundle(bundle, threads=args.threads)
    t0 = time.perf_counter()
    sampler = Sampler(args.every, t0)
    sampler.sample(0)
    if args.bare:
        src = looped_source(args.frames, args.size)
        for f in src:
            if f.index == 0:
                session.start(f.rgb, src.first_mask)
            else:
                session.step(f.rgb)
            sampler.write(f.index, f.rgb, None)
        mode, summary = "bare Session loop", {"frames": args.frames, "exit_code": 0}
    else:
        from edgevos.runtime.pipeline import run_pipeline
        from edgevos.runtime.sinks import open_sink

        src = looped_source(args.frames, args.size)
        sinks = [open_sink(f"masks://{work / 'masks'}"), open_sink(f"file://{work / 'overlay.mp4'}", fps=30),
                 open_sink(f"json://{work / 'frames.json'}")]
        summary = run_pipeline(src, sinks + [sampler], session, warmup=min(100, args.frames // 4),
                               max_records=args.max_records).as_dict()
        mode = "run_pipeline + masks:// + file:// (fragmented MP4 overlay) + json://"
    elapsed = time.perf_counter() - t0
    rows = sampler.rows  # in-run samples (sinks still open)
    if rows[-1]["frame"] != args.frames:
        sampler.sample(args.frames)
    warm = next((r for r in rows if r["frame"] >= args.warmup), rows[-1])
    last = rows[-1]  # last in-run sample: growth is measured while running, not after close
    after = [r for r in rows if r["frame"] >= warm["frame"]]
    closed = {"rss_mb": round(rss_mb(), 2), "fds": fd_count()}
    growth = (last["rss_mb"] - warm["rss_mb"]) / warm["rss_mb"] * 100
    report = {
        "mode": mode, "frames": args.frames, "frame_size": args.size, "model_input": args.input_size,
        "threads": args.threads, "elapsed_s": round(elapsed, 1), "ms_per_frame": round(elapsed / args.frames * 1e3, 2),
        "warmup_frames": warm["frame"], "rss_warm_mb": warm["rss_mb"], "rss_final_mb": last["rss_mb"],
        "rss_peak_after_warmup_mb": max(r["rss_mb"] for r in after),
        "rss_growth_pct": round(growth, 2), "fds_warm": warm["fds"], "fds_final": last["fds"],
        "fd_growth": last["fds"] - warm["fds"], "fds_max_after_warmup": max(r["fds"] for r in after),
        "rss_after_close_mb": closed["rss_mb"], "fds_after_close": closed["fds"],
        "rss_growth_per_1000_frames_mb": round((last["rss_mb"] - warm["rss_mb"]) / max(1, last["frame"] - warm["frame"]) * 1000, 3),
        "run_exit_code": summary.get("exit_code"), "run_error": summary.get("error"),
        "steady_fps": summary.get("fps"), "steady_frames": summary.get("steady_frames"),
        "reuse_rate": summary.get("reuse_rate"), "latency_window_frames": summary.get("window_frames"),
        "samples": rows, "out_dir": str(work),
    }
    if not args.bare:
        report["masks_on_disk"] = len(list((work / "masks").glob("*.png")))
    # in-run, one mask temp file may be open at a sample; after close nothing may remain
    report["ok"] = bool(growth < args.max_growth and report["fd_growth"] <= 1
                        and closed["fds"] <= rows[0]["fds"] and summary.get("exit_code") == 0)
    return report


def print_table(rep: dict) -> None:
    print(f"soak: {rep['frames']} frames {rep['frame_size']} -> model {rep['model_input']}, {rep['mode']}, "
          f"threads={rep['threads']}")
    print(f"{'frame':>8} {'t (s)':>8} {'RSS (MB)':>10} {'fds':>5}")
    for r in rep["samples"]:
        print(f"{r['frame']:>8} {r['t_s']:>8.1f} {r['rss_mb']:>10.1f} {r['fds']:>5}")
    print(f"RSS after warm-up (frame {rep['warmup_frames']}): {rep['rss_warm_mb']:.1f} MB -> {rep['rss_final_mb']:.1f} MB "
          f"({rep['rss_growth_pct']:+.2f} %, peak {rep['rss_peak_after_warmup_mb']:.1f} MB); "
          f"fds {rep['fds_warm']} -> {rep['fds_final']} (max {rep['fds_max_after_warmup']}); after close: "
          f"{rep['rss_after_close_mb']:.1f} MB, {rep['fds_after_close']} fds; "
          f"{rep['ms_per_frame']:.1f} ms/frame; {'OK' if rep['ok'] else 'FAIL'}")
    if rep.get("steady_fps") is not None:
        print(f"steady FPS {rep['steady_fps']:.2f} over {rep['steady_frames']} frames (the whole run)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--size", default="128x224", help="synthetic frame HxW")
    ap.add_argument("--input-size", default="128x224", help="model input HxW when exporting the bundle")
    ap.add_argument("--bundle", help="bundle directory (default: export a random-weight fp32 bundle)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--every", type=int, default=500, help="sample every N frames")
    ap.add_argument("--warmup", type=int, default=None,
                    help="frames before the RSS baseline (default: --max-records, when the record buffer is full)")
    ap.add_argument("--max-growth", type=float, default=2.0, help="RSS growth target after warm-up, percent")
    ap.add_argument("--max-records", type=int, default=5000,
                    help="per-frame records held by the run's statistics (the summary covers the whole run)")
    ap.add_argument("--bare", action="store_true", help="bare Session loop without run_pipeline and sinks")
    ap.add_argument("--out", help="work directory (masks, video, bundle); default a new temp dir")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(args.max_records, args.frames // 2) if not args.bare else min(1000, args.frames // 2)
    rep = run(args)
    print_table(rep)
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=2))
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
