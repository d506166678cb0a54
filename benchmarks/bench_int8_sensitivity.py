"""Which layers cost the int8-cpu encoders their accuracy: SNR of the encoder outputs per keep-float choice.

The encoders of an exported bundle (``encoder_low``: image -> f4, f8; ``encoder_high``: f8 -> f16,
f32) are quantized again with each variant's ``--keep-float`` patterns (as ``edgevos export
--keep-float`` takes them) on frames of the calibration sequences, and compared with the bundle's
FP32 graphs on frames of held-out sequences: SNR (dB) of f8, of f16 from the FP32 f8 ("own") and of
f16 from the int8 f8 ("chained", what the target model reads at run time). Prints a table, writes JSON.

    python benchmarks/bench_int8_sensitivity.py --bundle DIR \\
        --variants "base;*features.1/*;*features.0/*,*features.1/*" [--json out.json]

A variant is ``;``-separated; ``base`` keeps nothing float, anything else is ``,``-separated fnmatch
patterns of node names left in float.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np

CALIB = "bmx-bumps,boat,breakdance-flare,bus,dog-agility,drift-turn,elephant,flamingo,hike,hockey,horsejump-low,lucia"


def snr_db(got: np.ndarray, ref: np.ndarray) -> float:
    """10 log10(signal power / error power) of ``got`` against ``ref``."""
    err = float(np.mean((np.asarray(got, np.float64) - ref) ** 2))
    return float("inf") if err == 0 else 10.0 * np.log10(float(np.mean(np.asarray(ref, np.float64) ** 2)) / err)


def frames(davis, names, per, hw):
    from edgevos.data import DavisDataset
    from edgevos.programs.base import resize_image, to_input

    ds = DavisDataset(davis)
    out = []
    for name in names:
        seq = ds[name]
        for i in np.linspace(0, len(seq) - 1, per).astype(int):
            out.append(to_input(resize_image(np.ascontiguousarray(seq.frame(int(i))), hw), hw))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, help="exported bundle with FP32 encoder_low/encoder_high graphs")
    ap.add_argument("--variants", default="base")
    ap.add_argument("--davis", default="../shared/data/davis2016-train")
    ap.add_argument("--calib-sequences", default=CALIB)
    ap.add_argument("--calib-per-sequence", type=int, default=4)
    ap.add_argument("--sequences", default="bear,car-turn,dance-jump,kite-walk,motocross-bumps")
    ap.add_argument("--per-sequence", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import onnxruntime as ort

    from edgevos.export.quantize import quantize_stage
    from edgevos.stages import StageSpec, TensorSpec

    bundle = Path(args.bundle)
    hw = tuple(json.loads((bundle / "manifest.json").read_text())["input_size"])

    def session(path):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def spec(name, ins, outs):
        return StageSpec(name, tuple(TensorSpec(n, (1,)) for n in ins), tuple(TensorSpec(n, (1,)) for n in outs))

    def run_low(s, x):
        return dict(zip(("f4", "f8"), s.run(["f4", "f8"], {"image": x})))

    low32, high32 = session(bundle / "encoder_low.onnx"), session(bundle / "encoder_high.onnx")
    calib = frames(args.davis, args.calib_sequences.split(","), args.calib_per_sequence, hw)
    calib_f8 = [run_low(low32, x)["f8"] for x in calib]
    held = frames(args.davis, args.sequences.split(","), args.per_sequence, hw)
    ref = []
    for x in held:
        f8 = run_low(low32, x)["f8"]
        ref.append({"f8": f8, "f16": high32.run(["f16"], {"f8": f8})[0]})

    rows = []
    for variant in [v.strip() for v in args.variants.split(";") if v.strip()]:
        keep = [] if variant == "base" else [p for p in variant.split(",") if p]
        with tempfile.TemporaryDirectory(prefix="edgevos-sens-") as tmp:
            ql, qh = Path(tmp) / "low.onnx", Path(tmp) / "high.onnx"
            quantize_stage(bundle / "encoder_low.onnx", ql, spec("encoder_low", ["image"], ["f4", "f8"]),
                           [{"image": x} for x in calib], "int8-cpu", keep_float=keep)
            quantize_stage(bundle / "encoder_high.onnx", qh, spec("encoder_high", ["f8"], ["f16", "f32"]),
                           [{"f8": f} for f in calib_f8], "int8-cpu", keep_float=keep)
            low8, high8 = session(ql), session(qh)
            s8, own, chained = [], [], []
            for x, r in zip(held, ref):
                f8 = run_low(low8, x)["f8"]
                s8.append(snr_db(f8, r["f8"]))
                own.append(snr_db(high8.run(["f16"], {"f8": r["f8"]})[0], r["f16"]))
                chained.append(snr_db(high8.run(["f16"], {"f8": f8})[0], r["f16"]))
        rows.append({"variant": variant, "keep_float": keep, "snr_f8": float(np.mean(s8)),
                     "snr_f16_own": float(np.mean(own)), "snr_f16_chained": float(np.mean(chained))})
        r = rows[-1]
        print(f"{variant:40s} f8 {r['snr_f8']:6.2f} dB  f16 own {r['snr_f16_own']:6.2f}  chained "
              f"{r['snr_f16_chained']:6.2f}", flush=True)

    print(f"\n{bundle} at {hw[0]}x{hw[1]}: {len(calib)} calibration frames, {len(held)} held-out frames\n")
    print("| keep float | f8 SNR dB | f16 SNR dB (FP32 f8 in) | f16 SNR dB (int8 f8 in) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['snr_f8']:.2f} | {r['snr_f16_own']:.2f} | {r['snr_f16_chained']:.2f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"bundle": str(bundle), "input_size": list(hw),
                                               "calib_frames": len(calib), "heldout_frames": len(held),
                                               "machine": platform.machine(), "rows": rows}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
