"""Static INT8 quantization of stage ONNX files, in two flavours.

``int8-trt``
    Q/DQ ONNX that TensorRT builds as an explicitly quantized, strongly typed
    network: INT8 activations and weights, symmetric (every zero point 0),
    per-channel weight scales on the output-channel axis, per-tensor activation
    scales, Q/DQ on the inputs of Conv/ConvTranspose/Gemm/MatMul and on the skip
    input of residual Adds (not on the Conv branch, so TensorRT fuses
    Conv+Add(+ReLU); not on outputs), biases left in float for TensorRT to fuse.
``int8-cpu``
    The fast form for ONNX Runtime's CPU kernels: asymmetric UINT8 activations
    with INT8 per-channel weights (U8S8), so Conv+ReLU fuse into one integer
    kernel.  Conv3d stays FP32 (INT8 Conv3d is slower than FP32 on ORT CPU).

Both use ``onnxruntime.quantization.quantize_static`` after ``quant_pre_process``
and a calibration data reader over the feeds each stage really receives.
"""
from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from edgevos.errors import BundleError, DataError, InputError, require
from edgevos.stages import StageSpec

FLAVOURS = ("int8-trt", "int8-cpu")
METHODS = ("minmax", "entropy", "percentile")
#: percentile of |activation| kept by the percentile method: 99.99 beat 99.999 (ORT's default)
#: by 1-4 dB SNR on the MobileNetV2 encoders in both flavours
PERCENTILE = 99.99
#: activation calibration method per flavour when none is given, chosen by measurement
#: (encoder SNR and held-out J&F of the shipped G-FRTM-fast; see the module docs)
DEFAULT_METHOD = {"int8-cpu": "percentile", "int8-trt": "percentile"}
#: ONNX Runtime format for int8-cpu, chosen by measurement (see module docs / export.benchmark)
CPU_FORMAT = "qdq"

#: a Conv2d with at most this many input or output channels stays in float (both flavours;
#: FP16/FP32 in TensorRT)
#: (an image stem, a 1-channel logits/delta head): ORT's INT8 kernels are slower than its
#: FP32 NCHWc ones there (measured 2.6 vs 1.0 ms for the 3->32 MobileNetV2 stem at
#: 256x448, 0.54 vs 0.22 ms for the 16->1 predict conv), and they are the layers where
#: 8 bits cost most accuracy.
THIN_CHANNELS = 4

# Ops whose inputs TensorRT wants quantized explicitly; Add only for residual adds.
TRT_OP_TYPES = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add"]


def _calibration_method(method: str):
    q = require("onnxruntime.quantization", "export")
    table = {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }
    if method not in table:
        raise InputError(f"calibration method '{method}' is unknown: use one of {list(table)}")
    return table[method]


def make_reader(spec: StageSpec, feeds: Sequence[Mapping[str, np.ndarray]]):
    """A CalibrationDataReader over recorded feeds for one stage."""
    q = require("onnxruntime.quantization", "export")
    if not feeds:
        raise DataError(
            f"stage '{spec.name}' has zero calibration samples: the step program never ran it on "
            f"the calibration frames; use more or longer calibration sequences (--calib-frames)"
        )

    class StageReader(q.CalibrationDataReader):
        def __init__(self):
            self.items = [{n: np.ascontiguousarray(f[n]) for n in spec.input_names} for f in feeds]
            self.pos = 0

            self.end = len(self.items)

        def get_next(self):
            if self.pos >= min(self.end, len(self.items)):
                return None
            self.pos += 1
            return self.items[self.pos - 1]

        def rewind(self):
            self.pos, self.end = 0, len(self.items)

        def set_range(self, start_index: int, end_index: int):
            """Serve samples [start_index, end_index) only: the calibrator is fed in chunks."""
            self.pos, self.end = start_index, end_index

        def __len__(self):
            return len(self.items)

    return StageReader()


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or p == name for p in patterns)


