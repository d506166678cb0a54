"""FP16 float compute in the int8-trt graph (export.trt_float16): FP32 I/O and Q/DQ scales,
every float op outside the quantized regions FP16, Q/DQ untouched, and the outputs close."""
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from trt_fakes import qdq_bundle  # noqa: E402

C, H, W = 8, 16, 16


def _qdq_graph(weight_scale=1.0):
    """x -> Sub -> thin float Conv (3 -> 8) -> Relu -> Q/DQ -> INT8 Conv -> Relu -> residual Add
    (skip through Q/DQ) -> Resize -> Sigmoid, Concat with the float branch -> y (and Add -> z)."""
    rng = np.random.default_rng(0)

    def init(name, a):
        return numpy_helper.from_array(np.asarray(a), name)

    inits = [
        init("mean", np.full((1, 3, 1, 1), 0.5, np.float32)),
        init("w0", (rng.standard_normal((C, 3, 3, 3)) * 0.3 * weight_scale).astype(np.float32)),
        init("b0", (rng.standard_normal(C) * 0.1).astype(np.float32)),
        init("w1", (rng.standard_normal((C, C, 3, 3)) * 0.1).astype(np.float32)),
        init("b1", (rng.standard_normal(C) * 0.1).astype(np.float32)),
        init("s_a", np.array(0.02, np.float32)), init("z_a", np.array(0, np.int8)),
        init("s_w", np.full((C,), 0.003, np.float32)), init("z_w", np.zeros((C,), np.int8)),
        init("roi", np.array([], np.float32)), init("scales", np.array([1, 1, 2, 2], np.float32)),
    ]
    n = helper.make_node
    nodes = [
        n("Sub", ["x", "mean"], ["xs"], name="sub"),
        n("Conv", ["xs", "w0", "b0"], ["c0"], name="thin_conv", pads=[1, 1, 1, 1]),
        n("Relu", ["c0"], ["r0"], name="relu0"),
        n("QuantizeLinear", ["r0", "s_a", "z_a"], ["r0q"], name="q_r0"),
        n("DequantizeLinear", ["r0q", "s_a", "z_a"], ["r0d"], name="dq_r0"),
        n("QuantizeLinear", ["w1", "s_w", "z_w"], ["w1q"], name="q_w1", axis=0),
        n("DequantizeLinear", ["w1q", "s_w", "z_w"], ["w1d"], name="dq_w1", axis=0),
        n("Conv", ["r0d", "w1d", "b1"], ["c1"], name="int8_conv", pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"], name="relu1"),
        n("Add", ["r1", "r0d"], ["a1"], name="residual_add"),
        n("Resize", ["a1", "roi", "scales"], ["up"], name="resize", mode="linear"),
        n("Sigmoid", ["up"], ["sg"], name="sigmoid"),
        n("Resize", ["r0", "roi", "scales"], ["up0"], name="resize_float", mode="linear"),
        n("Concat", ["sg", "up0"], ["y"], name="concat", axis=1),
        n("Mul", ["a1", "a1"], ["z"], name="square"),
    ]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, H, W])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2 * C, 2 * H, 2 * W]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, C, H, W])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _converted(**kwargs):
    from edgevos.export.trt_float16 import float16_between_qdq

    model = _qdq_graph(**kwargs)
    before = onnx.ModelProto()
    before.CopyFrom(model)
    report = float16_between_qdq(model)
    return before, model, report


def _types(model):
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    t = {v.name: v.type.tensor_type.elem_type for v in
         list(inferred.graph.input) + list(inferred.graph.output) + list(inferred.graph.value_info)}
    t.update({i.name: i.data_type for i in model.graph.initializer})
    return t


def test_io_and_qdq_scales_stay_fp32_and_the_checker_passes():
    before, model, _ = _converted()
    onnx.checker.check_model(model, full_check=True)
    types = _types(model)
    assert [types[v.name] for v in model.graph.input] == [TensorProto.FLOAT]
    assert [types[v.name] for v in model.graph.output] == [TensorProto.FLOAT, TensorProto.FLOAT]
    assert [v.name for v in model.graph.output] == ["y", "z"]
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for n in qdq:
        assert types[n.input[1]] == TensorProto.FLOAT, n.name  # scales
        float_side = n.input[0] if n.op_type == "QuantizeLinear" else n.output[0]
        assert types[float_side] == TensorProto.FLOAT, n.name
    count = lambda m: sorted(n.op_type for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))  # noqa: E731
    assert count(model) == count(before)


