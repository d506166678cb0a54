"""``export_bundle``: a model family -> a verified bundle with per-stage ONNX, INT8 and a parity report.

    from edgevos import export_bundle
    export_bundle("bundles/gfrtm", "gfrtm", weights="default", precisions=["fp32", "int8-cpu"])

The steps: build the model, record calibration feeds by running the step
program on the PyTorch reference, export every stage to ONNX (checked against
PyTorch), quantize each INT8 flavour per stage, write the bundle, then run the
parity report on held-out sequences and write it into the bundle.

PyTorch's TorchScript tracer crashes in a process where GStreamer was
initialised, so where GStreamer is loaded the export runs in a spawned Python
process (``isolate``).  Progress goes to the ``edgevos`` logger, in a spawned
process too (at the level the caller's ``edgevos`` logger lets through); the
parity report is written into the bundle (``parity.json``) and logged at debug level.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from edgevos.bundle import EXPORT_PRECISIONS
from edgevos.errors import InputError
from edgevos.parsing import split_list

log = logging.getLogger(__name__)

#: what ``precisions`` accepts (fp32 always)
PRECISIONS = EXPORT_PRECISIONS


def resolve_methods(spec: Union[None, str, Mapping[str, str]], flavours: Sequence[str]) -> Dict[str, str]:
    """Activation calibration method per INT8 flavour.

    Args:
        spec: None (each flavour's default), one method for every flavour (``"minmax"``),
            ``"flavour=method,..."`` or a dict ``{flavour: method}``; flavours left out keep
            their default.
        flavours: the INT8 flavours being exported.

    Returns:
        ``{flavour: method}`` for ``flavours``.
    """
    from edgevos.export.quantize import DEFAULT_METHOD, METHODS

    items = [f"{k}={v}" for k, v in spec.items()] if isinstance(spec, Mapping) else split_list(spec)
    out = dict(DEFAULT_METHOD)
    for item in items:
        flavour, sep, method = item.rpartition("=")
        if method not in METHODS:
            raise InputError(f"--method {spec}: '{method}' is not one of {list(METHODS)}")
        if sep and flavour not in DEFAULT_METHOD:
            raise InputError(f"--method {spec}: '{flavour}' is not an INT8 flavour ({list(DEFAULT_METHOD)})")
        for f in ([flavour] if sep else list(DEFAULT_METHOD)):
            out[f] = method
    return {f: out[f] for f in flavours}


def keep_float_for(items: Union[str, Iterable[str]], flavour: str) -> List[str]:
    """Stage names / node patterns left in float for one flavour: the unprefixed items
    plus those prefixed ``"flavour:"``.

    Args:
        items: a comma-separated string or a list, e.g. ``"decoder_reuse,int8-trt:/features.0/*"``.
        flavour: ``"int8-cpu"`` or ``"int8-trt"``.

    Returns:
        The items that apply to ``flavour``, prefixes removed.
    """
    keep = []
    for item in split_list(items) if isinstance(items, str) else list(items):
        prefix, sep, rest = item.partition(":")
        if sep and prefix not in PRECISIONS and re.fullmatch(r"(int|fp)\d+(-\w+)?", prefix):
            raise InputError(f"--keep-float {item}: '{prefix}' is not a precision of a bundle; prefix an item "
                             f"with one of {[p for p in PRECISIONS if p != 'fp32']}")
        if sep and prefix in PRECISIONS:
            if prefix == flavour:
                keep.append(rest)
        else:
            keep.append(item)
    return keep


def _gstreamer_loaded() -> bool:
    return "gi.repository.Gst" in sys.modules


def export_bundle(out, family: str = "gfrtm", *, weights: Optional[str] = None, backbone: Optional[str] = None,
                  preset: Optional[str] = None, backbone_weights: Optional[str] = None,
                  precisions: Union[str, Sequence[str]] = ("fp32", "int8-cpu"), calib: str = "test://",
                  calib_mask: Optional[str] = None, calib_sequences: Union[str, Sequence[str]] = (),
                  calib_frames: int = 100, calib_samples: int = 48,
                  method: Union[None, str, Mapping[str, str]] = None, keep_float: Union[str, Sequence[str]] = (),
                  input_size: Union[None, str, Tuple[int, int]] = None,
                  heldout_sequences: Union[str, Sequence[str]] = (), heldout_frames: int = 30,
                  tau: Optional[float] = None, calib_tau: float = 0.5, min_calib_samples: int = 4,
                  speed_check: bool = True, opset: int = 17, threads: int = 1, parity: bool = True,
                  progress: bool = True, isolate: Optional[bool] = None, log=None,
                  trt_float: Optional[str] = None) -> Path:
    """Export a model family to a bundle directory.

    Args:
        out: bundle directory to write; must not exist or be empty.
        family: model family name (``gfrtm``, ``slowfast``).
        weights: ``"default"`` (the shipped checkpoint) or a checkpoint path; None: random
            decoder weights.
        backbone, preset, backbone_weights: overrides for the family's builder.
        precisions: ``fp32``, ``int8-cpu``, ``int8-trt`` (a list or a comma-separated
            string); fp32 is always included.
        calib: calibration source: DAVIS-layout folder, video file (+ ``calib_mask``) or ``test://``.
        calib_mask: first-frame mask PNG when ``calib`` is a video file.
        calib_sequences: sequence names for calibration (default: all but the held-out ones).
        calib_frames: total calibration frames, spread over the sequences.
        calib_samples: max recorded feeds per stage kept for calibration.
        method: activation calibration method(s); see :func:`resolve_methods`.
        keep_float: stage names or node-name patterns left in float; see :func:`keep_float_for`.
            The family's own float stages (``Family.keep_float``) are added.
        input_size: model input (H, W) or ``"HxW"``; None = the size the weights were trained at.
        heldout_sequences: sequences for the parity report (default: the last 1-2 of the source).
        heldout_frames: max frames per held-out sequence.
        tau: reuse-gate threshold for the step program (default: the config's).
        calib_tau: threshold while calibrating (< 1 so gate and reuse stages see real inputs).
        min_calib_samples: stages with fewer recorded feeds stay in fp32.
        speed_check: an int8-cpu stage that times slower than FP32 here stays FP32.
        opset: ONNX opset.
        threads: threads for PyTorch and ONNX Runtime.
        parity: write the parity report (FP32 verification runs regardless).
        progress: show progress bars.
        trt_float: ``fp16`` also writes each quantized stage's int8-trt graph with FP16 float
            compute (bundle precision ``int8-trt-f16``, what ``edgevos build --precision int8``
            then builds); ``fp32`` does not; None: :data:`edgevos.export.trt_float16.DEFAULT_TRT_FLOAT`.
        isolate: run the export in a spawned Python process; None: only when GStreamer is
            loaded in this process (the TorchScript tracer crashes next to it).
        log: in a spawned process, write its output to this file instead of this process's.

    Returns:
        The bundle directory.
    """
    kwargs = dict(family=family, weights=weights, backbone=backbone, preset=preset, backbone_weights=backbone_weights,
                  precisions=precisions, calib=calib, calib_mask=calib_mask, calib_sequences=calib_sequences,
                  calib_frames=calib_frames, calib_samples=calib_samples, method=method, keep_float=keep_float,
                  input_size=input_size, heldout_sequences=heldout_sequences, heldout_frames=heldout_frames, tau=tau,
                  calib_tau=calib_tau, min_calib_samples=min_calib_samples, speed_check=speed_check, opset=opset,
                  threads=threads, parity=parity, progress=progress, trt_float=trt_float)
    from edgevos.parsing import check_writable

    check_writable(out, "--out", directory=True)  # before calibration, not after it
    if Path(out).is_dir() and any(Path(out).iterdir()):
        raise InputError(f"--out {out} exists and is not empty: choose a new directory or remove it")
    if log is not None:
        check_writable(log, "log")
    if isolate or (isolate is None and _gstreamer_loaded()):
        return _export_spawned(Path(out), kwargs, log)
    return _export(Path(out), **kwargs)


def _export_spawned(out: Path, kwargs: dict, log) -> Path:
    """``_export`` in a fresh Python process; its errors come back as the same exception class."""
    import subprocess
    import tempfile

    import edgevos.errors as errors
    from edgevos.console_log import effective_level

    payload = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
    with tempfile.TemporaryDirectory(prefix="edgevos-export-") as tmp:
        result = Path(tmp) / "result.json"
        code = ("import sys; from edgevos.export.exporter import _spawned_main; "
                "sys.exit(_spawned_main(*sys.argv[1:]))")
        cmd = [sys.executable, "-c", code, str(out), json.dumps(payload), str(result), str(effective_level())]
        if log is not None:
            Path(log).parent.mkdir(parents=True, exist_ok=True)
            with open(log, "w") as fh:
                proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
        else:
            proc = subprocess.run(cmd)
        outcome = json.loads(result.read_text()) if result.is_file() else {}
    if proc.returncode == 0 and "bundle" in outcome:
        return Path(outcome["bundle"])
    if "error" in outcome:
        cls = getattr(errors, outcome["type"], errors.EdgevosError)
        raise cls(outcome["error"])
    where = f"; see {log}" if log is not None else ""
    raise errors.EdgevosError(f"the export process for {out} ended with exit code {proc.returncode}{where}")


def _spawned_main(out: str, payload: str, result: str, level: str = str(logging.INFO)) -> int:
    """The spawned process: its messages go to its stderr (the caller's, or the log file) at
    the caller's level; the outcome goes to ``result`` as JSON."""
    from edgevos.console_log import start_console_log
    from edgevos.errors import EdgevosError

    start_console_log(int(level))
    try:
        bundle = _export(Path(out), **json.loads(payload))
    except EdgevosError as exc:
        Path(result).write_text(json.dumps({"type": type(exc).__name__, "error": str(exc)}))
        return 1
    Path(result).write_text(json.dumps({"bundle": str(bundle)}))
    return 0


def _split_sequences(available, calib_names, held_names, source, parity):
    """(calibration sequences, held-out sequences) from what the source holds."""
    by_name = {s.name: s for s in available}
    for option, names in (("--calib-sequences", calib_names), ("--heldout-sequences", held_names)):
        for n in names:
            if n not in by_name:
                raise InputError(f"{option}: '{n}' is not in {source}; available: {sorted(by_name)}")
    if not held_names and parity:
        if len(available) >= 2:
            k = 1 if len(available) <= 3 else 2
            held_names = [s.name for s in available[-k:]]
        else:
            held_names = [available[0].name]  # a single source: parity on the calibration sequence itself
    calib = [s for s in available if (s.name in calib_names if calib_names else s.name not in held_names)] or available
    return calib, [by_name[n] for n in held_names]


def _export(out: Path, family, weights, backbone, preset, backbone_weights, precisions, calib, calib_mask,
            calib_sequences, calib_frames, calib_samples, method, keep_float, input_size, heldout_sequences,
            heldout_frames, tau, calib_tau, min_calib_samples, speed_check, opset, threads, parity, progress,
            trt_float=None) -> Path:
    from edgevos.export.trt_float16 import DEFAULT_TRT_FLOAT, TRT_FLOATS
    from edgevos.parsing import parse_hw

    trt_float = trt_float or DEFAULT_TRT_FLOAT
    if trt_float not in TRT_FLOATS:
        raise InputError(f"--trt-float {trt_float}: use one of {list(TRT_FLOATS)}")

    spelled = precisions
    precisions = split_list(precisions) if isinstance(precisions, str) else list(precisions)
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise InputError(f"--precision {spelled}: unknown {bad}; choose from {list(PRECISIONS)}")
    precisions = ["fp32"] + [p for p in precisions if p != "fp32"]
    if input_size is not None:
        input_size = parse_hw(input_size, "--input-size") if isinstance(input_size, str) else tuple(input_size)
    methods = resolve_methods(method, [p for p in precisions if p != "fp32"])
    for flavour in methods:
        keep_float_for(keep_float, flavour)  # a misspelt flavour prefix fails now, not after calibration
    if calib_frames < 2:
        raise InputError(f"--calib-frames {calib_frames}: calibration needs at least 2 frames")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out} exists and is not empty: choose a new directory or remove it")

    from edgevos.models.registry import get_family

    fam = get_family(family)  # validates the name before anything heavy happens
    keep_float = split_list(keep_float) if isinstance(keep_float, str) else list(keep_float)
    keep_float += [k for k in fam.keep_float if k not in keep_float]  # the family's float stages
    if preset and family != "slowfast":
        raise InputError(f"--preset {preset}: family '{family}' has no pathway presets (slowfast has: 1-1, 3-3, "
                         "7-7, 1-7, 3-7); drop --preset")
    if preset:
        from edgevos.programs.slowfast import check_preset

        check_preset(preset)
    if backbone_weights:
        from edgevos.backbone_weights import check_backbone_weights

        check_backbone_weights(backbone_weights)  # never unpickled: refused before the model is built

    # data first: a wrong folder should fail before torch loads
    from edgevos.export.calibrate import open_sequences

    calib_names = split_list(calib_sequences) if isinstance(calib_sequences, str) else list(calib_sequences)
    held_names = split_list(heldout_sequences) if isinstance(heldout_sequences, str) else list(heldout_sequences)
    available = open_sequences(calib, calib_names + held_names if (calib_names and held_names) else (), mask=calib_mask)
    calib_seqs, heldout = _split_sequences(available, calib_names, held_names, calib, parity)

    import dataclasses

    import torch

    torch.set_num_threads(max(1, int(threads)))
    from edgevos.bundle import write_bundle
    from edgevos.export.calibrate import RecordingBackend, collect_calibration
    from edgevos.export.onnx_export import export_stages
    from edgevos.export.parity import end_to_end, format_report, stage_parity
    from edgevos.backend import TorchBackend, open_backend

    if backbone:
        from edgevos.models.backbones import BACKBONES

        if backbone not in BACKBONES:
            raise InputError(f"--backbone {backbone}: unknown backbone; choose one of {sorted(BACKBONES)}")
    overrides = {k: v for k, v in (("backbone", backbone), ("preset", preset), ("backbone_weights", backbone_weights)) if v}
    t0 = time.perf_counter()
    model = fam.build(weights=weights, input_size=input_size, **overrides)
    if input_size is None:  # the size the weights were trained at
        input_size = tuple(getattr(model.config, "input_size", None) or model.stage_specs()[0].inputs[0].shape[2:])
    specs = model.stage_specs()
    modules = model.stage_modules()
    config = dataclasses.asdict(model.config)
    config["input_size"] = list(input_size)
    tau = float(tau if tau is not None else config.get("tau", 1.0))

    def factory(backend):
        return fam.make_program(backend, config, tau=tau)

    def calib_factory(backend):
        return fam.make_program(backend, config, tau=min(tau, float(calib_tau)))

    reference = TorchBackend(modules, specs)
    log.info(f"calibration: {len(calib_seqs)} sequence(s) from {calib}, up to {calib_frames} frames")
    calset = collect_calibration(calib_factory, reference, calib_seqs, calib_frames, calib_samples, progress=progress)
    never = calset.summary["stages_never_run"]
    if never and any(p.startswith("int8") for p in precisions):
        log.warning(f"stages {never} never ran on the calibration frames (tau={min(tau, calib_tau)}); they stay fp32")

    out.mkdir(parents=True, exist_ok=True)
    verify = {}
    real = {s: v[:2] for s, v in calset.samples.items()}
    fp32 = export_stages(modules, specs, out, opset, real_feeds=real, report=verify)
    files = {s.name: {"fp32": fp32[s.name]} for s in specs}
    quant = {"method": methods, "keep_float": {p: keep_float_for(keep_float, p) for p in methods}, "stages": {}}
    stage_precision = {}
    for precision in precisions[1:]:
        stage_precision[precision] = _quantize_flavour(precision, specs, calset.samples, fp32, out, files, quant,
                                                       methods[precision], min_calib_samples, speed_check, threads)
    if "int8-trt" in precisions and trt_float == "fp16":
        _float16_variant(specs, out, files, quant, stage_precision)
    common = dict(
        family=fam.name,
        config=config,
        input_size=input_size,
        normalization=dict(model.normalization),
        specs=specs,
        files=files,
        calibration={**calset.summary, "source": calib, "method": methods},
        preset=getattr(model.config, "preset", None),
        stage_precision=stage_precision,
        quantization=quant,
        extra={"fp32_verification": verify},
    )
    write_bundle(out, **common)
    if parity:
        candidates = {p: open_backend("onnxruntime", out, p, threads=threads) for p in precisions}
        recorder = RecordingBackend(reference, max_samples_per_stage=8, seed=1)
        log.info(f"parity: {len(heldout)} held-out sequence(s): {[s.name for s in heldout]}")
        e2e = end_to_end(factory, recorder, candidates, heldout, heldout_frames)
        stages = stage_parity(reference, candidates, recorder.samples)
        report = {"reference": "torch-fp32", "heldout": [s.name for s in heldout], "stages": stages, "end_to_end": e2e}
        write_bundle(out, parity=report, **common)
        log.debug(format_report(report))
    log.info(f"exported {fam.name} to {out} in {time.perf_counter() - t0:.0f} s")
    return out


def _float16_variant(specs, out, files, quant, stage_precision) -> None:
    """Add the ``int8-trt-f16`` files: each quantized stage's int8-trt graph with FP16 float
    compute; a stage left float points at the same file as its int8-trt entry."""
    from edgevos.bundle import F16_PRECISION
    from edgevos.export.trt_float16 import write_float16

    for spec in specs:
        info = quant["stages"].get(spec.name, {}).get("int8-trt", {})
        if not info.get("quantized"):
            files[spec.name][F16_PRECISION] = files[spec.name]["int8-trt"]
            continue
        path = out / f"{spec.name}.{F16_PRECISION}.onnx"
        report = write_float16(files[spec.name]["int8-trt"], path)
        files[spec.name][F16_PRECISION] = path
        info["float16"] = {"fp16_nodes": len(report["fp16"]), "casts": report["casts"],
                           "initializers_fp16": report["initializers_fp16"], "kept_fp32": report["kept_fp32"]}
    stage_precision[F16_PRECISION] = dict(stage_precision.get("int8-trt", {}))


def _quantize_flavour(precision, specs, samples_by_stage, fp32, out, files, quant, method, min_calib_samples,
                      speed_check, threads) -> Dict[str, str]:
    """Quantize every stage to one INT8 flavour; fills ``files`` and ``quant``; returns the stages left fp32."""
    from edgevos.export.quantize import quantize_stage

    keep = quant["keep_float"][precision]
    left_fp32 = {}
    for spec in specs:
        samples = samples_by_stage.get(spec.name, [])
        if spec.name in keep or len(samples) < min_calib_samples:
            files[spec.name][precision] = fp32[spec.name]
            left_fp32[spec.name] = "fp32"
            reason = "keep_float" if spec.name in keep else f"{len(samples)} calibration samples < {min_calib_samples}"
            quant["stages"].setdefault(spec.name, {})[precision] = {"quantized": False, "reason": reason}
            continue
        path = out / f"{spec.name}.{precision}.onnx"
        info = quantize_stage(fp32[spec.name], path, spec, samples, precision, method, keep)
        quant["stages"].setdefault(spec.name, {})[precision] = info
        if info["quantized"] and precision == "int8-cpu" and speed_check:
            # int8-cpu exists to be faster: keep FP32 for a stage where it is not (measured here)
            from edgevos.export.benchmark import interleaved_ms

            fp_ms, q_ms = interleaved_ms([fp32[spec.name], path], samples[0], threads=max(1, int(threads)))
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
            left_fp32[spec.name] = "fp32"
    return left_fp32
