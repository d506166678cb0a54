"""Compare the SlowFast-VOS pathway presets on the same held-out DAVIS sequences.

Every preset is trained with the same recipe and step budget (the ``edgevos train
slowfast`` defaults: :class:`edgevos.train.slowfast.TrainConfig`), then evaluated
(:func:`edgevos.evaluate`, what ``edgevos eval --family slowfast`` runs) at tau 1
(slow pathway on every frame) and at a reuse threshold with a reuse cap, all in
this process.  Prints one table and writes JSON.  Training is skipped for a preset
whose final checkpoint already exists, and evaluation for one whose
``eval/model_eval.json`` exists, so the script can be rerun (or run as several
processes, one per list of presets) and then once more to collect the table.

    python benchmarks/slowfast_presets.py --presets 1-1,3-3,7-7,1-7,3-7 --steps 1000 \
        --davis ../shared/data/davis2016-train --backbone-weights ../shared/weights/mobilenet_v2-b0353104.pth \
        --runs runs/slowfast-presets --json benchmarks/results/slowfast_presets.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELDOUT = "bear,car-turn,dance-jump,kite-walk,motocross-bumps"


def train(preset: str, args) -> Path:
    from edgevos.train.slowfast import TrainConfig, Trainer

    out = Path(args.runs) / preset
    final = out / f"slowfast_{preset}_final.pt"
    if final.is_file():
        return final
    cfg = TrainConfig(out=str(out), davis=(args.davis,), preset=preset, steps=args.steps, threads=args.threads,
                      backbone_weights=args.backbone_weights or None)
    print(f"+ train slowfast {preset}: {args.steps} steps into {out}", flush=True)
    return Trainer(cfg).run()


def evaluate(preset: str, weights: Path, args) -> dict:
    """J&F, reuse rate and FPS at tau 1 and ``--tau``; kept in ``<runs>/<preset>/eval/model_eval.json``
    (the file ``edgevos eval --family slowfast --out`` writes)."""
    out = Path(args.runs) / preset / "eval"
    res = out / "model_eval.json"
    if not res.is_file() or args.reeval:
        from edgevos import evaluate as evaluate_model
        from edgevos.data import DavisDataset
        from edgevos.evaluate_model import format_rows, plot_rows

        print(f"+ evaluate slowfast {preset} ({weights}) at tau 1,{args.tau:g}", flush=True)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="1-1,3-3,7-7,1-7,3-7")
    ap.add_argument("--steps", type=int, default=1000, help="training steps per preset (same for all)")
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

    rows = []
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        weights = train(preset, args)
        if args.train_only:
            continue
        res = evaluate(preset, weights, args)
        facts = model_facts(preset, weights)
        for r in res["rows"]:
            rows.append({"preset": preset, **facts, "tau": r["tau"], "max_reuse": args.max_reuse if r["tau"] < 1 else None,
                         "J&F": 100 * r["J&F"], "J": 100 * r["J"], "F": 100 * r["F"],
                         "reuse_rate": r["reuse_rate"], "fps": r["fps"],
                         "per_sequence_JF": {s["sequence"]: 100 * (s["J"] + s["F"]) / 2 for s in r["sequences"]}})
    if not rows:
        return 0
    print(f"\nSlowFast-VOS presets, held-out: {args.sequences}\n")
    print("| preset | slow/fast frames | train steps | params M | tau | max reuse | J&F | J | F | reuse | FPS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['slow_frames']}/{r['fast_frames']} | {r['train_steps']} | {r['params_M']:.2f} | {r['tau']:g} | "
              f"{r['max_reuse'] or '-'} | {r['J&F']:.1f} | {r['J']:.1f} | {r['F']:.1f} | {r['reuse_rate']:.2f} | "
              f"{r['fps']:.1f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"steps": args.steps, "sequences": args.sequences.split(","),
                                               "rows": rows}, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
