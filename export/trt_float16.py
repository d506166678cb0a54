"""FP16 for the float parts of an int8-trt (Q/DQ) graph.

TensorRT builds the int8-trt ONNX as a strongly typed network: Q/DQ nodes make
layers INT8 and every other layer runs in the type the ONNX gives it, FP32 for an
exported graph.  :func:`float16_between_qdq` rewrites the types so that the float
compute between quantized regions (thin float convs, Resize, Sigmoid, Concat, Add,
the normalisation ...) runs in FP16:

* graph inputs and outputs stay FP32 (a Cast after each input and before each output);
* Q/DQ nodes and their scales stay FP32 (TensorRT takes FP32 scales, and a
  DequantizeLinear's output has its scale's type): a Cast to FP16 after a DQ whose
  consumer is float compute, a Cast to FP32 before a Q fed from FP16;
* a quantized op (a Conv/ConvTranspose/Gemm/MatMul fed by DQ) and the pointwise ops
  fused into its kernel (the Relu/Clip/residual Add that follow it alone) keep
  FP32: TensorRT runs them as one INT8 kernel with a float epilogue, and a Cast
  inside that chain would split it;
* float initializers of FP16 ops (conv weights and biases, constants) become FP16
  when every value stays finite and the conversion keeps ``min_weight_snr_db``;
  otherwise the op keeps FP32 and the report says why;
* inputs an op's schema types apart from its data (Resize scales, Slice indices,
  Expand shapes) are left alone, and ops without an FP16 kernel in the ONNX schema
  keep FP32, as do ops in ``keep_fp32`` (by type).

``emulate_float16`` turns the result into an FP32 graph that rounds every FP16
tensor to FP16 (Cast to FP16 and back), so ONNX Runtime's CPU kernels, which lack
FP16 Conv and Resize, can measure the precision cost.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Set

import numpy as np

from edgevos.errors import require

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: pointwise ops TensorRT fuses into the kernel of the quantized op before them
EPILOGUE_OPS = ("Relu", "Clip", "LeakyRelu", "Add")
#: ops never made FP16 (their results leave FP16's range on real features)
KEEP_FP32_OPS = ("ReduceL2", "ReduceSumSquare", "ReduceSum", "ReduceProd", "Pow", "Exp", "Softmax", "LogSoftmax")
#: a float initializer becomes FP16 only if the conversion keeps this SNR (dB)
MIN_WEIGHT_SNR_DB = 60.0
FP16_SUFFIX = "/fp16"
FP32_SUFFIX = "/fp32"


def snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """10 log10(|ref|^2 / |ref - test|^2); inf when equal."""
    ref = np.asarray(ref, np.float64)
    err = float(np.sum((ref - np.asarray(test, np.float64)) ** 2))
    sig = float(np.sum(ref ** 2))
    if err == 0.0:
        return float("inf")
    return 10.0 * np.log10(max(sig, 1e-30) / err)


def fp16_fits(values: np.ndarray, min_snr_db: float = MIN_WEIGHT_SNR_DB) -> Optional[str]:
    """None if ``values`` survive a cast to FP16, else why not."""
    v = np.asarray(values, np.float32)
    if v.size == 0:
        return None
    with np.errstate(over="ignore"):
        h = v.astype(np.float16)
    if not np.all(np.isfinite(h[np.isfinite(v)])):
        return f"values up to {float(np.max(np.abs(v))):.3g} overflow FP16"
    s = snr_db(v, h.astype(np.float32))
    if s < min_snr_db:
        return f"FP16 keeps {s:.1f} dB < {min_snr_db:.0f} dB of its values"
    return None


def _schema(node, opset: int):
    from onnx import defs

    try:
        return defs.get_schema(node.op_type, opset, node.domain or "")
    except Exception:
        return None


def _formal(params, i):
    """The formal parameter of actual position ``i`` (the last one repeats when variadic)."""
    if i < len(params):
        return params[i]
    return params[-1] if params and params[-1].option == params[-1].option.Variadic else None


def _data_type_param(schema) -> Optional[str]:
    """The type parameter of a node's first output, if FP16 is allowed for it."""
    if schema is None or not schema.outputs:
        return None
    t = schema.outputs[0].type_str
    for c in schema.type_constraints:
        if c.type_param_str == t:
            return t if "tensor(float16)" in c.allowed_type_strs and "tensor(float)" in c.allowed_type_strs else None
    return None


