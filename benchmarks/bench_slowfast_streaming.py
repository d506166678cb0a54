"""SlowFast-VOS per-frame latency: streaming (per-layer ring buffers) vs clip mode, per preset.

* streaming: ``Session.step`` on the PyTorch reference backend (tau = 1): one
  frame through frame_stem, fast_body, slow_body, mask_decoder; the rings
  supply every temporal layer's past.
* clip: what a clip model must do for the same output: the 3D network over the
  last ``receptive_field`` frames (every time step of every layer), then the
  decoder on the last step.

Optionally (``--davis DIR``) the gated slow pathway on real sequences: slow
pathway runs per 100 frames and J&F at ``--tau`` vs tau = 1 (meaningful only
with trained ``--weights``).  Prints a table and writes JSON.

    python benchmarks/bench_slowfast_streaming.py [--size 256x448] [--frames 12] [--out runs/bench_slowfast.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from edgevos.parsing import parse_hw

PRESETS = ["1-1", "3-3", "7-7", "1-7", "3-7"]


def bench_preset(preset, size, frames, backbone, reps, weights=None):
    import torch

    from edgevos.data import SyntheticConfig, make_sequence
    from edgevos.models.registry import get_family
    from edgevos.programs.base import to_input
    from edgevos.runtime.session import Session

    torch.manual_seed(0)
    kw = {"weights": weights} if weights else {"preset": preset, "backbone": backbone}
    m = get_family("slowfast").build(input_size=size, **kw)
    h, w = size
    seq = make_sequence(SyntheticConfig(height=h, width=w, num_frames=frames + 1, num_objects=1, seed=0))
    s = Session.from_model(m, family="slowfast", tau=1.0)
    s.start(seq.frame(0), seq.mask(0))
    ms, stage = [], {}
    for i in range(1, frames + 1):
        t0 = time.perf_counter()
        r = s.step(seq.frame(i))
        ms.append((time.perf_counter() - t0) * 1e3)
        for k, v in r.stage_ms.items():
            stage[k] = stage.get(k, 0.0) + v / frames
    rf = m.receptive_field
    clip = torch.stack([torch.from_numpy(to_input(seq.frame(i % (frames + 1)), size)[0]) for i in range(rf)])
    template = torch.from_numpy(s.program.objects[0].template)
    prev = torch.from_numpy(s.program.objects[0].prev_prob)
    cms = []
    with torch.inference_mode():
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            m.forward_clip(clip, template, prev)
            cms.append((time.perf_counter() - t0) * 1e3)
    return {
        "preset": preset, "backbone": m.config.backbone, "alpha": m.alpha, "receptive_field": rf,
        "kernels": {k: v for k, v in m.kernels.items()},
        "stream_ms": float(np.median(ms[1:] if len(ms) > 2 else ms)), "stream_stage_ms": stage,
        "clip_ms": float(np.median(cms[1:])),
    }


def bench_gate(weights, davis, names, tau, size, max_frames):
    from edgevos.data import DavisDataset, FirstFrames
    from edgevos.evaluate_model import run_sequence
    from edgevos.models.registry import get_family
    from edgevos.runtime.session import Session

    m = get_family("slowfast").build(weights=weights, input_size=size)
    ds = DavisDataset(davis)
    rows = []
    for t in (1.0, tau):
        jf, slow, n = [], 0, 0
        for name in names:
            seq = ds[name]
            sess = Session.from_model(m, family="slowfast", tau=t)
            out = run_sequence(sess, FirstFrames(seq, min(len(seq), max_frames)))
            st = out["eval"]["stats"]
            jf += [(v["J-Mean"] + v["F-Mean"]) / 2 for v in st.values()]
            slow += sess.program.slow_runs
            n += out["frames"]
        rows.append({"tau": t, "J&F": float(np.mean(jf)), "slow_runs_per_100": 100.0 * slow / n})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=lambda s: parse_hw(s, "--size"), default=(256, 448))
    p.add_argument("--frames", type=int, default=12, help="streamed frames per preset")
    p.add_argument("--reps", type=int, default=2, help="clip-mode repetitions")
    p.add_argument("--backbone", default="mobilenetv2", choices=["mobilenetv2", "resnet18"])
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--weights", default=None, help="a trained slowfast checkpoint (gate section; its preset)")
    p.add_argument("--davis", default=None, help="DAVIS-layout folder for the gate section")
    p.add_argument("--sequences", default="bear,car-turn")
    p.add_argument("--tau", type=float, default=0.7)
    p.add_argument("--max-frames", type=int, default=40)
    p.add_argument("--out", default="runs/bench_slowfast.json")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    rows = [bench_preset(pr, args.size, args.frames, args.backbone, args.reps) for pr in args.presets.split(",")]
    base = next((r["stream_ms"] for r in rows if r["preset"] == "1-1"), None)
    print(f"SlowFast-VOS {args.backbone} {args.size[0]}x{args.size[1]}, {args.threads} thread(s), torch {torch.__version__}")
    print(f"{'preset':>6} {'alpha':>5} {'RF':>3} {'stream ms':>10} {'x 1-1':>6} {'clip ms':>9} {'clip/stream':>11}")
    for r in rows:
        rel = r["stream_ms"] / base if base else float("nan")
        r["stream_vs_1_1"] = rel
        print(f"{r['preset']:>6} {r['alpha']:>5} {r['receptive_field']:>3} {r['stream_ms']:>10.1f} {rel:>6.2f} "
              f"{r['clip_ms']:>9.1f} {r['clip_ms'] / r['stream_ms']:>11.1f}")
    result = {"size": list(args.size), "backbone": args.backbone, "threads": args.threads,
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "presets": rows}
    if args.davis and args.weights:
        result["gate"] = bench_gate(args.weights, args.davis, args.sequences.split(","), args.tau, args.size,
                                    args.max_frames)
        for g in result["gate"]:
            print(f"tau={g['tau']:.2f}: J&F {g['J&F']:.3f}, slow pathway runs per 100 frames {g['slow_runs_per_100']:.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