def test_float_ops_between_quantized_regions_are_fp16():
    _, model, report = _converted()
    types = _types(model)
    by_name = {n.name: n for n in model.graph.node}
    for name in ("sub", "thin_conv", "relu0", "resize", "sigmoid", "resize_float", "concat", "square"):
        assert types[by_name[name].output[0]] == TensorProto.FLOAT16, name
        assert name in report["fp16"]
    # the INT8 conv and what TensorRT fuses into it (Relu, residual Add) keep the DQ's FP32
    for name in ("int8_conv", "relu1", "residual_add"):
        assert types[by_name[name].output[0]] == TensorProto.FLOAT, name
    assert types[by_name["thin_conv"].input[1]] == TensorProto.FLOAT16  # the float conv's weight
    assert types[by_name["resize"].input[2]] == TensorProto.FLOAT  # Resize scales are typed apart
    assert report["kept_fp32"] == {}
    # every non-Cast float op outside the quantized region computes in FP16
    region = {"int8_conv", "relu1", "residual_add"}
    for n in model.graph.node:
        if n.op_type in ("Cast", "QuantizeLinear", "DequantizeLinear") or n.name in region:
            continue
        assert types[n.output[0]] == TensorProto.FLOAT16, n.name


def test_outputs_stay_close(tmp_path):
    from edgevos.export.trt_float16 import emulate_float16, snr_db

    before, model, _ = _converted()
    x = {"x": np.random.default_rng(1).random((1, 3, H, W), dtype=np.float32)}
    ref = ort.InferenceSession(before.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)
    emu = ort.InferenceSession(emulate_float16(model).SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, x)
    for r, e in zip(ref, emu):
        assert snr_db(r, e) >= 40.0


def test_weights_fp16_cannot_hold_keep_their_op_fp32():
    _, model, report = _converted(weight_scale=1e6)  # |w| beyond FP16's 65504
    assert "thin_conv" in report["kept_fp32"] and "overflow" in report["kept_fp32"]["thin_conv"]
    types = _types(model)
    conv = next(n for n in model.graph.node if n.name == "thin_conv")
    assert types[conv.output[0]] == TensorProto.FLOAT and types[conv.input[1]] == TensorProto.FLOAT


def test_fp16_fits():
    from edgevos.export.trt_float16 import fp16_fits

    assert fp16_fits(np.linspace(-2, 2, 101, dtype=np.float32)) is None
    assert "overflow" in fp16_fits(np.array([1e5], np.float32))
    assert "dB" in fp16_fits(np.full(10, 1e-7, np.float32))  # flushed to FP16 subnormals


# ------------------------------------------------------------------ engine builds pick the graph
def _f16_bundle(tmp_path):
    from edgevos.bundle import add_files
    from edgevos.export.trt_float16 import write_float16

    root = qdq_bundle(tmp_path / "b")
    write_float16(root / "encoder.int8-trt.onnx", root / "encoder.int8-trt-f16.onnx")
    add_files(root, {"encoder": {"int8-trt-f16": root / "encoder.int8-trt-f16.onnx"},
                     "decoder": {"int8-trt-f16": root / "decoder.onnx"}})
    return root


def test_int8_builds_from_the_fp16_float_graph_where_the_bundle_has_it(tmp_path):
    from edgevos.bundle import load_bundle
    from edgevos.errors import BundleError
    from edgevos.export.tensorrt import BuildOptions, plan_stage

    b = load_bundle(_f16_bundle(tmp_path))
    plan = plan_stage(b, "encoder", BuildOptions("int8"))
    assert plan.source.name == "encoder.int8-trt-f16.onnx" and plan.mode.strongly_typed
    assert plan.mode.runs == "int8+fp16 typed"
    plan = plan_stage(b, "encoder", BuildOptions("int8", trt_float="fp32"))
    assert plan.source.name == "encoder.int8-trt.onnx" and plan.mode.runs == "int8"
    assert plan_stage(b, "decoder", BuildOptions("int8")).mode.runs == "fp16"  # no Q/DQ: FP16 flag
    assert plan_stage(b, "encoder", BuildOptions("best")).source.name == "encoder.int8-trt.onnx"
    plain = load_bundle(qdq_bundle(tmp_path / "plain"))
    assert plan_stage(plain, "encoder", BuildOptions("int8")).source.name == "encoder.int8-trt.onnx"
    with pytest.raises(BundleError, match="--trt-float fp16"):
        plan_stage(plain, "encoder", BuildOptions("int8", trt_float="fp16"))


def test_build_engines_sh_prefers_the_fp16_float_graph(tmp_path):
    from test_jetson_kit import _run_build

    root = _f16_bundle(tmp_path)
    p, calls = _run_build(tmp_path, str(root), "int8")
    assert p.returncode == 0, p.stderr
    enc = next(c for c in calls if "/encoder." in c.split()[0])
    assert f"--onnx={root}/encoder.int8-trt-f16.onnx" in enc and "--stronglyTyped" in enc


def test_export_cli_has_trt_float():
    import argparse

    from edgevos.export_cli import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args(["--out", "x", "--trt-float", "fp16"]).trt_float == "fp16"
    with pytest.raises(SystemExit):
        p.parse_args(["--out", "x", "--trt-float", "bf16"])