def _elem_types(model) -> Dict[str, int]:
    onnx = require("onnx", "export")
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {}
    for v in list(inferred.graph.input) + list(inferred.graph.output) + list(inferred.graph.value_info):
        if v.type.HasField("tensor_type"):
            types[v.name] = v.type.tensor_type.elem_type
    for i in model.graph.initializer:
        types[i.name] = i.data_type
    return types


def _quantized_region(model, producers, consumers) -> Set[str]:
    """Names of the quantized ops and of the pointwise ops fused after them."""
    region: Set[str] = set()
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS and any(
                producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in node.input[:2]):
            region.add(node.name)
            cur = node
            while True:
                users = consumers.get(cur.output[0], [])
                if len(users) != 1 or users[0].op_type not in EPILOGUE_OPS or users[0].name in region:
                    break
                cur = users[0]
                region.add(cur.name)
    return region


def float16_between_qdq(model, min_weight_snr_db: float = MIN_WEIGHT_SNR_DB,
                        keep_fp32: Iterable[str] = KEEP_FP32_OPS) -> dict:
    """Make the float compute of a Q/DQ graph FP16, in place (see the module docs).

    Returns a report: ``fp16`` (node names now FP16), ``kept_fp32`` ({node: reason} for
    float compute left FP32), ``casts`` (Cast nodes added), ``initializers_fp16``.
    """
    onnx = require("onnx", "export")
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    for n in graph.node:  # Casts and initializers are named after nodes: every node needs a name
        if not n.name:
            n.name = f"{n.op_type}_{n.output[0]}"
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    types = _elem_types(model)
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: Dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    region = _quantized_region(model, producers, consumers)
    keep_types = set(keep_fp32)
    FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16

    # decide which nodes run FP16, and which of their inputs carry the data type
    fp16_nodes: Dict[str, List[int]] = {}
    kept: Dict[str, str] = {}
    for node in graph.node:
        if node.op_type in QDQ_OPS or node.op_type in ("Cast", "Constant") or node.name in region:
            continue
        if not node.output or types.get(node.output[0]) != FLOAT:
            continue
        schema = _schema(node, opset)
        t = _data_type_param(schema)
        if node.op_type in keep_types:
            kept[node.name] = f"{node.op_type} kept FP32 (range)"
            continue
        if t is None:
            kept[node.name] = f"{node.op_type} has no FP16 form in opset {opset}"
            continue
        data_inputs = [k for k, name in enumerate(node.input)
                       if name and (_formal(schema.inputs, k) is not None) and _formal(schema.inputs, k).type_str == t]
        if not any(node.input[k] not in inits for k in data_inputs):
            continue  # constant-only: folded by TensorRT
        bad = None
        for k in data_inputs:
            name = node.input[k]
            if types.get(name) != FLOAT:
                bad = f"input '{name}' is not FP32"
            elif name in inits:
                bad = fp16_fits(numpy_helper.to_array(inits[name]), min_weight_snr_db)
                bad = f"initializer '{name}': {bad}" if bad else None
            if bad:
                break
        if bad:
            kept[node.name] = bad
            continue
        fp16_nodes[node.name] = data_inputs

    # tensors computed in FP16 (outputs of FP16 nodes of the data type)
    half: Set[str] = set()
    for node in graph.node:
        if node.name in fp16_nodes:
            schema = _schema(node, opset)
            t = _data_type_param(schema)
            for k, o in enumerate(node.output):
                f = _formal(schema.outputs, k)
                if o and f is not None and f.type_str == t:
                    half.add(o)
    graph_outputs = {o.name for o in graph.output}
    renamed = {o: o + FP16_SUFFIX for o in half if o in graph_outputs}

    casts: List = []
    made: Dict[str, str] = {}
    new_inits = {}

    def cast(src: str, to: int, after: Optional[str]) -> str:
        name = (src + FP16_SUFFIX) if to == FLOAT16 else (src + FP32_SUFFIX)
        if src in renamed and to == FLOAT:
            return src  # the graph output itself (made below)
        if name not in made:
            made[name] = after
            casts.append((after, helper.make_node("Cast", [src if src not in renamed else renamed[src]], [name],
                                                  name=f"cast{'16' if to == FLOAT16 else '32'}:{src}", to=to)))
        return name

    def half_init(name: str) -> str:
        new = name + FP16_SUFFIX
        if new not in new_inits:
            arr = numpy_helper.to_array(inits[name]).astype(np.float16)
            new_inits[new] = numpy_helper.from_array(arr, new)
        return new

    for node in graph.node:
        if node.name in fp16_nodes:
            for k in fp16_nodes[node.name]:
                src = node.input[k]
                if src in half:
                    node.input[k] = renamed.get(src, src)
                elif src in inits:
                    node.input[k] = half_init(src)
                else:
                    producer = producers.get(src)
                    node.input[k] = cast(src, FLOAT16, producer.name if producer is not None else None)
            for k, o in enumerate(node.output):
                if o in renamed:
                    node.output[k] = renamed[o]
        else:
            for k, src in enumerate(node.input):
                if src in half:
                    node.input[k] = cast(src, FLOAT, producers[src].name)
    for o in renamed:  # graph outputs computed in FP16: a Cast back to FP32 under the output's name
        casts.append((producers[o].name, helper.make_node("Cast", [renamed[o]], [o], name=f"cast32:{o}", to=FLOAT)))

    # place each Cast right after the node that makes its input (graph inputs: first)
    after: Dict[Optional[str], list] = {}
    for where, c in casts:
        after.setdefault(where, []).append(c)
    order = list(after.get(None, []))
    for node in graph.node:
        order.append(node)
        order.extend(after.get(node.name, []))
    del graph.node[:]
    graph.node.extend(order)
    graph.initializer.extend(new_inits.values())
    used = {i for n in graph.node for i in n.input}
    keep_inits = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    del graph.value_info[:]  # stale types: inferred again by whoever needs them
    onnx.checker.check_model(model)
    return {"fp16": sorted(fp16_nodes), "kept_fp32": kept, "casts": len(casts),
            "initializers_fp16": len(new_inits)}


