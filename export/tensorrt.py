"""TensorRT engines for a bundle: one engine per stage, via the Python API or trtexec.

Importable without TensorRT.  Precisions (TensorRT 10.x):

``int8``  the bundle's ``int8-trt`` Q/DQ ONNX as a *strongly typed* network: the
          Q/DQ nodes decide which layers run INT8, everything else keeps the ONNX
          types (FP32).  Stages exported in float (``--keep-float``) stay float.
``fp16``  the ``fp32`` ONNX with the FP16 builder flag.
``best``  the Q/DQ ONNX as a weakly typed network with INT8 + FP16 flags: explicit
          INT8 where the Q/DQ nodes are, FP16 fallback for the other layers.

With a DLA core, networks are weakly typed (DLA needs the FP16/INT8 flags) and
GPU fallback is on.  Engine names encode what they depend on:
``<stage>.<precision>.trt<major.minor.patch>.<gpu>.<H>x<W>.engine``.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from edgevos.errors import BundleError, DependencyError, InputError, require

TRT_PRECISIONS = ("int8", "fp16", "best")
#: ONNX precision in the bundle each engine precision is built from (fallback second)
SOURCE = {"int8": ("int8-trt",), "fp16": ("fp32",), "best": ("int8-trt", "fp32")}
JETSON_MODEL = Path("/proc/device-tree/model")
TRTEXEC = "/usr/src/tensorrt/bin/trtexec"


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "int8"
    dla_core: Optional[int] = None
    workspace_mb: int = 1024
    timing_cache: Optional[str] = None
    optimization_level: Optional[int] = None  # TensorRT builder optimisation level 0..5

    def __post_init__(self):
        if self.precision not in TRT_PRECISIONS:
            raise InputError(f"TensorRT precision '{self.precision}' is unknown: use one of {list(TRT_PRECISIONS)}")
        if self.dla_core is not None and int(self.dla_core) < 0:
            raise InputError(f"--dla {self.dla_core}: DLA cores are numbered from 0 (Orin AGX has 0 and 1)")
        if int(self.workspace_mb) <= 0:
            raise InputError(f"--workspace-mb {self.workspace_mb} must be positive")

    @property
    def tag(self) -> str:
        """Precision part of the engine name, e.g. ``int8`` or ``fp16-dla0``."""
        return self.precision if self.dla_core is None else f"{self.precision}-dla{int(self.dla_core)}"

    @property
    def strongly_typed(self) -> bool:
        return self.precision == "int8" and self.dla_core is None


def slug(text: str) -> str:
    """Lowercase, runs of other characters -> '-' (the build script does the same)."""
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return s or "unknown"


def short_version(version: str) -> str:
    """'10.3.0.30' -> '10.3.0'."""
    parts = re.findall(r"\d+", str(version))
    return ".".join(parts[:3]) if parts else "unknown"


def engine_name(stage: str, tag: str, trt_version: str, gpu: str, size_hw: Sequence[int]) -> str:
    h, w = (int(v) for v in size_hw)
    return f"{stage}.{tag}.trt{short_version(trt_version)}.{slug(gpu)}.{h}x{w}.engine"


def gpu_name() -> str:
    """The Jetson model (device tree), else the CUDA device 0 name; 'unknown' without either."""
    if JETSON_MODEL.is_file():
        return JETSON_MODEL.read_bytes().rstrip(b"\x00").decode(errors="replace").strip()
    try:
        cudart = _cudart()
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            name = props.name
            return (name.split(b"\x00")[0].decode() if isinstance(name, bytes) else str(name)).strip()
    except Exception:
        pass
    return "unknown"


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise DependencyError("'cuda-python' is not installed (needed for TensorRT buffers): pip install 'edgevos[trt]'") from exc
    return cudart


def trt_version() -> str:
    return require("tensorrt", "trt", "building TensorRT engines").__version__


def source_onnx(bundle, stage: str, precision: str) -> Path:
    for src in SOURCE[precision]:
        if src in bundle.precisions:
            return bundle.stage_path(stage, src)
    raise BundleError(
        f"bundle {bundle.root} has no {' or '.join(SOURCE[precision])} ONNX for a TensorRT "
        f"{precision} build (it has {bundle.precisions}): export with --precision {SOURCE[precision][0]}"
    )


def trtexec_args(onnx: str, engine: str, opts: BuildOptions, timing_cache: Optional[str] = None) -> List[str]:
    """trtexec arguments for one stage (the ONNX has fixed shapes, so no --shapes)."""
    args = [f"--onnx={onnx}", f"--saveEngine={engine}", f"--memPoolSize=workspace:{int(opts.workspace_mb)}M"]
    if opts.strongly_typed:
        args.append("--stronglyTyped")
    else:
        if opts.precision in ("int8", "best"):
            args.append("--int8")
        args.append("--fp16")
    if opts.dla_core is not None:
        args += [f"--useDLACore={int(opts.dla_core)}", "--allowGPUFallback"]
    cache = timing_cache or opts.timing_cache
    if cache:
        args.append(f"--timingCacheFile={cache}")
    if opts.optimization_level is not None:
        args.append(f"--builderOptimizationLevel={int(opts.optimization_level)}")
    args.append("--skipInference")
    return args


def build_engine(onnx_path, engine_path, opts: BuildOptions, logger=None) -> Path:
    """Build and serialise one engine with the TensorRT 10 Python API."""
    trt = require("tensorrt", "trt", "building TensorRT engines")
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if opts.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mb) << 20)
    if not opts.strongly_typed:
        if opts.precision in ("int8", "best"):
            config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
    if opts.dla_core is not None:
        if builder.num_DLA_cores <= int(opts.dla_core):
            raise InputError(f"--dla {opts.dla_core}: this device has {builder.num_DLA_cores} DLA core(s)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(opts.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if opts.optimization_level is not None:
        config.builder_optimization_level = int(opts.optimization_level)
    cache = None
    if opts.timing_cache:
        blob = Path(opts.timing_cache).read_bytes() if Path(opts.timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BundleError(f"TensorRT failed to build an engine from {onnx_path} ({opts.tag}); see the log above")
    Path(engine_path).write_bytes(bytes(serialized))
    if cache is not None:
        Path(opts.timing_cache).write_bytes(bytes(cache.serialize()))
    return Path(engine_path)


def timing_cache_name(trt_ver: str, gpu: str) -> str:
    return f"timing.trt{short_version(trt_ver)}.{slug(gpu)}.cache"


def build_bundle_engines(bundle_dir, opts: BuildOptions, progress: bool = True) -> Dict[str, Path]:
    """Build an engine per stage into the bundle and register them in its manifest."""
    from edgevos.bundle import add_files, load_bundle

    bundle = load_bundle(bundle_dir)
    ver, gpu = trt_version(), gpu_name()
    if opts.timing_cache is None:
        from dataclasses import replace

        opts = replace(opts, timing_cache=str(bundle.root / timing_cache_name(ver, gpu)))
    engines = {}
    for spec in bundle.specs:
        onnx_path = source_onnx(bundle, spec.name, opts.precision)
        engine = bundle.root / engine_name(spec.name, opts.tag, ver, gpu, bundle.input_size)
        if progress:
            print(f"building {engine.name} from {onnx_path.name}", flush=True)
        engines[spec.name] = build_engine(onnx_path, engine, opts)
    key = f"trt-{opts.tag}"
    extra = [opts.timing_cache] if opts.timing_cache and Path(opts.timing_cache).is_file() and bundle.root.resolve() in Path(opts.timing_cache).resolve().parents else []
    add_files(
        bundle.root,
        {s: {key: p} for s, p in engines.items()},
        extra_files=extra,
        info={"tensorrt": {"version": ver, "gpu": gpu, key: {"workspace_mb": opts.workspace_mb, "dla_core": opts.dla_core, "strongly_typed": opts.strongly_typed}}},
    )
    return engines


# ------------------------------------------------------------------------------- script
_SCRIPT_HEAD = r"""#!/usr/bin/env bash
# Build TensorRT engines for an edgevos bundle with trtexec (TensorRT 10.x, e.g. JetPack 6).
# Generated by 'edgevos build --script-only'. Usage: {script} [BUNDLE_DIR]
# Engine names: <stage>.<precision>.trt<version>.<gpu>.<H>x<W>.engine
set -euo pipefail

