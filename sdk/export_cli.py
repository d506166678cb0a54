"""``edgevos export``: the argument layer over :func:`edgevos.export_bundle`.

    edgevos export --family gfrtm --precision fp32,int8-cpu --calib test:// --out bundles/gfrtm
    edgevos export --family gfrtm --precision int8-trt --calib ../shared/data/davis2016-train \\
        --calib-frames 200 --method percentile --keep-float 'int8-trt:/features.0/*' --out bundles/gfrtm-trt
"""
from __future__ import annotations

import argparse

from edgevos.backbone_weights import backbone_weights_arg
from edgevos.parsing import number, threads_arg

#: the opsets of the ONNX exporter edgevos uses (torch's TorchScript-based one)
OPSETS = (7, 20)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", default="gfrtm", help="model family (default gfrtm)")
    p.add_argument("--backbone", help="backbone override, e.g. mobilenetv2 or resnet18")
    p.add_argument("--preset", help="pathway preset for families that have them (slowfast: 1-1, 3-3, 7-7, 1-7, 3-7)")
    p.add_argument("--weights", help="'default' (shipped checkpoint) or a checkpoint path; omit for random decoder weights")
    p.add_argument("--backbone-weights", type=backbone_weights_arg,
                   help="torchvision ImageNet state dict for the backbone (when --weights is omitted)")
    p.add_argument("--precision", default="fp32,int8-cpu", help="comma-separated: fp32, int8-cpu, int8-trt (fp32 is always included)")
    p.add_argument("--calib", default="test://", help="calibration source: DAVIS-layout folder, video file (+ --calib-mask) or test:// (default)")
    p.add_argument("--calib-mask", help="first-frame mask PNG when --calib is a video file")
    p.add_argument("--calib-sequences", default="", help="comma-separated sequence names for calibration (default: all but the held-out ones)")
    p.add_argument("--calib-frames", type=int, default=100, help="total calibration frames, spread over the sequences (default 100)")
    p.add_argument("--calib-samples", type=number(int, 1), default=48, help="max recorded feeds per stage kept for calibration (default 48)")
    p.add_argument("--method", default=None,
                   help="activation calibration method: minmax, entropy or percentile, for both INT8 flavours or per "
                        "flavour (int8-cpu=minmax,int8-trt=percentile); default: each flavour's measured best "
                        "(edgevos.export.quantize.DEFAULT_METHOD)")
    p.add_argument("--keep-float", default="",
                   help="comma-separated stage names or node-name patterns (fnmatch) left in float; prefix one with "
                        "'int8-cpu:' or 'int8-trt:' to apply it to that flavour only; added to the family's own "
                        "float stages (slowfast: gate)")
    p.add_argument("--input-size", default=None,
                   help="model input HxW, multiples of 32 (default: the size the weights were trained at)")
    p.add_argument("--heldout-sequences", default="", help="comma-separated held-out sequences for the parity report (default: the last 1-2 of the source)")
    p.add_argument("--heldout-frames", type=number(int, 1), default=30, help="max frames per held-out sequence (default 30)")
    p.add_argument("--tau", type=number(float, 0.0, 1.0), default=None, help="reuse-gate threshold for the step program (default: the config's)")
    p.add_argument("--calib-tau", type=number(float, 0.0, 1.0), default=0.5,
                   help="reuse-gate threshold while calibrating (< 1 so gate and reuse stages see real inputs; default 0.5)")
    p.add_argument("--min-calib-samples", type=number(int, 1), default=4,
                   help="stages with fewer recorded calibration feeds stay in fp32 (default 4)")
    p.add_argument("--no-speed-check", action="store_true",
                   help="keep every int8-cpu stage even where it times slower than FP32 here (default: such a stage stays FP32)")
    p.add_argument("--trt-float", choices=["fp16", "fp32"], default=None,
                   help="int8-trt: fp16 also writes each stage's Q/DQ graph with FP16 float compute (what a strongly "
                        "typed TensorRT int8 engine then runs its non-quantized layers in); default: "
                        "edgevos.export.trt_float16.DEFAULT_TRT_FLOAT")
    p.add_argument("--opset", type=number(int, *OPSETS), default=17, help="ONNX opset (7-20; default 17)")
    p.add_argument("--threads", type=threads_arg(), default=1, help="threads for PyTorch and ONNX Runtime (default 1)")
    p.add_argument("--no-parity", action="store_true", help="skip the parity report (FP32 verification still runs)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def main(args) -> int:
    """Export, then print the bundle's parity report and where it was written (results, on stdout)."""
    import json

    from edgevos.export.exporter import export_bundle
    from edgevos.export.parity import format_report

    out = export_bundle(args.out, args.family, weights=args.weights, backbone=args.backbone, preset=args.preset,
                        backbone_weights=args.backbone_weights, precisions=args.precision, calib=args.calib,
                        calib_mask=args.calib_mask, calib_sequences=args.calib_sequences, calib_frames=args.calib_frames,
                        calib_samples=args.calib_samples, method=args.method, keep_float=args.keep_float,
                        input_size=args.input_size, heldout_sequences=args.heldout_sequences,
                        heldout_frames=args.heldout_frames, tau=args.tau, calib_tau=args.calib_tau,
                        min_calib_samples=args.min_calib_samples, speed_check=not args.no_speed_check, opset=args.opset,
                        threads=args.threads, parity=not args.no_parity, progress=not args.quiet,
                        isolate=False, trt_float=args.trt_float)  # this process never loads GStreamer
    parity = out / "parity.json"
    if parity.is_file():
        print(format_report(json.loads(parity.read_text())))
    print(f"wrote {out}")
    return 0
