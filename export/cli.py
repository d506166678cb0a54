"""``edgevos export``: a model family -> a verified bundle with per-stage ONNX, INT8 and a parity report.

    edgevos export --family gfrtm --precision fp32,int8-cpu --calib test:// --out bundles/gfrtm
    edgevos export --family gfrtm --precision int8-trt --calib ../shared/data/davis2016-train \\
        --calib-frames 200 --method percentile --keep-float 'int8-trt:/features.0/*' --out bundles/gfrtm-trt
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from edgevos.errors import InputError

PRECISIONS = ("fp32", "int8-cpu", "int8-trt")


def _size(text: str):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--input-size '{text}' is not HxW (e.g. 480x864)") from None
    if h <= 0 or w <= 0:
        raise InputError(f"--input-size '{text}' must be positive")
    return h, w


def _list(text):
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _methods(text, flavours):
    """--method: one method for every flavour, or 'flavour=method,...' (missing flavours: defaults)."""
    from edgevos.export.quantize import DEFAULT_METHOD, METHODS

    out = dict(DEFAULT_METHOD)
    for item in _list(text):
        flavour, sep, method = item.rpartition("=")
        if method not in METHODS:
            raise InputError(f"--method {text}: '{method}' is not one of {list(METHODS)}")
        if sep and flavour not in DEFAULT_METHOD:
            raise InputError(f"--method {text}: '{flavour}' is not an INT8 flavour ({list(DEFAULT_METHOD)})")
        for f in ([flavour] if sep else list(DEFAULT_METHOD)):
            out[f] = method
    return {f: out[f] for f in flavours}


def _keep_float(text, flavour):
    """--keep-float items for one flavour: unprefixed ones plus those prefixed 'flavour:'."""
    keep = []
    for item in _list(text):
        prefix, sep, rest = item.partition(":")
        if sep and prefix in PRECISIONS:
            if prefix == flavour:
                keep.append(rest)
        else:
            keep.append(item)
    return keep


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--family", default="gfrtm", help="model family (default gfrtm)")
    p.add_argument("--backbone", help="backbone override, e.g. mobilenetv2 or resnet18")
    p.add_argument("--preset", help="pathway preset for families that have them (slowfast: 1-1, 3-3, 7-7, 1-7, 3-7)")
    p.add_argument("--weights", help="'default' (shipped checkpoint) or a checkpoint path; omit for random decoder weights")
    p.add_argument("--backbone-weights", help="torchvision ImageNet state dict for the backbone (when --weights is omitted)")
    p.add_argument("--precision", default="fp32,int8-cpu", help="comma-separated: fp32, int8-cpu, int8-trt (fp32 is always included)")
    p.add_argument("--calib", default="test://", help="calibration source: DAVIS-layout folder, video file (+ --calib-mask) or test:// (default)")
    p.add_argument("--calib-mask", help="first-frame mask PNG when --calib is a video file")
    p.add_argument("--calib-sequences", default="", help="comma-separated sequence names for calibration (default: all but the held-out ones)")
    p.add_argument("--calib-frames", type=int, default=100, help="total calibration frames, spread over the sequences (default 100)")
    p.add_argument("--calib-samples", type=int, default=48, help="max recorded feeds per stage kept for calibration (default 48)")
    p.add_argument("--method", default=None,
                   help="activation calibration method: minmax, entropy or percentile, for both INT8 flavours or per "
                        "flavour (int8-cpu=minmax,int8-trt=percentile); default: each flavour's measured best "
                        "(edgevos.export.quantize.DEFAULT_METHOD)")
    p.add_argument("--keep-float", default="",
                   help="comma-separated stage names or node-name patterns (fnmatch) left in float; prefix one with "
                        "'int8-cpu:' or 'int8-trt:' to apply it to that flavour only")
    p.add_argument("--input-size", default=None,
                   help="model input HxW, multiples of 32 (default: the size the weights were trained at)")
    p.add_argument("--heldout-sequences", default="", help="comma-separated held-out sequences for the parity report (default: the last 1-2 of the source)")
    p.add_argument("--heldout-frames", type=int, default=30, help="max frames per held-out sequence (default 30)")
    p.add_argument("--tau", type=float, default=None, help="reuse-gate threshold for the step program (default: the config's)")
    p.add_argument("--calib-tau", type=float, default=0.5,
                   help="reuse-gate threshold while calibrating (< 1 so gate and reuse stages see real inputs; default 0.5)")
    p.add_argument("--min-calib-samples", type=int, default=4,
                   help="stages with fewer recorded calibration feeds stay in fp32 (default 4)")
    p.add_argument("--no-speed-check", action="store_true",
                   help="keep every int8-cpu stage even where it times slower than FP32 here (default: such a stage stays FP32)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--threads", type=int, default=1, help="threads for PyTorch and ONNX Runtime (default 1)")
    p.add_argument("--no-parity", action="store_true", help="skip the parity report (FP32 verification still runs)")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def main(args) -> int:
    precisions = _list(args.precision)
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise InputError(f"--precision {args.precision}: unknown {bad}; choose from {list(PRECISIONS)}")
    precisions = ["fp32"] + [p for p in precisions if p != "fp32"]
    input_size = _size(args.input_size) if args.input_size else None
    methods = _methods(getattr(args, "method", None), [p for p in precisions if p != "fp32"])
    if args.calib_frames < 2:
        raise InputError(f"--calib-frames {args.calib_frames}: calibration needs at least 2 frames")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out} exists and is not empty: choose a new directory or remove it")

    from edgevos.models.registry import get_family

    fam = get_family(args.family)  # validates the name before anything heavy happens

    # data first: a wrong folder should fail before torch loads
    from edgevos.export.calibrate import open_sequences

    calib_names, held_names = _list(args.calib_sequences), _list(args.heldout_sequences)
    available = open_sequences(args.calib, calib_names + held_names if (calib_names and held_names) else (), mask=args.calib_mask)
    by_name = {s.name: s for s in available}
    for n in held_names:
        if n not in by_name:
            raise InputError(f"--heldout-sequences: '{n}' is not in {args.calib}; available: {sorted(by_name)}")
    if not held_names and not args.no_parity:
        if len(available) >= 2:
            k = 1 if len(available) <= 3 else 2
            held_names = [s.name for s in available[-k:]]
        else:
            held_names = [available[0].name]  # a single source: parity on the calibration sequence itself
    calib = [s for s in available if (s.name in calib_names if calib_names else s.name not in held_names)] or available
    heldout = [by_name[n] for n in held_names]

    import dataclasses

    import torch

    torch.set_num_threads(max(1, int(args.threads)))
    from edgevos.export.bundle import write_bundle
    from edgevos.export.calibrate import RecordingBackend, collect_calibration
    from edgevos.export.onnx_export import export_stages
    from edgevos.export.parity import end_to_end, print_report, stage_parity
    from edgevos.export.quantize import quantize_stage
    from edgevos.runtime.backends import TorchBackend
    from edgevos.runtime.ort_backend import OrtBackend

    overrides = {}
    if args.backbone:
        overrides["backbone"] = args.backbone
    if args.preset:
        overrides["preset"] = args.preset
    if args.backbone_weights:
        overrides["backbone_weights"] = args.backbone_weights
    t0 = time.perf_counter()
    model = fam.build(weights=args.weights, input_size=input_size, **overrides)
    if input_size is None:  # the size the weights were trained at
        input_size = tuple(getattr(model.config, "input_size", None) or model.stage_specs()[0].inputs[0].shape[2:])
    specs = model.stage_specs()
    modules = model.stage_modules()
    config = dataclasses.asdict(model.config)
    config["input_size"] = list(input_size)
    tau = float(args.tau if args.tau is not None else config.get("tau", 1.0))

    def factory(backend):
        return fam.make_program(backend, config, tau=tau)

    def calib_factory(backend):
        return fam.make_program(backend, config, tau=min(tau, float(args.calib_tau)))

    reference = TorchBackend(modules, specs)
    print(f"calibration: {len(calib)} sequence(s) from {args.calib}, up to {args.calib_frames} frames")
    calset = collect_calibration(
        calib_factory, reference, calib, args.calib_frames, args.calib_samples, progress=not args.quiet
    )
    never = calset.summary["stages_never_run"]
    if never and any(p.startswith("int8") for p in precisions):
        print(f"note: stages {never} never ran on the calibration frames (tau={min(tau, args.calib_tau)}); they stay fp32")

    out.mkdir(parents=True, exist_ok=True)
    verify = {}
    real = {s: v[:2] for s, v in calset.samples.items()}
    fp32 = export_stages(modules, specs, out, args.opset, real_feeds=real, report=verify)
    files = {s.name: {"fp32": fp32[s.name]} for s in specs}
    stage_precision = {}
    quant = {"method": methods, "keep_float": {p: _keep_float(args.keep_float, p) for p in methods}, "stages": {}}
    for precision in [p for p in precisions if p != "fp32"]:
        keep = quant["keep_float"][precision]
        stage_precision[precision] = {}
        for spec in specs:
            samples = calset.samples.get(spec.name, [])
            if spec.name in keep or len(samples) < args.min_calib_samples:
                files[spec.name][precision] = fp32[spec.name]
                stage_precision[precision][spec.name] = "fp32"
                reason = "keep_float" if spec.name in keep else f"{len(samples)} calibration samples < {args.min_calib_samples}"
                quant["stages"].setdefault(spec.name, {})[precision] = {"quantized": False, "reason": reason}
                continue
            path = out / f"{spec.name}.{precision}.onnx"
            info = quantize_stage(fp32[spec.name], path, spec, samples, precision, methods[precision], keep)
            quant["stages"].setdefault(spec.name, {})[precision] = info
            if info["quantized"] and precision == "int8-cpu" and not args.no_speed_check:
                # int8-cpu exists to be faster: keep FP32 for a stage where it is not (measured here)
                from edgevos.export.benchmark import interleaved_ms

                fp_ms, q_ms = interleaved_ms([fp32[spec.name], path], samples[0], threads=max(1, int(args.threads)))
                info["speed_check_ms"] = {"fp32": round(fp_ms, 3), "int8-cpu": round(q_ms, 3)}
                if q_ms >= fp_ms:
                    info["used"] = "fp32"
                    info["reason"] = f"INT8 {q_ms:.3f} ms >= FP32 {fp_ms:.3f} ms on this machine"
                    path.unlink()
                    info["quantized"] = False
            if info["quantized"]:
                files[spec.name][precision] = path
            else:
                files[spec.name][precision] = fp32[spec.name]
                stage_precision[precision][spec.name] = "fp32"
    common = dict(
        family=fam.name,
        config=config,
        input_size=input_size,
        normalization=dict(model.normalization),
        specs=specs,
        files=files,
        calibration={**calset.summary, "source": args.calib, "method": methods},
        preset=getattr(model.config, "preset", None),
        stage_precision=stage_precision,
        quantization=quant,
        extra={"fp32_verification": verify},
    )
    write_bundle(out, **common)
    report = None
    if not args.no_parity:
        candidates = {p: OrtBackend(out, p, threads=args.threads) for p in precisions}
        recorder = RecordingBackend(reference, max_samples_per_stage=8, seed=1)
        print(f"parity: {len(heldout)} held-out sequence(s): {[s.name for s in heldout]}")
        e2e = end_to_end(factory, recorder, candidates, heldout, args.heldout_frames)
        stages = stage_parity(reference, candidates, recorder.samples)
        report = {"reference": "torch-fp32", "heldout": [s.name for s in heldout], "stages": stages, "end_to_end": e2e}
        write_bundle(out, parity=report, **common)
        print_report(report)
    print(f"bundle written to {out} ({time.perf_counter() - t0:.0f} s)")
    return 0
