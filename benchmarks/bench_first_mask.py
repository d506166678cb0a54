"""First mask from a box: GrabCut's J against ground truth, and the model's refinement.

For every DAVIS-layout sequence the box is the bounding box of the first frame's
ground truth; the first mask is made from it by GrabCut alone and by GrabCut refined
with the model (``edgevos.runtime.pipeline.mask_from_boxes``), and scored by J (IoU).
Prints per-sequence rows and means (held-out sequences and all), writes JSON.

    python benchmarks/bench_first_mask.py [--weights default | --bundle B] [--davis ../shared/data/davis2016-train]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgevos.train.config import HELDOUT


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--weights", default="default", help="G-FRTM-fast checkpoint (PyTorch reference)")
    src.add_argument("--bundle", help="an exported bundle (ONNX Runtime) instead")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--davis", default="../shared/data/davis2016-train")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    from edgevos.data import DavisDataset
    from edgevos.data.boxes import grabcut_mask
    from edgevos.runtime.pipeline import mask_from_boxes
    from edgevos.runtime.session import Session

    if args.bundle:
        session = Session.from_bundle(args.bundle, precision=args.precision)
    else:
        from edgevos.models.registry import get_family

        session = Session.from_model(get_family("gfrtm").build(weights=args.weights))
    ds = DavisDataset(args.davis)
    rows = []
    for name in ds.sequences:
        seq = ds[name]
        rgb, gt = seq.frame(0), seq.mask(0)
        gt = (gt > 0) & (gt != 255)
        ys, xs = np.nonzero(gt)
        box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        j = lambda m: float((m & gt).sum() / max((m | gt).sum(), 1))  # noqa: E731
        rows.append({"sequence": name, "heldout": name in HELDOUT, "box": box,
                     "grabcut": j(grabcut_mask(rgb, [box]) == 1),
                     "refined": j(mask_from_boxes(session, rgb, [box]) == 1)})
        print(f"{name:20s} GrabCut J {rows[-1]['grabcut']:.3f}  refined {rows[-1]['refined']:.3f}", flush=True)
    print("\n| sequences | n | GrabCut J | GrabCut + model J |\n|---|---|---|---|")
    for label, sel in (("held out", [r for r in rows if r["heldout"]]), ("all", rows)):
        print(f"| {label} | {len(sel)} | {np.mean([r['grabcut'] for r in sel]):.3f} | "
              f"{np.mean([r['refined'] for r in sel]):.3f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"weights": args.weights, "bundle": args.bundle, "rows": rows}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