def _initializer_names(model) -> set:
    return {i.name for i in model.graph.initializer} | {
        n.output[0] for n in model.graph.node if n.op_type == "Constant"
    }


def excluded_nodes(model, flavour: str, keep_float: Sequence[str] = ()) -> Dict[str, str]:
    """Nodes left in float, with the reason: keep_float patterns, a local correlation (the warp reuse
    head's ``.../correlate/...``), Conv3d (cpu), thin Conv2d (cpu: few input or output channels),
    constant Adds (trt)."""
    consts = _initializer_names(model)
    dims = {i.name: tuple(i.dims) for i in model.graph.initializer}
    out: Dict[str, str] = {}
    for node in model.graph.node:
        w = dims.get(node.input[1], ()) if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1 else ()
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        if keep_float and _matches(node.name, keep_float):
            out[node.name] = "keep_float"
        elif "/correlate/" in node.name:
            out[node.name] = ("local correlation of normalised embeddings: cosines that INT8 would coarsen, and "
                              "Q/DQ around each of its small products made the stage 1.6x slower on ONNX Runtime CPU")
        elif len(w) == 5:
            if flavour == "int8-cpu":
                out[node.name] = "Conv3d (INT8 slower than FP32 on ONNX Runtime CPU)"
        elif node.op_type == "Conv" and len(w) == 4 and groups == 1 and min(w[0], w[1]) <= THIN_CHANNELS:
            out[node.name] = (
                f"thin Conv2d ({w[1]} -> {w[0]} channels): among the least accurate layers in INT8"
                + (", and slower in INT8 than in FP32 on ONNX Runtime CPU" if flavour == "int8-cpu" else "")
            )
        elif flavour == "int8-trt" and node.op_type == "Add":
            if sum(1 for i in node.input if i not in consts) < 2:
                out[node.name] = "Add with a constant operand (not a residual add)"
    return out


def _graph_maps(model):
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: Dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return producers, consumers


def residual_add_placement(model) -> List[str]:
    """int8-trt: drop the Q/DQ pair on the Conv branch of each residual Add, keeping the one
    on the skip input (NVIDIA's Q/DQ placement: a quantized Conv output would stop the
    Conv+Add(+ReLU) fusion).  The Conv branch is an input whose quantized tensor is a Conv
    output read by nothing else.  Returns the names of the Adds changed."""
    producers, consumers = _graph_maps(model)

    def conv_branch(tensor):
        dq = producers.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = producers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            return None
        src = producers.get(q.input[0])
        if src is None or src.op_type != "Conv" or len(consumers.get(q.input[0], [])) != 1:
            return None
        return q.input[0], q, dq

    changed, dead = [], set()
    for node in model.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        branches = [conv_branch(t) for t in node.input]
        if not all(producers.get(t) is not None and producers[t].op_type == "DequantizeLinear" for t in node.input):
            continue  # one side is already float (or it is not a residual add)
        k = next((i for i, b in enumerate(branches) if b is not None), None)
        if k is None:
            continue
        conv_out, q, dq = branches[k]
        node.input[k] = conv_out
        changed.append(node.name)
        others = [c for c in consumers.get(dq.output[0], []) if c is not node]
        consumers[dq.output[0]] = others
        if not others:
            dead.add(id(dq))
            if all(id(c) in dead for c in consumers.get(q.output[0], [])):
                dead.add(id(q))
    keep = [n for n in model.graph.node if id(n) not in dead]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return changed


def compact(model) -> int:
    """int8-cpu: drop all-zero zero points of INT8/INT32 DequantizeLinear inputs (their default)
    and give initializers short names.  Returns bytes saved in the serialized model."""
    onnx = require("onnx", "export")
    before = model.ByteSize()
    inits = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type != "DequantizeLinear" or len(n.input) < 3 or n.input[0] not in inits or n.input[2] not in inits:
            continue
        if inits[n.input[0]].data_type not in (onnx.TensorProto.INT8, onnx.TensorProto.INT32):
            continue
        if not onnx.numpy_helper.to_array(inits[n.input[2]]).any():
            del n.input[2]
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    graph_io = {v.name for v in list(model.graph.input) + list(model.graph.output)}
    rename = {i.name: f"c{k}" for k, i in enumerate(keep) if i.name not in graph_io}
    for i in keep:
        i.name = rename.get(i.name, i.name)
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    for n in model.graph.node:
        for k, name in enumerate(n.input):
            if name in rename:
                n.input[k] = rename[name]
    for v in list(model.graph.value_info):
        if v.name in rename:
            model.graph.value_info.remove(v)
    return before - model.ByteSize()


