"""Frame size x number of objects: what a step costs, stage by stage, interleaved.

One composited clip of real held-out objects (``bench_multiobject.CLIPS``) is
rendered at each frame size; the first 1, 2 or 3 of its objects are tracked.  Every
round runs every (size, objects) cell on the same frames, in an order that alternates
between rounds, so machine load hits all cells alike; per-stage times are medians over
rounds of per-cell medians.  Prints a table (FPS, step, preprocess, postprocess,
networks) and the FPS ratio of each size to the first one, writes JSON.

    python benchmarks/bench_host_matrix.py --bundle BUNDLE [--precision int8-cpu]
        [--sizes 480x854,720x1280,1080x1920] [--objects 1,2,3] [--frames 40] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from edgevos.parsing import parse_hw, split_list


CLIP = "car-turn+kite-walk+soccerball"


def run_cell(args, clip, frames):
    from edgevos.runtime.session import Session

    s = Session.from_bundle(args.bundle, precision=args.precision, tau=args.tau, threads=args.threads)
    s.start(frames[0], clip.mask(0))
    steps, stages = [], {}
    for i, f in enumerate(frames[1:]):
        t0 = time.perf_counter()
        r = s.step(f)
        if i >= args.warmup:
            steps.append((time.perf_counter() - t0) * 1e3)
            for k, v in r.stage_ms.items():
                stages.setdefault(k, []).append(v)
    return statistics.median(steps), {k: statistics.median(v) for k, v in stages.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--precision", default="int8-cpu")
    ap.add_argument("--tau", type=float, default=1.0)
    ap.add_argument("--sizes", default="480x854,720x1280,1080x1920")
    ap.add_argument("--objects", default="1,2,3")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--davis", default="../shared/data/davis2016-train")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_multiobject import make_clips

    sizes = [parse_hw(s, "--sizes") for s in split_list(args.sizes)]
    counts = [int(k) for k in args.objects.split(",")]
    cells = {}
    for size in sizes:
        clip = make_clips(args.davis, [CLIP], size)[0]
        clip = type(clip)(clip.name, clip.frames[: args.frames + 1], clip.masks[: args.frames + 1], clip.sources, [])
        for k in counts:
            sub = clip.subset(list(range(1, k + 1)))
            cells[(size, k)] = (sub, [sub.frame(i) for i in range(len(sub))])
    results = {key: [] for key in cells}
    order = list(cells)
    for rnd in range(args.rounds):
        for key in (order if rnd % 2 == 0 else order[::-1]):
            results[key].append(run_cell(args, *cells[key]))
            print(f"round {rnd + 1}: {key[0][0]}p, {key[1]} object(s): {1e3 / results[key][-1][0]:.1f} FPS", flush=True)

    rows = []
    for (size, k), runs in results.items():
        step = statistics.median(r[0] for r in runs)
        names = sorted({n for r in runs for n in r[1]})
        st = {n: statistics.median(r[1].get(n, 0.0) for r in runs) for n in names}
        nets = sum(v for n, v in st.items() if n not in ("preprocess", "postprocess", "target_model"))
        rows.append({"size": f"{size[0]}x{size[1]}", "objects": k, "fps": 1e3 / step, "step_ms": step,
                     "preprocess_ms": st.get("preprocess", 0.0), "postprocess_ms": st.get("postprocess", 0.0),
                     "target_model_ms": st.get("target_model", 0.0), "networks_ms": nets, "stage_ms": st})
    print(f"\n{args.bundle} {args.precision}, tau {args.tau}, threads {args.threads}, {args.frames} frames, "
          f"{args.rounds} interleaved rounds\n")
    print("| frame | objects | FPS | FPS vs first size | step ms | preprocess ms | postprocess ms | target model ms | networks ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = {r["objects"]: r["fps"] for r in rows if r["size"] == f"{sizes[0][0]}x{sizes[0][1]}"}
    for r in rows:
        r["fps_vs_first_size"] = r["fps"] / base[r["objects"]]
        print(f"| {r['size']} | {r['objects']} | {r['fps']:.1f} | {r['fps_vs_first_size']:.2f} | {r['step_ms']:.2f} | "
              f"{r['preprocess_ms']:.2f} | {r['postprocess_ms']:.2f} | {r['target_model_ms']:.2f} | {r['networks_ms']:.2f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"bundle": args.bundle, "precision": args.precision, "tau": args.tau,
                                               "threads": args.threads, "frames": args.frames, "rounds": args.rounds,
                                               "machine": platform.processor() or platform.machine(), "rows": rows},
                                              indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
