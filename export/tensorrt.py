"""TensorRT engines for a bundle: one engine per stage, via the Python API or trtexec.

Importable without TensorRT.  Needs TensorRT 10 (JetPack 6.1 / 6.2 ship 10.3).
Precisions:

``int8``  the bundle's ``int8-trt`` Q/DQ ONNX as a *strongly typed* network: the
          Q/DQ nodes decide which layers run INT8, the ONNX types decide the rest:
          FP16 from the ``int8-trt-f16`` graph (exported with ``--trt-float fp16``, see
          :mod:`edgevos.export.trt_float16`), FP32 from the plain one (``trt_float``).
``fp16``  the ``fp32`` ONNX with the FP16 builder flag.
``best``  the Q/DQ ONNX as a weakly typed network with INT8 + FP16 flags: explicit
          INT8 where the Q/DQ nodes are, FP16 fallback for the other layers.

The INT8 flag is only ever set for a graph that holds Q/DQ nodes: without them
TensorRT would invent placeholder ranges for every tensor.  A stage whose
``int8-trt`` file has no Q/DQ (kept float, too few calibration samples, nothing
quantizable) builds FP16 in the ``int8`` and ``best`` sets.

DLA engines are built FP16 from the ``fp32`` ONNX with GPU fallback (TensorRT 10
runs explicitly quantized layers of a DLA build on the GPU).  The device the builder
gives every network layer is recorded in the manifest, and the built engine's layers
as TensorRT's engine inspector lists them (DLA subgraphs and GPU layers) go to
``<engine>.layers.json``.

Engine names encode what an engine depends on:
``<stage>.<precision>.trt<major.minor.patch>.<device>.<H>x<W>.engine`` where the
device is :func:`edgevos.jetson.trtinfo.device_identity` (compute capability and
SM count, e.g. ``sm87x16``), the same in Python, in a container and in the scripts.
"""
from __future__ import annotations

import json
import logging
import re
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from edgevos.bundle import F16_PRECISION
from edgevos.errors import BundleError, DependencyError, InputError
from edgevos.jetson import trtinfo
from edgevos.jetson.trtinfo import MIN_TRT_MAJOR, has_qdq, short_version, trt_major

log = logging.getLogger(__name__)

TRT_PRECISIONS = ("int8", "fp16", "best")
#: ONNX precision in the bundle each engine precision is built from (fallback second)
SOURCE = {"int8": ("int8-trt",), "fp16": ("fp32",), "best": ("int8-trt", "fp32")}
TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
#: shipped with the generated build script: the scripts' device identity and TensorRT version
TRTINFO = Path(trtinfo.__file__)
TRTINFO_NAME = "edgevos_trtinfo.py"
#: the shell functions the generated build script shares with jetson/build_engines.sh (embedded)
TRTEXEC_COMMON = TRTINFO.with_name("trtexec_common.sh")


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "int8"
    dla_core: Optional[int] = None
    workspace_mb: int = 1024
    timing_cache: Optional[str] = None
    optimization_level: Optional[int] = None  # TensorRT builder optimisation level 0..5
    #: int8: the type of the float (non-quantized) layers: 'fp16' (needs the bundle's int8-trt-f16
    #: graphs), 'fp32', or None: fp16 where the bundle has those graphs
    trt_float: Optional[str] = None

    def __post_init__(self):
        if self.trt_float not in (None, "fp16", "fp32"):
            raise InputError(f"--trt-float {self.trt_float}: use fp16 or fp32")
        if self.precision not in TRT_PRECISIONS:
            raise InputError(f"TensorRT precision '{self.precision}' is unknown: use one of {list(TRT_PRECISIONS)}")
        if self.dla_core is not None and int(self.dla_core) < 0:
            raise InputError(f"--dla {self.dla_core}: DLA cores are numbered from 0 (Orin AGX has 0 and 1)")
        if self.dla_core is not None and self.precision != "fp16":
            raise InputError(
                f"--dla {self.dla_core} with --precision {self.precision}: TensorRT 10 does not run explicitly "
                f"quantized (Q/DQ) layers on the DLA, they would silently fall back to the GPU; DLA engines are "
                f"built FP16: use --precision fp16 --dla {self.dla_core}"
            )
        if int(self.workspace_mb) <= 0:
            raise InputError(f"--workspace-mb {self.workspace_mb} must be positive")

    @property
    def tag(self) -> str:
        """Precision part of the engine name, e.g. ``int8`` or ``fp16-dla0``."""
        return self.precision if self.dla_core is None else f"{self.precision}-dla{int(self.dla_core)}"


