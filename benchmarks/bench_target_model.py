"""G-FRTM-fast at tau 1 with the online target model's settings varied (run-time only, same weights).

Each variant overrides fields of ``edgevos.target_model.TargetModelConfig`` (and
optionally the model input size) and is scored on held-out DAVIS train sequences
(J&F, DAVIS protocol, per sequence).  Prints a table, writes JSON.

    python benchmarks/bench_target_model.py (--weights default | --bundle DIR --precision int8-cpu) \\
        --variants "base;proj_dim=64;update_every=4;memory_size=40" \\
        [--sequences bear,car-turn,...] [--davis ../shared/data/davis2016-train] [--json out.json]

A variant is ``;``-separated, its fields ``,``-separated ``name=value`` pairs; ``base``
is the shipped settings; ``input_size=480x864`` changes the model input; ``target_inputs=f16+f32``
the encoder outputs the target model reads.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgevos.train.config import HELDOUT


def parse_variant(text: str) -> dict:
    out = {}
    if text.strip() in ("", "base"):
        return out
    for item in text.split(","):
        key, _, value = item.partition("=")
        key = key.strip()
        if key == "input_size":
            from edgevos.parsing import parse_hw

            out[key] = parse_hw(value, "input_size", multiple=32)
        elif key == "target_inputs":
            out[key] = tuple(value.split("+"))
        elif key == "init_cg_iters":
            out[key] = tuple(int(v) for v in value.split("/"))
        else:
            out[key] = float(value) if "." in value or "e" in value.lower() else int(value)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="default")
    ap.add_argument("--bundle", default=None, help="score an exported bundle on ONNX Runtime instead of --weights")
    ap.add_argument("--precision", default=None, help="the bundle's precision (e.g. int8-cpu)")
    ap.add_argument("--variants", default="base")
    ap.add_argument("--sequences", default=",".join(HELDOUT))
    ap.add_argument("--davis", default="../shared/data/davis2016-train")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    from edgevos.data import DavisDataset
    from edgevos.evaluate_model import run_sequence
    from edgevos.models.registry import get_family
    from edgevos.runtime.session import Session

    torch.set_num_threads(args.threads)
    ds = DavisDataset(args.davis)
    names = [s for s in args.sequences.split(",") if s]
    models = {}
    rows = []
    for text in args.variants.split(";"):
        over = parse_variant(text)
        size = over.pop("input_size", None)
        inputs = over.pop("target_inputs", None)
        if args.bundle and size:
            raise SystemExit("input_size variants need --weights: a bundle has a fixed input size")
        if not args.bundle and size not in models:
            models[size] = get_family("gfrtm").build(weights=args.weights, **({"input_size": size} if size else {}))
        per_seq, t0 = {}, time.time()
        for name in names:
            s = Session.from_bundle(args.bundle, precision=args.precision, tau=1.0, threads=args.threads) \
                if args.bundle else Session.from_model(models[size], tau=1.0, threads=args.threads)
            s.program.target_config = replace(s.program.target_config, **over)
            if inputs:
                s.program.target_inputs = inputs
            stats = run_sequence(s, ds[name])["eval"]["stats"]
            per_seq[name] = 100 * float(np.mean([v["J&F-Mean"] for v in stats.values()]))
        jf = float(np.mean(list(per_seq.values())))
        input_size = s.program.input_size
        rows.append({"variant": text.strip() or "base", "input_size": list(input_size), "J&F": jf,
                     "per_sequence": per_seq, "seconds": time.time() - t0})
        print(f"{rows[-1]['variant']:40s} {jf:6.2f}  " + " ".join(f"{k} {v:5.1f}" for k, v in per_seq.items()),
              flush=True)
    print()
    print("| variant | input | J&F | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for r in rows:
        print(f"| {r['variant']} | {r['input_size'][0]}x{r['input_size'][1]} | {r['J&F']:.2f} | "
              + " | ".join(f"{r['per_sequence'][n]:.1f}" for n in names) + " |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"weights": args.bundle or args.weights, "precision": args.precision,
                                               "sequences": names, "rows": rows,
                                               "machine": platform.processor() or platform.machine(),
                                               "threads": args.threads}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