BUNDLE="${{1:-{bundle}}}"
TRTEXEC="${{TRTEXEC:-{trtexec}}}"
if [ ! -x "$TRTEXEC" ]; then
  TRTEXEC="$(command -v trtexec || true)"
fi
if [ -z "$TRTEXEC" ]; then
  echo "trtexec not found: install TensorRT (JetPack) or set TRTEXEC=/path/to/trtexec" >&2
  exit 1
fi
if [ ! -f "$BUNDLE/manifest.json" ]; then
  echo "$BUNDLE is not an edgevos bundle (no manifest.json)" >&2
  exit 1
fi

slug() {{
  tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-+//; s/-+$//'
}}

trt_version() {{
  local v=""
  v="$(python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null || true)"
  if [ -z "$v" ]; then
    v="$(dpkg-query -W -f='${{Version}}' libnvinfer10 2>/dev/null || true)"
  fi
  if [ -z "$v" ]; then
    echo unknown
  else
    echo "$v" | grep -oE '^[0-9]+(\.[0-9]+){{0,2}}'
  fi
}}

gpu_name() {{
  if [ -f /proc/device-tree/model ]; then
    tr -d '\000' < /proc/device-tree/model
  elif command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1
  else
    echo unknown
  fi
}}

TRT_VER="$(trt_version)"
GPU="$(gpu_name | slug)"
if [ -z "$GPU" ]; then
  GPU=unknown