@dataclass(frozen=True)
class BuildMode:
    """How one stage's network is built: typing and builder flags."""

    strongly_typed: bool
    int8: bool
    fp16: bool
    float16_graph: bool = False  # strongly typed from a graph whose float layers are FP16

    @property
    def runs(self) -> str:
        """What the engine computes in: 'int8' (Q/DQ types, float layers FP32), 'int8+fp16 typed'
        (float layers FP16 by type), 'int8+fp16' (builder flags), 'fp16'."""
        if self.strongly_typed:
            return "int8+fp16 typed" if self.float16_graph else "int8"
        return "int8+fp16" if self.int8 else "fp16"


def build_mode(opts: BuildOptions, qdq: bool, float16_graph: bool = False) -> BuildMode:
    """Builder settings for a stage of ``opts.precision`` whose source graph has (``qdq``) Q/DQ nodes or not.

    INT8 only ever comes from Q/DQ nodes: the INT8 flag without them makes TensorRT
    use placeholder ranges (trtexec) or fail calibration (Python API).
    """
    if opts.dla_core is None and qdq and opts.precision == "int8":
        return BuildMode(strongly_typed=True, int8=False, fp16=False, float16_graph=bool(float16_graph))
    if opts.dla_core is None and qdq and opts.precision == "best":
        return BuildMode(strongly_typed=False, int8=True, fp16=True)
    return BuildMode(strongly_typed=False, int8=False, fp16=True)


def check_trt_version(version: str) -> str:
    """Raise unless ``version`` is a TensorRT edgevos builds for (10.x); returns it."""
    major = trt_major(version)
    if major is None or major < MIN_TRT_MAJOR:
        raise DependencyError(
            f"TensorRT {version} is too old: edgevos builds strongly typed, explicitly quantized engines "
            f"with TensorRT {MIN_TRT_MAJOR}.x (JetPack 6.0 ships 8.6, which has neither): flash JetPack 6.1 or "
            f"6.2 (TensorRT 10.3) or install TensorRT {MIN_TRT_MAJOR}"
        )
    return version


def import_tensorrt(what: str = "building TensorRT engines"):
    """The ``tensorrt`` module, checked to be TensorRT 10.x."""
    import importlib

    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as exc:
        raise DependencyError(
            f"TensorRT's Python bindings ('tensorrt') are not importable here (needed for {what}): they come "
            f"with JetPack 6.1+ (apt package python3-libnvinfer), not from pip; a virtualenv must be created "
            f"with --system-site-packages to see them (jetson/setup.sh does this), then pip install 'edgevos[trt]'"
        ) from exc
    check_trt_version(trt.__version__)
    return trt


def slug(text: str) -> str:
    """Lowercase, runs of other characters -> '-' (the build script does the same)."""
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return s or "unknown"


def engine_name(stage: str, tag: str, trt_version: str, device: str, size_hw: Sequence[int]) -> str:
    h, w = (int(v) for v in size_hw)
    return f"{stage}.{tag}.trt{short_version(trt_version)}.{slug(device)}.{h}x{w}.engine"


def device_identity(device: int = 0) -> str:
    """What engines are keyed on: compute capability and SM count (``sm87x16``), 'unknown' without CUDA."""
    return trtinfo.device_identity(device)


def trt_version() -> str:
    return import_tensorrt().__version__


def sources(precision: str, trt_float: Optional[str] = None) -> tuple:
    """Bundle precisions an engine precision builds from, in order of preference."""
    if precision == "int8" and trt_float == "fp16":
        return (F16_PRECISION,)
    if precision == "int8" and trt_float is None:
        return (F16_PRECISION,) + SOURCE[precision]
    return SOURCE[precision]


def source_onnx(bundle, stage: str, precision: str, dla: bool = False, trt_float: Optional[str] = None) -> Path:
    for src in (("fp32",) if dla else sources(precision, trt_float)):
        if src in bundle.precisions:
            return bundle.stage_path(stage, src)
    if precision == "int8" and trt_float == "fp16" and "int8-trt" in bundle.precisions:
        raise BundleError(
            f"bundle {bundle.root} has no {F16_PRECISION} ONNX (int8-trt graphs with FP16 float layers) for "
            f"--trt-float fp16: export with --precision int8-trt --trt-float fp16, or build with --trt-float fp32"
        )
    raise BundleError(
        f"bundle {bundle.root} has no {' or '.join(SOURCE[precision])} ONNX for a TensorRT "
        f"{precision} build (it has {bundle.precisions}): export with --precision {SOURCE[precision][0]}"
    )


