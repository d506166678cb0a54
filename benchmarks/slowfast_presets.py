"""Compare the SlowFast-VOS pathway presets on the same held-out DAVIS sequences.

Every preset is trained with the same recipe and step budget (the ``edgevos train
slowfast`` defaults: :class:`edgevos.train.slowfast.TrainConfig`), then evaluated
(:func:`edgevos.evaluate`, what ``edgevos eval --family slowfast`` runs) at tau 1
(slow pathway on every frame) and at a reuse threshold with a reuse cap, all in
this process.  Every preset trains once per seed (``--seeds``, two by default: a gap
between presets means something only beside the spread between seeds); the table
gives each preset's mean over seeds, the spread (max - min) and every seed's J&F.
Training is skipped for a run whose final checkpoint already exists (an interrupted
run resumes from its checkpoint), and evaluation for one whose
``eval/model_eval.json`` exists, so the script can be rerun (or run as several
processes, one per list of presets or seeds) and then once more to collect the table.

    python benchmarks/slowfast_presets.py --presets 1-1,3-3,7-7,1-7,3-7 --seeds 0,1 --steps 600 \
        --target-model --davis ../shared/data/davis2016-train \
        --backbone-weights ../shared/weights/mobilenet_v2-b0353104.pth \
        --runs runs/slowfast-presets --json benchmarks/results/slowfast_presets.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELDOUT = "bear,car-turn,dance-jump,kite-walk,motocross-bumps"


def run_dir(preset: str, seed: int, args) -> Path:
    return Path(args.runs) / preset / f"seed{seed}"


def train(preset: str, seed: int, args) -> Path:
    from edgevos.train.slowfast import TrainConfig, Trainer

    out = run_dir(preset, seed, args)
    final = out / f"slowfast_{preset}_final.pt"
    if final.is_file():
        return final
    cfg = TrainConfig(out=str(out), davis=(args.davis,), preset=preset, steps=args.steps, threads=args.threads,
                      backbone_weights=args.backbone_weights or None, seed=seed, target_model=args.target_model)
    print(f"+ train slowfast {preset} seed {seed}: {args.steps} steps into {out}", flush=True)
    return Trainer(cfg).run()


def evaluate(preset: str, seed: int, weights: Path, args) -> dict:
    """J&F, reuse rate and FPS at tau 1 and ``--tau``; kept in ``<runs>/<preset>/seed<k>/eval/model_eval.json``
    (the file ``edgevos eval --family slowfast --out`` writes)."""
    out = run_dir(preset, seed, args) / "eval"
    res = out / "model_eval.json"
    if not res.is_file() or args.reeval:
        from edgevos import evaluate as evaluate_model
        from edgevos.data import DavisDataset
        from edgevos.evaluate_model import format_rows, plot_rows

        print(f"+ evaluate slowfast {preset} seed {seed} ({weights}) at tau 1,{args.tau:g}", flush=True)
        ds = DavisDataset(args.davis, sequences=args.sequences)
        rows = evaluate_model([ds[n] for n in ds.sequences], tau=[1.0, args.tau], family="slowfast",
                              weights=str(weights), max_reuse=args.max_reuse, threads=args.threads, progress=False)
        print(format_rows(rows))
        out.mkdir(parents=True, exist_ok=True)
        res.write_text(json.dumps({"family": "slowfast", "weights": str(weights), "bundle": None, "backend": "torch",
                                   "precision": None, "davis": str(args.davis), "sequences": ds.sequences,
                                   "rows": rows}, indent=2, default=float))
        plot_rows(rows, out / "tau_sweep.png", title="slowfast: FPS vs J&F over tau")
    return json.loads(res.read_text())


def model_facts(preset: str, weights: Path) -> dict:
    """Parameter count and slow/fast frame counts of a trained preset."""
    from edgevos.models.slowfast import build_slowfast

    from edgevos.models.weights import load_checkpoint

    meta = load_checkpoint("slowfast", str(weights)).get("meta", {}) or {}
    model = build_slowfast(weights=str(weights), input_size=(128, 224))
    return {"params_M": sum(t.numel() for t in model.parameters()) / 1e6,
            "slow_frames": model.config.slow_frames, "fast_frames": model.config.fast_frames,
            "train_steps": (meta.get("train_config") or {}).get("steps")}


def seed_list(text: str):
    try:
        seeds = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise SystemExit(f"--seeds {text!r}: give comma-separated non-negative integers, e.g. --seeds 0,1")
    return seeds


def summarize(runs: list) -> list:
    """One row per (preset, tau): the mean over seeds, the spread (max - min) and every seed's J&F."""
    out = {}
    for r in runs:
        out.setdefault((r["preset"], r["tau"]), []).append(r)
    rows = []
    for (preset, tau), group in out.items():
        jf = [g["J&F"] for g in group]
        seqs = group[0]["per_sequence_JF"]
        rows.append({k: group[0][k] for k in ("preset", "slow_frames", "fast_frames", "train_steps", "params_M",
                                                  "tau", "max_reuse")}
                    | {"seeds": [g["seed"] for g in group], "J&F_per_seed": jf,
                       "J&F": sum(jf) / len(jf), "spread": max(jf) - min(jf),
                       "J": sum(g["J"] for g in group) / len(group), "F": sum(g["F"] for g in group) / len(group),
                       "reuse_rate": sum(g["reuse_rate"] for g in group) / len(group),
                       "fps": sum(g["fps"] for g in group) / len(group),
                       "per_sequence_JF": {s: sum(g["per_sequence_JF"][s] for g in group) / len(group) for s in seqs}})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="1-1,3-3,7-7,1-7,3-7")
    ap.add_argument("--seeds", default="0,1", help="training seeds per preset (comma-separated)")
    ap.add_argument("--steps", type=int, default=1000, help="training steps per preset (same for all)")
    ap.add_argument("--target-model", action="store_true",
                    help="train with the online target model's score as a decoder input (edgevos train slowfast "
                         "--target-model)")
    ap.add_argument("--davis", default="../shared/data/davis2016-train")
    ap.add_argument("--backbone-weights", default="../shared/weights/mobilenet_v2-b0353104.pth")
    ap.add_argument("--sequences", default=HELDOUT, help="held-out sequences (never trained on)")
    ap.add_argument("--runs", default="runs/slowfast-presets")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tau", type=float, default=0.7)
    ap.add_argument("--max-reuse", type=int, default=4)
    ap.add_argument("--train-only", action="store_true", help="train, do not evaluate")
    ap.add_argument("--reeval", action="store_true", help="evaluate again even if results exist")
    ap.add_argument("--json", default=None, help="write the table as JSON here")
    args = ap.parse_args(argv)
    seeds = seed_list(args.seeds)

    runs = []
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        for seed in seeds:
            weights = train(preset, seed, args)
            if args.train_only:
                continue
            res = evaluate(preset, seed, weights, args)
            facts = model_facts(preset, weights)
            for r in res["rows"]:
                runs.append({"preset": preset, "seed": seed, **facts, "tau": r["tau"],
                             "max_reuse": args.max_reuse if r["tau"] < 1 else None,
                             "J&F": 100 * r["J&F"], "J": 100 * r["J"], "F": 100 * r["F"],
                             "reuse_rate": r["reuse_rate"], "fps": r["fps"],
                             "per_sequence_JF": {s["sequence"]: 100 * (s["J"] + s["F"]) / 2 for s in r["sequences"]}})
    if not runs:
        return 0
    rows = summarize(runs)
    print(f"\nSlowFast-VOS presets, held-out: {args.sequences}; seeds {args.seeds}\n")
    print("| preset | slow/fast frames | train steps | params M | tau | max reuse | J&F mean | spread | J&F per seed "
          "| J | F | reuse | FPS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        per_seed = " / ".join(f"{v:.1f}" for v in r["J&F_per_seed"])
        print(f"| {r['preset']} | {r['slow_frames']}/{r['fast_frames']} | {r['train_steps']} | {r['params_M']:.2f} | "
              f"{r['tau']:g} | {r['max_reuse'] or '-'} | {r['J&F']:.1f} | {r['spread']:.1f} | {per_seed} | "
              f"{r['J']:.1f} | {r['F']:.1f} | {r['reuse_rate']:.2f} | {r['fps']:.1f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"steps": args.steps, "seeds": seeds, "target_model": args.target_model,
                                               "sequences": args.sequences.split(","), "rows": rows, "runs": runs},
                                              indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
