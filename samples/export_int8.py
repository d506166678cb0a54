"""Export to ONNX + INT8, calibrate, check parity, compare speed.

    python samples/export_int8.py                                      # shipped weights, generated calibration data
    python samples/export_int8.py --calib ../shared/data/davis2016-train --calib-frames 200 --out runs/bundle-davis

``export_bundle`` runs the whole export (calibration, ONNX, INT8, parity report);
this script then reads the bundle's parity report and times both precisions.
"""
import argparse
import time

import numpy as np

from edgevos import Session, export_bundle, load_bundle

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--weights", default="default", help="shipped weights name or checkpoint path")
p.add_argument("--calib", default="test://", help="DAVIS-layout folder, video (+ mask) or test:// (generated)")
p.add_argument("--calib-frames", type=int, default=48)
p.add_argument("--input-size", default="256x448")
p.add_argument("--out", default="runs/bundle-int8", help="bundle directory (must not exist)")
args = p.parse_args()

export_bundle(args.out, "gfrtm", weights=args.weights, precisions=["fp32", "int8-cpu"], calib=args.calib,
              calib_frames=args.calib_frames, input_size=args.input_size, heldout_frames=12, progress=False)

bundle = load_bundle(args.out)  # verifies every file's SHA-256
print(f"\nbundle {bundle.root}: stages {bundle.stage_names}, precisions {bundle.precisions}")
for prec, row in bundle.manifest["parity"]["end_to_end"]["per_precision"].items():
    print(f"  {prec:9s} held-out mask IoU vs PyTorch: mean {row['iou_vs_reference_mean']:.3f}, "
          f"min {row['iou_vs_reference_min']:.3f}; J&F change {100 * row['J&F_change']:+.2f} points")

# time every stage of both precisions on the same feeds (random inputs of the recorded shapes)
rng = np.random.default_rng(0)
for prec in ("fp32", "int8-cpu"):
    be = Session.from_bundle(bundle.root, backend="onnxruntime", precision=prec, threads=1).backend
    total = 0.0
    for spec in bundle.specs:
        feeds = {t.name: rng.standard_normal(t.shape).astype(t.dtype) for t in spec.inputs}
        be.run(spec.name, feeds)  # warm-up
        t0 = time.perf_counter()
        for _ in range(3):
            be.run(spec.name, feeds)
        total += (time.perf_counter() - t0) / 3
    mb = sum(bundle.stage_path(s, prec).stat().st_size for s in bundle.stage_names) / 1e6
    print(f"  {prec:9s} {mb:5.1f} MB, all stages once: {1e3 * total:6.1f} ms (1 thread)")