def preprocess(fp32_path, out_path) -> None:
    """ORT's recommended pre-processing: symbolic shape inference + graph optimisation."""
    q = require("onnxruntime.quantization", "export")
    try:
        q.quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=False)
    except Exception:  # symbolic shape inference can fail on unusual graphs: retry without it
        q.quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=True)


class _DropBelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextlib.contextmanager
def _quiet_root_warnings():
    """Drop what ONNX Runtime's quantizer logs below ERROR through the root logger
    (``logging.warning(...)``), without changing the root logger's level or handlers:
    a filter on the root logger sees only records logged to it directly, never the
    ``edgevos`` loggers' records passing through; a NullHandler meanwhile keeps
    ``logging.warning`` from installing a default stderr handler (``basicConfig``)."""
    root = logging.getLogger()
    drop, null = _DropBelowError(), logging.NullHandler()
    root.addFilter(drop)
    root.addHandler(null)
    try:
        yield
    finally:
        root.removeHandler(null)
        root.removeFilter(drop)


#: more calibration samples than this are fed to the calibrator in chunks of CALIB_CHUNK: ONNX
#: Runtime's calibrators hold every intermediate tensor of the samples of one call in memory
#: (128 samples of a 384x672 encoder went past 24 GB); histograms and ranges accumulate across chunks
CALIB_ALL_AT_ONCE = 48
CALIB_CHUNK = 16


def calibration_chunk(n: int) -> Optional[int]:
    """Samples per calibrator call for ``n`` samples (None: all at once); ``n`` is first trimmed to a
    multiple of it (ONNX Runtime needs equal chunks), see :func:`quantize_stage`."""
    return None if n <= CALIB_ALL_AT_ONCE else CALIB_CHUNK


def _run_quantize_static(q, pre, out_path, reader, exclude, calib, extra, kwargs) -> None:
    chunk = calibration_chunk(len(reader))
    if chunk:
        reader.items = reader.items[:len(reader.items) - len(reader.items) % chunk]
        reader.rewind()
        extra = {**extra, "CalibStridedMinMax": chunk}  # ONNX Runtime's name; it chunks every calibrator
    with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress
        q.quantize_static(
            str(pre),
            str(out_path),
            reader,
            per_channel=True,
            reduce_range=False,
            nodes_to_exclude=sorted(exclude),
            calibrate_method=calib,
            extra_options=dict(extra),
            **kwargs,
        )


