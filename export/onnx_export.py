"""Per-stage ONNX export: one checked, simplified, verified single-file ONNX per stage.

Each stage module is exported with the legacy TorchScript exporter
(``dynamo=False``), with input/output names taken from its :class:`StageSpec`,
then checked (``onnx.checker`` + strict shape inference against the spec),
simplified with onnxslim and verified in FP32 against PyTorch on the spec's
dummy feeds and on real feeds.  Any failure raises :class:`BundleError` naming
the stage.
"""
from __future__ import annotations

import io
import warnings
from contextlib import redirect_stdout
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from edgevos.backend import run_module
from edgevos.errors import BundleError, InputError, require
from edgevos.stages import StageSpec

#: export fails if FP32 ONNX differs from PyTorch by more than RTOL * max(1, max|ref|)
RTOL = 1e-4


def _onnx_dtype_to_numpy(elem_type: int) -> str:
    onnx = require("onnx", "export")
    return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))


def check_onnx(path, spec: StageSpec):
    """onnx.checker + strict shape inference; the graph's I/O must equal the spec.

    Returns the shape-inferred ModelProto.
    """
    onnx = require("onnx", "export")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=False)
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        raise BundleError(f"stage '{spec.name}': ONNX check failed for {path}: {exc}") from exc
    _check_io(model, spec, path)
    return model


def _check_io(model, spec: StageSpec, path) -> None:
    def describe(values):
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            out.append((v.name, dims, _onnx_dtype_to_numpy(t.elem_type)))
        return out

    init_names = {i.name for i in model.graph.initializer}
    got_in = [v for v in describe(model.graph.input) if v[0] not in init_names]
    got_out = describe(model.graph.output)
    want_in = [(t.name, tuple(t.shape), np.dtype(t.dtype).name) for t in spec.inputs]
    want_out = [(t.name, tuple(t.shape), np.dtype(t.dtype).name) for t in spec.outputs]
    for kind, got, want in (("inputs", got_in, want_in), ("outputs", got_out, want_out)):
        if got != want:
            raise BundleError(
                f"stage '{spec.name}': ONNX {kind} {got} in {path} do not match the stage "
                f"signature {want}; the module's forward must take and return tensors in spec order"
            )


def simplify(path, spec: StageSpec) -> None:
    """Constant-fold and simplify in place with onnxslim; names are kept."""
    onnx = require("onnx", "export")
    onnxslim = require("onnxslim", "export", "ONNX simplification")
    try:
        with redirect_stdout(io.StringIO()):
            slim = onnxslim.slim(str(path))
    except Exception as exc:
        raise BundleError(f"stage '{spec.name}': onnxslim failed on {path}: {exc}") from exc
    onnx.save(slim, str(path))


def compare(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> Dict[str, dict]:
    """Per output: max/mean |diff|, max |ref| and SNR in dB."""
    stats = {}
    for name, r in ref.items():
        r = np.asarray(r, dtype=np.float64)
        g = np.asarray(got[name], dtype=np.float64)
        d = np.abs(r - g)
        noise = float(np.mean(d**2))
        signal = float(np.mean(r**2))
        snr = float("inf") if noise == 0 else 10.0 * np.log10(max(signal, 1e-30) / noise)
        stats[name] = {
            "max_abs_diff": float(d.max()) if d.size else 0.0,
            "mean_abs_diff": float(d.mean()) if d.size else 0.0,
            "max_abs_ref": float(np.abs(r).max()) if r.size else 0.0,
            "snr_db": snr,
        }
    return stats


def verify_onnx(module, spec: StageSpec, path, feeds_list: Iterable[Mapping[str, np.ndarray]], rtol: float = RTOL) -> dict:
    """Run FP32 ONNX (ORT, CPU) and PyTorch on every feed; raise BundleError beyond tolerance.

    Returns the worst ``max_abs_diff`` and its allowed bound over all feeds and outputs.
    """
    ort = require("onnxruntime", "export")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    # compare the graph as written: no float re-association by the optimizer
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise BundleError(f"stage '{spec.name}': ONNX Runtime cannot load {path}: {exc}") from exc
    worst = {"max_abs_diff": 0.0, "bound": 0.0, "feeds": 0}
    for k, feeds in enumerate(feeds_list):
        spec.check_feeds(feeds)
        ref = run_module(module, spec, feeds)
        try:
            outs = sess.run(spec.output_names, {n: np.ascontiguousarray(feeds[n]) for n in spec.input_names})
        except Exception as exc:
            raise BundleError(f"stage '{spec.name}': ONNX Runtime failed to run {path}: {exc}") from exc
        got = dict(zip(spec.output_names, outs))
        for name, s in compare(ref, got).items():
            bound = rtol * max(1.0, s["max_abs_ref"])
            if not np.isfinite(s["max_abs_diff"]) or s["max_abs_diff"] > bound:
                raise BundleError(
                    f"stage '{spec.name}': FP32 ONNX output '{name}' differs from PyTorch by "
                    f"max |diff| {s['max_abs_diff']:.3g} > {bound:.3g} (= {rtol:g} x max(1, max|ref| "
                    f"{s['max_abs_ref']:.3g})) on feed #{k}; the stage does not export faithfully "
                    f"(check for data-dependent Python control flow or unsupported ops)"
                )
            if s["max_abs_diff"] >= worst["max_abs_diff"]:
                worst.update(max_abs_diff=s["max_abs_diff"], bound=bound)
        worst["feeds"] = k + 1
    return worst


def export_stage(module, spec: StageSpec, path, opset: int = 17) -> None:
    """torch -> ONNX for one stage, names from the spec, legacy exporter, single file."""
    torch = require("torch", "export")
    module = module.eval()
    args = tuple(torch.from_numpy(a) for a in (spec.dummy_feeds()[n] for n in spec.input_names))
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=spec.input_names,
                output_names=spec.output_names,
                opset_version=int(opset),
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as exc:
        raise BundleError(f"stage '{spec.name}' failed to export to ONNX (opset {opset}): {exc}") from exc


def export_stages(
    modules: Mapping[str, object],
    specs: Sequence[StageSpec],
    out_dir,
    opset: int = 17,
    real_feeds: Optional[Mapping[str, List[Mapping[str, np.ndarray]]]] = None,
    simplify_graph: bool = True,
    rtol: float = RTOL,
    report: Optional[dict] = None,
) -> Dict[str, Path]:
    """Export every stage to ``out_dir/<stage>.onnx``; returns ``{stage: path}``.

    ``real_feeds`` maps a stage name to feeds it really receives (e.g. recorded
    by :class:`edgevos.export.calibrate.RecordingBackend`); the FP32 check runs
    on them as well as on the spec's dummy feeds.  ``report`` (a dict), if
    given, receives the verification numbers per stage.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = [s.name for s in specs if s.name not in modules]
    if missing:
        raise InputError(f"no module for stages {missing}; modules given: {sorted(modules)}")
    paths: Dict[str, Path] = {}
    for spec in specs:
        module = modules[spec.name]
        path = out_dir / f"{spec.name}.onnx"
        export_stage(module, spec, path, opset)
        check_onnx(path, spec)
        if simplify_graph:
            simplify(path, spec)
            check_onnx(path, spec)
        feeds = [spec.dummy_feeds(seed=0)] + list((real_feeds or {}).get(spec.name, []))
        stats = verify_onnx(module, spec, path, feeds, rtol)
        if report is not None:
            report[spec.name] = stats
        paths[spec.name] = path
    return paths