fi
CACHE="$BUNDLE/timing.trt${{TRT_VER}}.${{GPU}}.cache"
echo "TensorRT $TRT_VER on $GPU; timing cache $CACHE"
"""

_SCRIPT_STAGE = r"""
echo "building {stage} ({tag})"
"$TRTEXEC" \
{args}
"""

_SCRIPT_TAIL = r"""
if command -v edgevos >/dev/null 2>&1; then
  edgevos build "$BUNDLE" --register
else
  echo "edgevos not installed: run 'edgevos build $BUNDLE --register' to add the engines to the manifest"
fi
echo "engines written to $BUNDLE"
"""


def build_script(bundle, opts_list: Sequence[BuildOptions], script_name: str = "build_engines.sh", bundle_default: str = ".", trtexec: str = TRTEXEC) -> str:
    """The text of a bash script that builds every stage with trtexec for each option set."""
    text = _SCRIPT_HEAD.format(script=script_name, bundle=bundle_default, trtexec=trtexec)
    h, w = bundle.input_size
    for opts in opts_list:
        for spec in bundle.specs:
            src = source_onnx(bundle, spec.name, opts.precision)
            rel = src.relative_to(bundle.root).as_posix()
            engine = f"$BUNDLE/{spec.name}.{opts.tag}.trt${{TRT_VER}}.${{GPU}}.{h}x{w}.engine"
            args = trtexec_args(f"$BUNDLE/{rel}", engine, opts, "$CACHE")
            lines = []
            for a in args:
                key, eq, val = a.partition("=")
                if eq and "$" in val:
                    lines.append(f'  {key}="{val}"')
                else:
                    lines.append(f"  {shlex.quote(a)}")
            text += _SCRIPT_STAGE.format(stage=spec.name, tag=opts.tag, args=" \\\n".join(lines))
    return text + _SCRIPT_TAIL


def write_build_script(bundle, opts_list: Sequence[BuildOptions], path, bundle_default: Optional[str] = None) -> Path:
    """Write the trtexec script (executable).  ``bundle_default`` is the bundle path the
    script uses without an argument: the bundle dir relative to the script when possible."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if bundle_default is None:
        import os

        rel = os.path.relpath(bundle.root.resolve(), path.parent.resolve())
        bundle_default = "$(dirname \"$0\")" if rel == "." else f"$(dirname \"$0\")/{rel}"
    path.write_text(build_script(bundle, opts_list, path.name, bundle_default))
    path.chmod(0o755)
    return path


ENGINE_RE = re.compile(r"^(?P<stage>[^.]+)\.(?P<tag>[a-z0-9-]+)\.trt(?P<ver>[0-9.]+|unknown)\.(?P<gpu>[a-z0-9-]+)\.(?P<h>\d+)x(?P<w>\d+)\.engine$")


def parse_engine_name(name: str) -> Optional[dict]:
    m = ENGINE_RE.match(name)
    if not m:
        return None
    d = m.groupdict()
    d["ver"] = d["ver"].rstrip(".")
    return d


def register_engines(bundle_dir) -> Dict[str, Dict[str, Path]]:
    """Add engine files found in the bundle (named as above) and timing caches to its manifest."""
    from edgevos.bundle import MANIFEST, add_files

    root = Path(bundle_dir)
    import json

    manifest = json.loads((root / MANIFEST).read_text()) if (root / MANIFEST).is_file() else {}
    stages = {s["name"] for s in manifest.get("stages", [])}
    found: Dict[str, Dict[str, Path]] = {}
    for p in sorted(root.glob("*.engine")):
        info = parse_engine_name(p.name)
        if info is None or info["stage"] not in stages:
            continue
        found.setdefault(info["stage"], {})[f"trt-{info['tag']}"] = p
    caches = sorted(root.glob("timing.*.cache"))
    if not found and not caches:
        raise BundleError(f"no engine files named <stage>.<precision>.trt<ver>.<gpu>.<H>x<W>.engine in {root}")
    add_files(root, found, extra_files=caches)  # verifies every other file first
    return found