def quantize_stage(
    fp32_path,
    out_path,
    spec: StageSpec,
    feeds: Sequence[Mapping[str, np.ndarray]],
    flavour: str,
    method: Optional[str] = None,
    keep_float: Sequence[str] = (),
    cpu_format: Optional[str] = None,
    percentile: float = PERCENTILE,
    extra_options: Optional[Mapping[str, object]] = None,
    op_types: Optional[Sequence[str]] = None,
) -> dict:
    """Quantize one stage's FP32 ONNX to ``out_path``; returns a summary dict."""
    onnx = require("onnx", "export")
    q = require("onnxruntime.quantization", "export")
    if flavour not in FLAVOURS:
        raise InputError(f"INT8 flavour '{flavour}' is unknown: use one of {list(FLAVOURS)}")
    method = method or DEFAULT_METHOD[flavour]
    calib = _calibration_method(method)
    reader = make_reader(spec, feeds)
    with tempfile.TemporaryDirectory(prefix="edgevos-q-") as tmp:
        pre = Path(tmp) / f"{spec.name}.pre.onnx"
        preprocess(fp32_path, pre)
        model = onnx.load(str(pre))
        exclude = excluded_nodes(model, flavour, keep_float)
        extra = {"CalibPercentile": float(percentile)} if method == "percentile" else {}
        if flavour == "int8-trt":
            extra.update(
                ActivationSymmetric=True,
                WeightSymmetric=True,
                QuantizeBias=False,  # TensorRT fuses float bias into the INT8 conv
                OpTypesToExcludeOutputQuantization=list(TRT_OP_TYPES),
                QDQOpTypePerChannelSupportToAxis={"MatMul": 1, "Gemm": 0},
                DedicatedQDQPair=False,
            )
            kwargs = dict(
                quant_format=q.QuantFormat.QDQ,
                op_types_to_quantize=list(TRT_OP_TYPES),
                activation_type=q.QuantType.QInt8,
                weight_type=q.QuantType.QInt8,
            )
            fmt = "qdq"
        else:
            fmt = (cpu_format or CPU_FORMAT).lower()
            if fmt not in ("qdq", "qoperator"):
                raise InputError(f"int8-cpu format '{fmt}' is unknown: use 'qdq' or 'qoperator'")
            # float bias: ORT quantizes it itself when it fuses DQ -> Conv -> Q into QLinearConv
            # (same kernel, same speed), and the file is smaller than with INT32 bias + scale
            extra.update(ActivationSymmetric=False, WeightSymmetric=True, QuantizeBias=False)
            kwargs = dict(
                quant_format=q.QuantFormat.QDQ if fmt == "qdq" else q.QuantFormat.QOperator,
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
            )
        if extra_options:
            extra.update(extra_options)
        if op_types is not None:
            kwargs["op_types_to_quantize"] = list(op_types)
        fallback = None
        try:
            with _quiet_root_warnings():  # quantize_static logs a pre-processing hint at WARNING
                try:
                    _run_quantize_static(q, pre, out_path, reader, exclude, calib, extra, kwargs)
                except Exception as exc:
                    if method == "minmax":
                        raise
                    # histogram methods fail on degenerate ranges (e.g. a near-constant tensor):
                    # fall back to min/max for this stage and say so in the summary
                    fallback = f"{method} calibration failed ({exc}); used minmax"
                    reader.rewind()
                    extra.pop("CalibPercentile", None)
                    _run_quantize_static(q, pre, out_path, reader, exclude, q.CalibrationMethod.MinMax, extra, kwargs)
        except Exception as exc:
            raise BundleError(f"stage '{spec.name}': {flavour} quantization failed: {exc}") from exc
    qmodel = onnx.load(str(out_path))
    post = {}
    if flavour == "int8-trt":
        post["residual_adds_conv_branch_float"] = residual_add_placement(qmodel)
        onnx.save(qmodel, str(out_path))
    if flavour == "int8-cpu" and fmt == "qdq":
        post["compact_bytes_saved"] = compact(qmodel)
        onnx.save(qmodel, str(out_path))
    ops: Dict[str, int] = {}
    for n in qmodel.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    quantized = sum(v for k, v in ops.items() if k in ("QuantizeLinear", "QLinearConv", "QLinearAdd", "QLinearMatMul", "ConvInteger", "MatMulInteger"))
    if quantized == 0:
        # nothing quantizable left (e.g. a Conv3d-only stage under int8-cpu, or every node
        # kept float): the stage runs in FP32; the caller points this precision at the FP32 file
        Path(out_path).unlink()
        return {"flavour": flavour, "quantized": False, "format": fmt, "method": method,
                "samples": len(reader), "excluded_nodes": exclude, "op_counts": ops}
    return {
        "flavour": flavour,
        "quantized": True,
        "format": fmt,
        "method": method,
        "samples": len(reader),
        "excluded_nodes": exclude,
        "op_counts": ops,
        **post,
        **({"method_fallback": fallback} if fallback else {}),
    }
