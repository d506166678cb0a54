"""The int8-trt Q/DQ graph TensorRT builds from, inspected on the exported MobileNetV2:
residual Adds keep Q/DQ on the skip input only (the Conv branch stays free to fuse)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")


class _Low(torch.nn.Module):
    def __init__(self):
        super().__init__()
        from edgevos.models.backbones import MobileNetV2

        self.m = MobileNetV2().eval()

    def forward(self, x):
        return self.m.forward_low(x)


@pytest.fixture(scope="module")
def mobilenet_qdq(tmp_path_factory):
    from edgevos.export.quantize import quantize_stage
    from edgevos.stages import StageSpec, TensorSpec

    d = tmp_path_factory.mktemp("mnv2")
    fp32 = d / "low.onnx"
    torch.manual_seed(0)
    with torch.no_grad():
        torch.onnx.export(_Low(), torch.randn(1, 3, 64, 64), str(fp32), input_names=["image"],
                          output_names=["f4", "f8"], opset_version=17, dynamo=False)
    spec = StageSpec("low", (TensorSpec("image", (1, 3, 64, 64)),),
                     (TensorSpec("f4", (1, 24, 16, 16)), TensorSpec("f8", (1, 32, 8, 8))), "MobileNetV2 stride 4/8")
    rng = np.random.default_rng(0)
    feeds = [{"image": rng.standard_normal((1, 3, 64, 64)).astype(np.float32)} for _ in range(4)]
    out = d / "low.int8-trt.onnx"
    info = quantize_stage(fp32, out, spec, feeds, "int8-trt", method="minmax")
    return onnx.load(str(out)), info, out


def test_residual_adds_quantize_the_skip_input_only(mobilenet_qdq):
    model, info, _ = mobilenet_qdq
    producers = {o: n for n in model.graph.node for o in n.output}
    consts = {i.name for i in model.graph.initializer}
    adds = [n for n in model.graph.node if n.op_type == "Add" and not any(i in consts for i in n.input)]
    assert len(adds) == 3  # features[3], [5], [6]: the residual blocks up to stride 8
    for add in adds:
        kinds = sorted(producers[i].op_type for i in add.input)
        assert kinds == ["Conv", "DequantizeLinear"], (add.name, kinds)
    assert sorted(info["residual_adds_conv_branch_float"]) == sorted(a.name for a in adds)


def test_placement_keeps_the_graph_valid_and_close(mobilenet_qdq):
    import onnxruntime as ort

    model, _, path = mobilenet_qdq
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    f4, f8 = sess.run(None, {"image": x})
    assert np.isfinite(f4).all() and np.isfinite(f8).all()
