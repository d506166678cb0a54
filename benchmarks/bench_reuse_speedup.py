"""G-FRTM-fast: FPS at a reuse threshold versus tau = 1, measured interleaved, with the
cost of computed and reused frames taken apart.

The held-out sequences are decoded once.  Each round runs every sequence at every
tau (the order of the taus alternates between rounds), so machine load affects all
taus alike; the speed-up is the ratio of the medians over rounds.  From the
per-frame records it also reports what a computed and a reused frame cost, per
stage, and the speed-up those costs imply at the measured reuse rate, next to
the bound if the reuse path (gate + decoder_reuse) were free.  Prints tables,
writes JSON.

    python benchmarks/bench_reuse_speedup.py --bundle BUNDLE [--precision int8-cpu] [--tau 1,0.7]
        [--max-reuse N] [--davis ../shared/data/davis2016-train] [--sequences ...] [--rounds 3]
        [--compare OTHER_BUNDLE ...]

``--compare`` (repeatable) runs other bundles at tau 1 in the same rounds, interleaved with
``--bundle``'s taus, and reports their FPS relative to ``--bundle`` at the first tau (e.g. an
export that keeps some layers in float against the full int8 one).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HELDOUT = "bear,car-turn,dance-jump,kite-walk,motocross-bumps"


def run_sequence(args, tau, frames, mask, warmup, bundle=None):
    from edgevos.runtime.session import Session

    s = Session.from_bundle(bundle or args.bundle, precision=args.precision, tau=tau, threads=args.threads,
                            max_reuse=args.max_reuse)
    s.start(frames[0], mask)
    recs = []
    for f in frames[1:]:
        t0 = time.perf_counter()
        r = s.step(f)
        recs.append(((time.perf_counter() - t0) * 1e3, bool(r.reused), dict(r.stage_ms)))
    return recs[warmup:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--precision", default="int8-cpu")
    ap.add_argument("--tau", default="1,0.7")
    ap.add_argument("--max-reuse", type=int, default=None)
    ap.add_argument("--davis", default="../shared/data/davis2016-train")
    ap.add_argument("--sequences", default=HELDOUT)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--compare", action="append", default=[],
                    help="another bundle timed at tau 1 in the same interleaved rounds (repeatable)")
    args = ap.parse_args(argv)

    from edgevos.data import DavisDataset

    taus = [float(t) for t in args.tau.split(",")]
    ds = DavisDataset(args.davis)
    seqs = []
    for name in args.sequences.split(","):
        seq = ds[name]
        seqs.append((name, [seq.frame(i) for i in range(len(seq))], seq.mask(0)))

    fps = defaultdict(list)  # tau -> per-round FPS over all sequences
    records = defaultdict(list)  # tau -> every steady-state record
    runs = [(None, t) for t in taus] + [(b, 1.0) for b in args.compare]
    cmp_fps = defaultdict(list)  # compared bundle -> per-round FPS at tau 1
    cmp_records = defaultdict(list)
    for rnd in range(args.rounds):
        order = runs if rnd % 2 == 0 else runs[::-1]
        per_tau = defaultdict(list)
        per_cmp = defaultdict(list)
        for name, frames, mask in seqs:
            for bundle, tau in order:
                recs = run_sequence(args, tau, frames, mask, args.warmup, bundle)
                if bundle is None:
                    per_tau[tau] += recs
                    records[tau] += recs
                else:
                    per_cmp[bundle] += recs
                    cmp_records[bundle] += recs
        for tau in taus:
            fps[tau].append(1e3 / float(np.mean([r[0] for r in per_tau[tau]])))
        for b in args.compare:
            cmp_fps[b].append(1e3 / float(np.mean([r[0] for r in per_cmp[b]])))
        print(f"round {rnd + 1}: " + ", ".join([f"tau {t:g} {fps[t][-1]:.1f} FPS" for t in taus]
                                               + [f"{b} {cmp_fps[b][-1]:.1f} FPS" for b in args.compare]), flush=True)

    base = statistics.median(fps[taus[0]])
    base_ms = float(np.mean([r[0] for r in records[taus[0]]]))  # mean frame time at the first tau (1)
    rows = []
    for tau in taus:
        recs = records[tau]
        reused = [r for r in recs if r[1]]
        computed = [r for r in recs if not r[1]]
        rate = len(reused) / len(recs)

        def stage_means(rs):
            acc = defaultdict(float)
            for _, _, st in rs:
                for k, v in st.items():
                    acc[k] += v
            return {k: v / len(rs) for k, v in acc.items()} if rs else {}

        c_ms = float(np.mean([r[0] for r in computed])) if computed else float("nan")
        r_ms = float(np.mean([r[0] for r in reused])) if reused else float("nan")
        rs = stage_means(reused)
        free = sum(v for k, v in rs.items() if k not in ("gate", "decoder_reuse"))
        row = {"tau": tau, "fps_median": statistics.median(fps[tau]), "fps_rounds": fps[tau],
               "speedup": statistics.median(fps[tau]) / base, "reuse_rate": rate,
               "computed_frame_ms": c_ms, "reused_frame_ms": r_ms,
               "computed_stage_ms": stage_means(computed), "reused_stage_ms": rs}
        if reused and computed:
            # against the first tau's mean frame time: what these frame costs give at this reuse rate,
            # and what they would give if the gate and decoder_reuse cost nothing
            row["implied_speedup"] = base_ms / (rate * r_ms + (1 - rate) * c_ms)
            row["bound_if_reuse_path_free"] = base_ms / (rate * free + (1 - rate) * c_ms)
        rows.append(row)

    print(f"\n{args.bundle} {args.precision}, {len(seqs)} held-out sequences, {args.rounds} interleaved rounds, "
          f"threads {args.threads}, max reuse {args.max_reuse}\n")
    print("| tau | FPS (median) | speed-up vs tau 1 | reuse rate | computed frame ms | reused frame ms | implied speed-up | bound if gate + decoder_reuse cost nothing |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['tau']:g} | {r['fps_median']:.1f} | {r['speedup']:.2f}x | {r['reuse_rate']:.2f} | "
              f"{r['computed_frame_ms']:.2f} | {r['reused_frame_ms']:.2f} | "
              f"{r.get('implied_speedup', float('nan')):.2f}x | {r.get('bound_if_reuse_path_free', float('nan')):.2f}x |")
    stages = sorted({k for r in rows for k in list(r["computed_stage_ms"]) + list(r["reused_stage_ms"])})
    print("\nms per frame by stage (computed / reused frames):\n")
    print("| tau | " + " | ".join(stages) + " |")
    print("|---|" + "---|" * len(stages))
    for r in rows:
        cells = [f"{r['computed_stage_ms'].get(s, 0):.2f} / {r['reused_stage_ms'].get(s, 0):.2f}"
                 if r["reused_stage_ms"] else f"{r['computed_stage_ms'].get(s, 0):.2f}" for s in stages]
        print(f"| {r['tau']:g} | " + " | ".join(cells) + " |")
    compared = []
    for b in args.compare:
        recs = cmp_records[b]
        acc = defaultdict(float)
        for _, _, st in recs:
            for k, v in st.items():
                acc[k] += v
        compared.append({"bundle": b, "tau": 1.0, "fps_median": statistics.median(cmp_fps[b]), "fps_rounds": cmp_fps[b],
                         "relative_fps": statistics.median(cmp_fps[b]) / base,
                         "frame_ms": float(np.mean([r[0] for r in recs])),
                         "stage_ms": {k: v / len(recs) for k, v in acc.items()}})
    if compared:
        print(f"\nother bundles at tau 1, same rounds (relative to {args.bundle} at tau {taus[0]:g}):\n")
        print("| bundle | FPS (median) | relative FPS | frame ms | " + " | ".join(stages) + " |")
        print("|---|---|---|---|" + "---|" * len(stages))
        for c in compared:
            print(f"| {c['bundle']} | {c['fps_median']:.1f} | {c['relative_fps']:.3f} | {c['frame_ms']:.2f} | "
                  + " | ".join(f"{c['stage_ms'].get(k, 0):.2f}" for k in stages) + " |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "bundle": args.bundle, "precision": args.precision, "sequences": args.sequences.split(","),
            "rounds": args.rounds, "threads": args.threads, "max_reuse": args.max_reuse,
            "machine": platform.machine(), "rows": rows, "compared": compared}, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
