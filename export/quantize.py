"""Static INT8 quantization of stage ONNX files, in two flavours.

``int8-trt``
    Q/DQ ONNX that TensorRT builds as an explicitly quantized, strongly typed
    network: INT8 activations and weights, symmetric (every zero point 0),
    per-channel weight scales on the output-channel axis, per-tensor activation
    scales, Q/DQ on the inputs of Conv/ConvTranspose/Gemm/MatMul and of residual
    Adds (not on their outputs), biases left in float for TensorRT to fuse.
``int8-cpu``
    The fast form for ONNX Runtime's CPU kernels: asymmetric UINT8 activations
    with INT8 per-channel weights (U8S8), so Conv+ReLU fuse into one integer
    kernel.  Conv3d stays FP32 (INT8 Conv3d is slower than FP32 on ORT CPU).

Both use ``onnxruntime.quantization.quantize_static`` after ``quant_pre_process``
and a calibration data reader over the feeds each stage really receives.
"""
from __future__ import annotations

import fnmatch
import logging
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from edgevos.errors import BundleError, DataError, InputError, require
from edgevos.stages import StageSpec

FLAVOURS = ("int8-trt", "int8-cpu")
METHODS = ("minmax", "entropy", "percentile")
#: ONNX Runtime format for int8-cpu, chosen by measurement (see module docs / export.benchmark)
CPU_FORMAT = "qdq"

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

        def get_next(self):
            if self.pos >= len(self.items):
                return None
            self.pos += 1
            return self.items[self.pos - 1]

        def rewind(self):
            self.pos = 0

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
    """Nodes left in float, with the reason: keep_float patterns, Conv3d (cpu), constant Adds (trt)."""
    consts = _initializer_names(model)
    shapes = {i.name: len(i.dims) for i in model.graph.initializer}
    out: Dict[str, str] = {}
    for node in model.graph.node:
        if keep_float and _matches(node.name, keep_float):
            out[node.name] = "keep_float"
        elif node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1 and shapes.get(node.input[1], 4) == 5:
            if flavour == "int8-cpu":
                out[node.name] = "Conv3d (INT8 slower than FP32 on ONNX Runtime CPU)"
        elif flavour == "int8-trt" and node.op_type == "Add":
            if sum(1 for i in node.input if i not in consts) < 2:
                out[node.name] = "Add with a constant operand (not a residual add)"
    return out


def preprocess(fp32_path, out_path) -> None:
    """ORT's recommended pre-processing: symbolic shape inference + graph optimisation."""
    q = require("onnxruntime.quantization", "export")
    try:
        q.quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=False)
    except Exception:  # symbolic shape inference can fail on unusual graphs: retry without it
        q.quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=True)


def quantize_stage(
    fp32_path,
    out_path,
    spec: StageSpec,
    feeds: Sequence[Mapping[str, np.ndarray]],
    flavour: str,
    method: str = "minmax",
    keep_float: Sequence[str] = (),
    cpu_format: Optional[str] = None,
    percentile: float = 99.999,
) -> dict:
    """Quantize one stage's FP32 ONNX to ``out_path``; returns a summary dict."""
    onnx = require("onnx", "export")
    q = require("onnxruntime.quantization", "export")
    if flavour not in FLAVOURS:
        raise InputError(f"INT8 flavour '{flavour}' is unknown: use one of {list(FLAVOURS)}")
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
            extra.update(ActivationSymmetric=False, WeightSymmetric=True)
            kwargs = dict(
                quant_format=q.QuantFormat.QDQ if fmt == "qdq" else q.QuantFormat.QOperator,
                activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8,
            )
        logger = logging.getLogger()
        level = logger.level
        logger.setLevel(logging.ERROR)  # quantize_static logs a pre-processing hint at WARNING
        try:
            q.quantize_static(
                str(pre),
                str(out_path),
                reader,
                per_channel=True,
                reduce_range=False,
                nodes_to_exclude=sorted(exclude),
                calibrate_method=calib,
                extra_options=extra,
                **kwargs,
            )
        except Exception as exc:
            raise BundleError(f"stage '{spec.name}': {flavour} quantization failed: {exc}") from exc
        finally:
            logger.setLevel(level)
    qmodel = onnx.load(str(out_path))
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
    }