def emulate_float16(model):
    """A copy of an FP16-float graph that computes in FP32 on values rounded to FP16.

    FP16 initializers become FP32 (exact), each Cast to FP16 becomes a Cast to FP16 and
    back, and every output an FP16 node makes is rounded the same way.  Accumulation
    inside an op is FP32 here.
    """
    onnx = require("onnx", "export")
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16
    half = set()
    for i in g.initializer:
        if i.data_type == FLOAT16:
            half.add(i.name)
            i.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(i).astype(np.float32), i.name))
    types = _elem_types(model)
    order = []
    for node in g.node:
        is_cast16 = node.op_type == "Cast" and next(a.i for a in node.attribute if a.name == "to") == FLOAT16
        outs16 = [o for o in node.output if types.get(o) == FLOAT16]
        if not outs16:
            order.append(node)
            continue
        if is_cast16:
            for a in node.attribute:
                if a.name == "to":
                    a.i = FLOAT
        for k, o in enumerate(node.output):
            if o in outs16:
                node.output[k] = o + "/pre"
        order.append(node)
        for o in outs16:
            order.append(helper.make_node("Cast", [o + "/pre"], [o + "/h"], to=FLOAT16))
            order.append(helper.make_node("Cast", [o + "/h"], [o], to=FLOAT))
    del g.node[:]
    g.node.extend(order)
    del g.value_info[:]
    onnx.checker.check_model(m)
    return m


#: what ``--trt-float`` accepts: the type of the int8-trt graph's float (non-quantized) compute
TRT_FLOATS = ("fp16", "fp32")
#: fp16: measured against the FP32 graph, FP16 float parts cost <= 0.2 dB SNR per stage of the shipped
#: G-FRTM-fast over plain int8-trt (bench_trt_float16.py); --trt-float fp32 keeps the float parts FP32
DEFAULT_TRT_FLOAT = "fp16"


def write_float16(src, dst, **kwargs) -> dict:
    """Write the FP16-float form of the int8-trt ONNX ``src`` to ``dst``; returns the pass's report."""
    onnx = require("onnx", "export")
    model = onnx.load(str(src))
    report = float16_between_qdq(model, **kwargs)
    onnx.save(model, str(dst))
    return report
