"""``edgevos build``: TensorRT engines for a bundle (on a Jetson / NVIDIA GPU), or the trtexec script.

    edgevos build bundles/gfrtm --precision int8            # engines via the TensorRT Python API
    edgevos build bundles/gfrtm --precision int8,fp16 --dla 0 --script-only
    edgevos build bundles/gfrtm --register                  # add engines built by the script
"""
from __future__ import annotations

import argparse
from pathlib import Path

from edgevos.errors import DependencyError, InputError
from edgevos.parsing import number


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="bundle directory written by 'edgevos export'")
    p.add_argument("--precision", default="int8", help="comma-separated: int8 (strongly typed Q/DQ), fp16, best")
    p.add_argument("--dla", type=int, default=None, metavar="N", help="build for DLA core N with GPU fallback (Jetson Orin)")
    p.add_argument("--trt-float", choices=["fp16", "fp32"], default=None,
                   help="int8: type of the non-quantized layers: fp16 (the bundle's int8-trt-f16 graphs, exported "
                        "with --trt-float fp16) or fp32; default fp16 where the bundle has those graphs")
    p.add_argument("--workspace-mb", type=int, default=1024, help="builder workspace limit in MiB (default 1024)")
    p.add_argument("--opt-level", type=number(int, 0, 5), default=None, help="TensorRT builder optimisation level 0-5")
    p.add_argument("--timing-cache", help="timing cache file (default: in the bundle, named by TensorRT version and GPU)")
    p.add_argument("--script-only", action="store_true", help="only write a trtexec build script (works without TensorRT)")
    p.add_argument("--script", help="script path (default BUNDLE/build_engines.sh)")
    p.add_argument("--register", action="store_true", help="add engine files built by the script to the bundle manifest")


def main(args) -> int:
    from edgevos.bundle import add_files, load_bundle
    from edgevos.export.tensorrt import BuildOptions, build_bundle_engines, register_engines, write_build_script

    if args.register:
        found = register_engines(args.bundle)
        for stage, per in found.items():
            for prec, p in per.items():
                print(f"registered {stage} {prec}: {p.name}")
        return 0
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    if not precisions:
        raise InputError("--precision is empty: use int8, fp16 or best")
    opts = [
        BuildOptions(p, args.dla, args.workspace_mb, args.timing_cache, args.opt_level,
                     trt_float=getattr(args, "trt_float", None)) for p in precisions
    ]
    bundle = load_bundle(args.bundle)
    if args.script_only:
        script = Path(args.script) if args.script else bundle.root / "build_engines.sh"
        write_build_script(bundle, opts, script)
        inside = bundle.root.resolve() in script.resolve().parents
        if inside:
            add_files(bundle.root, {}, extra_files=[script])
        print(f"wrote {script}: run it on the Jetson ({'bash ' + str(script)})")
        return 0
    from edgevos.runtime.trt_backend import available

    reason = available()
    if reason is not None:
        raise DependencyError(
            f"TensorRT cannot be used on this machine ({reason}). Engines must be built on the target "
            f"device (Jetson / NVIDIA GPU): run 'edgevos build {args.bundle} --precision {args.precision}"
            f"{'' if args.dla is None else f' --dla {args.dla}'} --script-only' here and the script there, "
            f"or run 'edgevos build' on the device"
        )
    for o in opts:
        engines = build_bundle_engines(bundle.root, o)
        for stage, p in engines.items():
            print(f"{stage}: {p.name}")
    return 0