@dataclass(frozen=True)
class StagePlan:
    stage: str
    source: Path
    qdq: bool
    mode: BuildMode


def plan_stage(bundle, stage: str, opts: BuildOptions) -> StagePlan:
    """Source ONNX and builder settings for one stage, decided from its graph (any Q/DQ node)."""
    dla = opts.dla_core is not None
    src = source_onnx(bundle, stage, opts.precision, dla=dla, trt_float=opts.trt_float)
    qdq = has_qdq(src)
    f16 = (not dla and opts.precision == "int8" and F16_PRECISION in bundle.precisions
           and src == bundle.stage_path(stage, F16_PRECISION))
    return StagePlan(stage, src, qdq, build_mode(opts, qdq, float16_graph=f16))


def trtexec_args(onnx: str, engine: str, opts: BuildOptions, timing_cache: Optional[str] = None,
                 mode: Optional[BuildMode] = None, layer_info: Optional[str] = None,
                 qdq: Optional[bool] = None) -> List[str]:
    """trtexec arguments for one stage (the ONNX has fixed shapes, so no --shapes).

    ``mode`` comes from :func:`plan_stage`; without it the builder settings are decided from
    ``qdq`` (whether the graph holds Q/DQ nodes), else from the ``onnx`` file itself: INT8 is
    never asked for a graph that was not seen to hold Q/DQ nodes.  ``layer_info`` writes the
    layer information (with each layer's device) as JSON.
    """
    if mode is None:
        if qdq is None:
            if not Path(onnx).is_file():
                raise InputError(
                    f"trtexec_args: {onnx} is not a readable file, so whether it holds Q/DQ nodes is unknown: "
                    f"pass mode= (from plan_stage) or qdq="
                )
            qdq = has_qdq(onnx)
        mode = build_mode(opts, qdq=bool(qdq))
    args = [f"--onnx={onnx}", f"--saveEngine={engine}", f"--memPoolSize=workspace:{int(opts.workspace_mb)}M"]
    if mode.strongly_typed:
        args.append("--stronglyTyped")
    if mode.int8:
        args.append("--int8")
    if mode.fp16:
        args.append("--fp16")
    if opts.dla_core is not None:
        args += [f"--useDLACore={int(opts.dla_core)}", "--allowGPUFallback"]
    cache = timing_cache or opts.timing_cache
    if cache:
        args.append(f"--timingCacheFile={cache}")
    if opts.optimization_level is not None:
        args.append(f"--builderOptimizationLevel={int(opts.optimization_level)}")
    if layer_info:
        args += ["--profilingVerbosity=detailed", f"--exportLayerInfo={layer_info}"]
    args.append("--skipInference")
    return args


_QDQ_LAYERS = ("QUANTIZE", "DEQUANTIZE")


def network_layers(trt, network, config=None) -> List[dict]:
    """Name, type and (with a builder config) device of every layer of a parsed network."""
    out = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        info = {"name": layer.name, "type": str(layer.type).split(".")[-1]}
        if config is not None:
            on_dla = config.get_device_type(layer) == trt.DeviceType.DLA and config.can_run_on_DLA(layer)
            info["device"] = "DLA" if on_dla else "GPU"
        out.append(info)
    return out


def placement_summary(layers: Sequence[dict]) -> Dict[str, int]:
    """Layer count per device, e.g. {'DLA': 52, 'GPU': 3}."""
    out: Dict[str, int] = {}
    for layer in layers:
        dev = layer.get("device", "GPU")
        out[dev] = out.get(dev, 0) + 1
    return out


def engine_layers(trt, serialized, logger) -> Optional[List[dict]]:
    """The layers of a built engine as TensorRT's engine inspector reports them (``IEngineInspector``,
    detailed verbosity): name, type and, where the name or type says so, ``"device": "DLA"``
    (the subgraphs TensorRT hands to the DLA appear as ``{ForeignNode[...]}`` layers of a DLA
    build).  None when the engine cannot be inspected here."""
    try:
        engine = trt.Runtime(logger).deserialize_cuda_engine(bytes(serialized))
        text = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
        layers = json.loads(text).get("Layers", [])
    except Exception:  # inspection is a report, never a build failure
        return None
    out = []
    for layer in layers:
        if isinstance(layer, str):  # built without detailed verbosity: names only
            layer = {"Name": layer}
        name, kind = str(layer.get("Name", "")), str(layer.get("LayerType", ""))
        info = {"name": name, "type": kind}
        if "DLA" in kind.upper() or name.startswith("{ForeignNode["):
            info["device"] = "DLA"
        out.append(info)
    return out


