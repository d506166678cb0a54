"""Several objects at camera resolution: accuracy, identity swaps and host cost.

Composites real held-out DAVIS 2016 train objects into multi-object clips
(``edgevos.data.make_composite``: the scene's own object is id 1, the others are
pasted along paths that cross it, so objects touch and occlude), then for each
clip and frame size:

* runs the clip with all objects at once and each object alone (same frames);
* reports J&F per object (DAVIS protocol), the mean of the multi-object run next
  to the mean of the alone runs, and the identity-swap rate (share of object-frames
  whose predicted mask overlaps another object's ground truth more than its own);
* reports FPS and per-stage milliseconds of the multi-object run.

Prints tables, writes JSON.

    python benchmarks/bench_multiobject.py (--bundle BUNDLE [--precision int8-cpu] | --weights default) [--tau 1]
        [--sizes 480x854,1080x1920] [--clips all] [--davis ../shared/data/davis2016-train]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from edgevos.parsing import parse_hw, split_list

#: composites of held-out sequences only: (scene, pasted objects, seed)
CLIPS = {
    "bear+dance-jump": ("bear", ["dance-jump"], 0),
    "car-turn+kite-walk+soccerball": ("car-turn", ["kite-walk", "soccerball"], 1),
    "motocross-bumps+bear+dance-jump": ("motocross-bumps", ["bear", "dance-jump"], 2),
    "kite-walk+car-turn+motocross-bumps+soccerball": ("kite-walk", ["car-turn", "motocross-bumps", "soccerball"], 3),
}


def make_clips(davis, names, size):
    from edgevos.data import DavisDataset, make_composite

    ds = DavisDataset(davis)
    out = []
    for name in names:
        scene, others, seed = CLIPS[name]
        out.append(make_composite(ds[scene], [ds[o] for o in others], seed=seed, scale_to=size, name=name))
    return out


def run(session, clip):
    frames = [clip.frame(i) for i in range(len(clip))]
    res = session.start(frames[0], clip.mask(0))
    preds, ms, stages = [res.mask], [], {}
    for f in frames[1:]:
        t0 = time.perf_counter()
        r = session.step(f)
        ms.append((time.perf_counter() - t0) * 1e3)
        preds.append(r.mask)
        for k, v in r.stage_ms.items():
            stages.setdefault(k, []).append(v)
    return preds, ms, stages


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", help="exported bundle (ONNX Runtime)")
    src.add_argument("--weights", help="G-FRTM-fast checkpoint for the PyTorch reference ('default' = shipped)")
    ap.add_argument("--precision", default="int8-cpu")
    ap.add_argument("--tau", type=float, default=1.0)
    ap.add_argument("--max-reuse", type=int, default=None)
    ap.add_argument("--sizes", default="480x854,1080x1920", help="frame sizes HxW of the rendered clips")
    ap.add_argument("--clips", default="all", help=f"comma-separated of {list(CLIPS)} or 'all'")
    ap.add_argument("--no-alone", action="store_true", help="skip the one-object-at-a-time runs")
    ap.add_argument("--no-occlusion", dest="occlusion", action="store_false",
                    help="do not hide an object whose area collapses onto a neighbour (GfrtmProgram occlusion=False; "
                         "the guard is on by default)")
    ap.add_argument("--davis", default="../shared/data/davis2016-train")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--save-masks", default=None, help="folder for the multi-object masks (DAVIS layout)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from edgevos.data import identity_swap_rate, write_mask
    from edgevos.metrics import evaluate_sequence
    from edgevos.runtime.session import Session

    names = list(CLIPS) if args.clips == "all" else [c for c in args.clips.split(",") if c]
    sizes = [parse_hw(s, "--sizes") for s in split_list(args.sizes)]

    model = None
    if args.weights:
        from edgevos.models.registry import get_family

        model = get_family("gfrtm").build(weights=args.weights)

    def session():
        if model is not None:
            return Session.from_model(model, tau=args.tau, threads=args.threads, max_reuse=args.max_reuse,
                                      occlusion=args.occlusion)
        return Session.from_bundle(args.bundle, precision=args.precision, tau=args.tau, threads=args.threads,
                                   max_reuse=args.max_reuse, occlusion=args.occlusion)

    rows = []
    for size in sizes:
        for clip in make_clips(args.davis, names, size):
            ids = clip.object_ids
            gts = [clip.mask(i) for i in range(len(clip))]
            preds, ms, stages = run(session(), clip)
            ev = evaluate_sequence(gts, preds, ids)
            multi = {k: ev["stats"][k]["J&F-Mean"] * 100 for k in ids}
            alone = {}
            if not args.no_alone:
                for k in ids:
                    single = clip.single(k)
                    p1, _, _ = run(session(), single)
                    alone[k] = evaluate_sequence([single.mask(i) for i in range(len(single))], p1, [1])["stats"][1]["J&F-Mean"] * 100
            if args.save_masks:
                for i, m in enumerate(preds):
                    write_mask(Path(args.save_masks) / f"{clip.name}-{size[0]}p" / f"{i:05d}.png", m)
            steady = ms[args.warmup:]
            rows.append({
                "clip": clip.name, "size": f"{size[0]}x{size[1]}", "objects": len(ids),
                "jf_multi": float(np.mean(list(multi.values()))),
                "jf_alone": float(np.mean(list(alone.values()))) if alone else None,
                "jf_per_object": {str(k): [multi[k], alone.get(k)] for k in ids},
                "swap_rate": identity_swap_rate(gts, preds, ids),
                "fps": 1000.0 / float(np.mean(steady)),
                "step_ms_p50": float(np.median(steady)),
                "stage_ms_p50": {k: float(np.median(v[args.warmup:])) for k, v in sorted(stages.items())},
            })
            r = rows[-1]
            print(f"{r['clip']} {r['size']}: J&F {r['jf_multi']:.1f} (alone {r['jf_alone'] if r['jf_alone'] is None else round(r['jf_alone'], 1)}), "
                  f"swaps {100 * r['swap_rate']:.2f}%, {r['fps']:.1f} FPS", flush=True)

    what = f"{args.bundle} {args.precision}" if args.bundle else f"PyTorch {args.weights}"
    print(f"\n{what}, tau {args.tau}, threads {args.threads}\n")
    print("| clip | frame | objects | J&F all together | J&F each alone | identity swaps | FPS | step ms p50 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        alone = "-" if r["jf_alone"] is None else f"{r['jf_alone']:.1f}"
        print(f"| {r['clip']} | {r['size']} | {r['objects']} | {r['jf_multi']:.1f} | {alone} | "
              f"{100 * r['swap_rate']:.2f}% | {r['fps']:.1f} | {r['step_ms_p50']:.1f} |")
    stage_names = sorted({k for r in rows for k in r["stage_ms_p50"]})
    print("\nms per step by stage (p50):\n")
    print("| clip | frame | " + " | ".join(stage_names) + " |")
    print("|---|---|" + "---|" * len(stage_names))
    for r in rows:
        print(f"| {r['clip']} | {r['size']} | " + " | ".join(f"{r['stage_ms_p50'].get(k, 0.0):.2f}" for k in stage_names) + " |")
    for size in sizes:
        sel = [r for r in rows if r["size"] == f"{size[0]}x{size[1]}"]
        if sel and sel[0]["jf_alone"] is not None:
            print(f"\n{size[0]}p: mean J&F together {np.mean([r['jf_multi'] for r in sel]):.1f}, alone "
                  f"{np.mean([r['jf_alone'] for r in sel]):.1f}, swap rate {100 * np.mean([r['swap_rate'] for r in sel]):.2f}%")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"bundle": args.bundle, "weights": args.weights, "precision": args.precision, "tau": args.tau,
                                               "threads": args.threads, "machine": platform.processor() or platform.machine(),
                                               "rows": rows}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
