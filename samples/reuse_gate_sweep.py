"""Reuse-gate sweep: tau vs FPS vs J&F (the paper's speed/accuracy curve) on your data.

    python samples/reuse_gate_sweep.py                                   # generated sequences
    python samples/reuse_gate_sweep.py --davis ../shared/data/davis2016-train --sequences bear,boat
    python samples/reuse_gate_sweep.py --bundle runs/demo/bundle --tau 1,0.9,0.8,0.7,0.5

tau = 1 never reuses (plain FRTM-fast); lower tau reuses more frames: faster, and
at some point less accurate.  Writes a table, sweep.json and sweep.png.
"""
import argparse
import json
from pathlib import Path

from edgevos import evaluate
from edgevos.evaluate_model import format_rows, plot_rows

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--davis", help="DAVIS-layout folder (default: generated sequences with ground truth)")
p.add_argument("--sequences", default="bear,boat", help="DAVIS sequences to use")
p.add_argument("--tau", default="1,0.8,0.7,0.5", help="comma-separated thresholds")
p.add_argument("--weights", default="default", help="shipped weights name or checkpoint path (PyTorch)")
p.add_argument("--bundle", help="exported bundle (ONNX Runtime) instead of PyTorch weights")
p.add_argument("--input-size", default="256x448", help="model input HxW for --weights")
p.add_argument("--frames", type=int, default=40, help="frames per generated sequence")
p.add_argument("--out", default="runs/reuse_gate_sweep")
args = p.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

if args.davis:
    from edgevos.data import DavisDataset

    ds = DavisDataset(args.davis, sequences=args.sequences.split(","))
    sequences = [ds[name] for name in ds.sequences]
else:
    from edgevos.data import SyntheticConfig, make_sequence

    sequences = [make_sequence(SyntheticConfig(height=240, width=432, num_frames=args.frames, num_objects=1,
                                               seed=s, speed=0.6)) for s in (11, 12)]

rows = evaluate(sequences, tau=[float(t) for t in args.tau.split(",")], family="gfrtm", weights=args.weights,
                bundle=args.bundle, input_size=args.input_size)
print(format_rows(rows))
(out / "sweep.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "sequences"} for r in rows], indent=2))
png = plot_rows(rows, out / "sweep.png", title="reuse gate: FPS vs J&F over tau")
print(f"wrote {out / 'sweep.json'}" + (f" and {png}" if png else ""))