def build_engine(onnx_path, engine_path, opts: BuildOptions, logger=None, qdq: Optional[bool] = None,
                 float16_graph: bool = False) -> dict:
    """Build and serialise one engine with the TensorRT 10 Python API.

    Returns what was built: ``{"engine": path, "qdq": ..., "runs": ..., "layers": {device: count}}``;
    the per-layer list (name, type, device) goes to ``<engine>.layers.json``.
    """
    trt = import_tensorrt()
    qdq = has_qdq(onnx_path) if qdq is None else bool(qdq)
    mode = build_mode(opts, qdq, float16_graph)
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if mode.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mb) << 20)
    if mode.int8:
        config.set_flag(trt.BuilderFlag.INT8)
    if mode.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if opts.dla_core is not None:
        if builder.num_DLA_cores <= int(opts.dla_core):
            raise InputError(f"--dla {opts.dla_core}: this device has {builder.num_DLA_cores} DLA core(s)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(opts.dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if opts.optimization_level is not None:
        config.builder_optimization_level = int(opts.optimization_level)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    layers = network_layers(trt, network, config)
    n_qdq = sum(1 for layer in layers if layer["type"] in _QDQ_LAYERS)
    if mode.int8 and n_qdq == 0:
        raise BundleError(f"{onnx_path} parsed without Q/DQ layers: refusing an INT8 build without scales ({opts.tag})")
    cache = None
    if opts.timing_cache:
        blob = Path(opts.timing_cache).read_bytes() if Path(opts.timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BundleError(f"TensorRT failed to build an engine from {onnx_path} ({opts.tag}); see the log above")
    engine_path = Path(engine_path)
    engine_path.write_bytes(bytes(serialized))
    if cache is not None:
        Path(opts.timing_cache).write_bytes(bytes(cache.serialize()))
    record = {"source": Path(onnx_path).name, "mode": mode.runs, "layers": layers}
    built = engine_layers(trt, serialized, logger)
    if built is not None:
        record["engine_layers"] = built
    layer_file = engine_path.with_name(engine_path.name + ".layers.json")
    layer_file.write_text(json.dumps(record, indent=1))
    out = {"engine": engine_path, "layer_file": layer_file, "qdq": qdq, "runs": mode.runs,
           "layers": placement_summary(layers)}
    if built is not None and opts.dla_core is not None:
        # what the engine holds: DLA subgraphs and the GPU layers around them (incl. reformats)
        out["engine_layers"] = {"DLA subgraphs": sum(1 for x in built if x.get("device") == "DLA"),
                                "GPU": sum(1 for x in built if x.get("device") != "DLA")}
    return out


def timing_cache_name(trt_ver: str, device: str) -> str:
    return f"timing.trt{short_version(trt_ver)}.{slug(device)}.cache"


def build_bundle_engines(bundle_dir, opts: BuildOptions, progress: bool = True) -> Dict[str, Path]:
    """Build an engine per stage into the bundle and register them in its manifest.

    The manifest's ``tensorrt`` entry records, per engine set and stage, what the
    stage computes in (``int8``, ``int8+fp16``, ``fp16``) and the layers per device.
    """
    from edgevos.bundle import add_files, load_bundle

    bundle = load_bundle(bundle_dir)
    ver, device = trt_version(), device_identity()
    if opts.timing_cache is None:
        opts = replace(opts, timing_cache=str(bundle.root / timing_cache_name(ver, device)))
    engines, stages = {}, {}
    for spec in bundle.specs:
        plan = plan_stage(bundle, spec.name, opts)
        engine = bundle.root / engine_name(spec.name, opts.tag, ver, device, bundle.input_size)
        if progress:
            log.info(f"building {engine.name} from {plan.source.name} ({plan.mode.runs})")
        built = build_engine(plan.source, engine, opts, qdq=plan.qdq, float16_graph=plan.mode.float16_graph)
        engines[spec.name] = built["engine"]
        stages[spec.name] = {"source": plan.source.name, "qdq": plan.qdq, "runs": built["runs"],
                             "layers": built["layers"], "layer_file": built["layer_file"].name}
        if "engine_layers" in built:
            stages[spec.name]["engine_layers"] = built["engine_layers"]
    key = f"trt-{opts.tag}"
    extra = [p.with_name(p.name + ".layers.json") for p in engines.values()]
    if opts.timing_cache and Path(opts.timing_cache).is_file() and bundle.root.resolve() in Path(opts.timing_cache).resolve().parents:
        extra.append(opts.timing_cache)
    info = dict(bundle.manifest.get("tensorrt") or {})
    info.update({"version": ver, "device": device,
                 key: {"workspace_mb": opts.workspace_mb, "dla_core": opts.dla_core, "stages": stages}})
    add_files(bundle.root, {s: {key: p} for s, p in engines.items()}, extra_files=extra, info={"tensorrt": info})
    return engines


# ------------------------------------------------------------------------------- script
_SCRIPT_HEAD = r"""#!/usr/bin/env bash
# Build TensorRT engines for an edgevos bundle with trtexec (TensorRT 10.x: JetPack 6.1 / 6.2).
# Generated by 'edgevos build --script-only'. Usage: {script} [BUNDLE_DIR]
# Engine names: <stage>.<precision>.trt<version>.<device>.<H>x<W>.engine, <device> = compute
# capability and SM count (e.g. sm87x16), the key 'edgevos build' and the runtime use too.
set -euo pipefail

BUNDLE="${{1:-{bundle}}}"
{common}
find_trtexec {trtexec}
check_bundle "$BUNDLE"
"""

# edgevos/jetson/trtinfo.py runs from a heredoc: the script needs no edgevos install
_SCRIPT_INFO = r"""
trtinfo() {{
  python3 - "$@" <<'EDGEVOS_TRTINFO'
{code}EDGEVOS_TRTINFO
}}

check_trt_version {min_major}
GPU="$(trtinfo identity)"
CACHE="$BUNDLE/timing.trt${{TRT_VER}}.${{GPU}}.cache"
echo "TensorRT $TRT_VER on $GPU; timing cache $CACHE"
"""

_SCRIPT_STAGE = r"""
echo "building {stage} ({tag}: {runs})"
"$TRTEXEC" \
{args}
"""

_SCRIPT_TAIL = r"""
register_engines "$BUNDLE"
"""


def build_script(bundle, opts_list: Sequence[BuildOptions], script_name: str = "build_engines.sh", bundle_default: str = ".", trtexec: str = TRTEXEC) -> str:
    """The text of a bash script that builds every stage with trtexec for each option set.

    Per-stage flags are decided here from each stage's graph (:func:`plan_stage`); the
    TensorRT version and device identity are read on the target by the same code as
    :func:`device_identity` (``trtinfo.py``, embedded).
    """
    common = TRTEXEC_COMMON.read_text().split("\n", 1)[1]  # without its #! line
    text = _SCRIPT_HEAD.format(script=script_name, bundle=bundle_default, trtexec=shlex.quote(trtexec), common=common)
    text += _SCRIPT_INFO.format(code=TRTINFO.read_text(), min_major=MIN_TRT_MAJOR)
    h, w = bundle.input_size
    for opts in opts_list:
        for spec in bundle.specs:
            plan = plan_stage(bundle, spec.name, opts)
            rel = plan.source.relative_to(bundle.root).as_posix()
            engine = f"$BUNDLE/{spec.name}.{opts.tag}.trt${{TRT_VER}}.${{GPU}}.{h}x{w}.engine"
            args = trtexec_args(f"$BUNDLE/{rel}", engine, opts, "$CACHE", mode=plan.mode, layer_info=f"{engine}.layers.json")
            lines = []
            for a in args:
                key, eq, val = a.partition("=")
                if eq and "$" in val:
                    lines.append(f'  {key}="{val}"')
                else:
                    lines.append(f"  {shlex.quote(a)}")
            text += _SCRIPT_STAGE.format(stage=spec.name, tag=opts.tag, runs=plan.mode.runs, args=" \\\n".join(lines))
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
    from edgevos.bundle import add_files, load_bundle

    root = Path(bundle_dir)
    stages = set(load_bundle(root, verify=False).stage_names)  # a malformed manifest is a BundleError
    found: Dict[str, Dict[str, Path]] = {}
    for p in sorted(root.glob("*.engine")):
        info = parse_engine_name(p.name)
        if info is None or info["stage"] not in stages:
            continue
        found.setdefault(info["stage"], {})[f"trt-{info['tag']}"] = p
    caches = sorted(root.glob("timing.*.cache")) + sorted(root.glob("*.engine.layers.json"))
    if not found and not caches:
        raise BundleError(f"no engine files named <stage>.<precision>.trt<ver>.<gpu>.<H>x<W>.engine in {root}")
    add_files(root, found, extra_files=caches)  # verifies every other file first
    return found
