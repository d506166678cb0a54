"""Per-stage ONNX export, the FP32 parity gate, calibration recording and INT8 quantization (toy family)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxslim")

from export_toy import ToyProgram, ToySequence, build_toy  # noqa: E402

from edgevos.errors import BundleError, DataError  # noqa: E402
from edgevos.backend import TorchBackend  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from edgevos.export.calibrate import collect_calibration
    from edgevos.export.onnx_export import export_stages

    modules, specs = build_toy()
    backend = TorchBackend(modules, specs)
    seqs = [ToySequence(f"s{i}", n=8, seed=i) for i in range(2)]
    calset = collect_calibration(ToyProgram, backend, seqs, max_frames=16, max_samples_per_stage=10, progress=False)
    out = tmp_path_factory.mktemp("toy")
    report = {}
    paths = export_stages(modules, specs, out, real_feeds={k: v[:2] for k, v in calset.samples.items()}, report=report)
    return dict(modules=modules, specs=specs, backend=backend, calset=calset, out=out, paths=paths, report=report)


def test_export_names_checker_and_fp32_parity(toy):
    for spec in toy["specs"]:
        model = onnx.load(str(toy["paths"][spec.name]))
        onnx.checker.check_model(model)
        assert [i.name for i in model.graph.input] == spec.input_names
        assert [o.name for o in model.graph.output] == spec.output_names
        assert model.opset_import[0].version == 17
        assert not any(n.op_type == "Constant" for n in model.graph.node), "onnxslim should fold constants"
        # verified on the dummy feed plus 2 real feeds, within the 1e-4 relative bound
        assert toy["report"][spec.name]["feeds"] == 3
        assert toy["report"][spec.name]["max_abs_diff"] <= toy["report"][spec.name]["bound"]


def test_sabotaged_stage_fails_loudly(toy, tmp_path, monkeypatch):
    """A stage whose ONNX does not compute what PyTorch does must stop the export."""
    from edgevos.export import onnx_export

    real_export = onnx_export.export_stage

    def export_wrong(module, spec, path, opset=17):
        if spec.name == "head":
            module = build_toy(seed=1)[0]["head"]  # other weights: a different function
        real_export(module, spec, path, opset)

    monkeypatch.setattr(onnx_export, "export_stage", export_wrong)
    with pytest.raises(BundleError, match=r"stage 'head'.*differs from PyTorch"):
        onnx_export.export_stages(toy["modules"], toy["specs"], tmp_path)


def test_unexportable_stage_names_the_stage(toy, tmp_path):
    from edgevos.export.onnx_export import export_stages

    class Bad(torch.nn.Module):
        def forward(self, feat, prev):
            return (torch.from_numpy(feat.numpy() * 2),)  # leaves the traced graph

    modules = dict(toy["modules"], head=Bad())
    with pytest.raises(BundleError, match="stage 'head'"):
        export_stages(modules, toy["specs"], tmp_path)


def test_recording_backend_records_real_feeds(toy):
    calset = toy["calset"]
    s = calset.summary
    assert s["frames"] == 16 and [q["name"] for q in s["sequences"]] == ["s0", "s1"]
    # one encoder + one head call per step (7 steps per sequence)
    assert s["calls_per_stage"] == {"encoder": 14, "head": 14}
    assert s["samples_per_stage"] == {"encoder": 10, "head": 10}
    prev = np.stack([f["prev"] for f in calset.samples["head"]])
    assert prev.min() >= 0 and prev.max() <= 1 and prev.std() > 0  # the program's soft masks, not noise
    reader = calset.reader(toy["specs"][1])
    n = 0
    while reader.get_next() is not None:
        n += 1
    assert n == 10


def test_zero_calibration_frames_is_a_clear_error(toy):
    from edgevos.export.calibrate import collect_calibration

    one_frame = [ToySequence("short", n=1)]
    with pytest.raises(DataError, match="zero calibration frames.*short"):
        collect_calibration(ToyProgram, toy["backend"], one_frame, max_frames=10, progress=False)
    with pytest.raises(DataError, match="no calibration sequences"):
        collect_calibration(ToyProgram, toy["backend"], [], max_frames=10, progress=False)


def test_missing_calibration_folder(tmp_path):
    from edgevos.export.calibrate import open_sequences

    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        open_sequences(str(tmp_path / "nope"))


def _quantize(toy, tmp_path, flavour, **kw):
    from edgevos.export.quantize import quantize_stage

    out = {}
    for spec in toy["specs"]:
        p = tmp_path / f"{spec.name}.{flavour}.onnx"
        info = quantize_stage(toy["paths"][spec.name], p, spec, toy["calset"].samples[spec.name], flavour, **kw)
        out[spec.name] = (p, info)
    return out


def _inits(model):
    return {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}


def test_int8_trt_qdq_placement(toy, tmp_path):
    q = _quantize(toy, tmp_path, "int8-trt", method="percentile")
    model = onnx.load(str(q["encoder"][0]))
    inits = _inits(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for n in qdq:  # symmetric: every zero point is 0, int8, and present (TensorRT's explicit form)
        assert len(n.input) == 3
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any()
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 3
    # the 3-channel stem is a thin conv: kept in float, with the reason recorded
    stem = next(c for c in convs if inits.get(c.input[1]) is not None and inits[c.input[1]].shape[1] == 3)
    assert "thin Conv2d" in q["encoder"][1]["excluded_nodes"][stem.name]
    assert inits[stem.input[1]].dtype == np.float32
    # per-channel weight scales on axis 0, one per output channel, on every other conv
    for conv in (c for c in convs if c is not stem):
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        axis = [a.i for a in dq.attribute if a.name == "axis"]
        assert axis in ([], [0])
        w = inits[dq.input[0]]
        assert w.dtype == np.int8 and inits[dq.input[1]].shape == (w.shape[0],)
        assert producers[conv.input[0]].op_type == "DequantizeLinear"  # activation Q/DQ on the input
        assert len(conv.input) < 3 or conv.input[2] in inits and inits[conv.input[2]].dtype == np.float32  # float bias
        # per-tensor activation scale
        assert inits[producers[conv.input[0]].input[1]].ndim == 0
    # the residual Add gets Q/DQ on its skip input only (the Conv branch stays float to fuse), not on its output
    add = next(n for n in model.graph.node if n.op_type == "Add")
    assert sorted(producers[i].op_type for i in add.input) == ["Conv", "DequantizeLinear"]
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == add.output[0] for n in model.graph.node)


def test_default_methods_per_flavour(toy, tmp_path):
    from edgevos.export.quantize import DEFAULT_METHOD

    q = _quantize(toy, tmp_path, "int8-trt")
    assert q["head"][1]["method"] == DEFAULT_METHOD["int8-trt"] == "percentile"


def test_keep_float_patterns(toy, tmp_path):
    q = _quantize(toy, tmp_path, "int8-trt", keep_float=["/conv2/*"])
    assert "/conv2/Conv" in q["encoder"][1]["excluded_nodes"]
    model = onnx.load(str(q["encoder"][0]))
    producers = {o: n for n in model.graph.node for o in n.output}
    conv2 = next(n for n in model.graph.node if n.name == "/conv2/Conv")
    assert producers.get(conv2.input[1]) is None  # float weight initializer, no DequantizeLinear


def test_int8_cpu_runs_and_correlates(toy, tmp_path):
    import onnxruntime as ort

    q = _quantize(toy, tmp_path, "int8-cpu")
    for spec in toy["specs"]:
        path, info = q[spec.name]
        assert info["quantized"] and info["format"] == "qdq"
        model = onnx.load(str(path))
        inits = _inits(model)
        act_zp = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
        assert act_zp and all(z.dtype == np.uint8 for z in act_zp)  # U8 activations
        w_dq = [inits[n.input[0]] for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
        assert any(w.dtype == np.int8 and w.ndim == 4 for w in w_dq)  # S8 weights
        fp = ort.InferenceSession(str(toy["paths"][spec.name]), providers=["CPUExecutionProvider"])
        i8 = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = toy["calset"].samples[spec.name][-1]
        a = fp.run(None, feeds)[0].ravel()
        b = i8.run(None, feeds)[0].ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.99


def test_int8_cpu_keeps_conv3d_float(tmp_path):
    from edgevos.export.onnx_export import export_stages
    from edgevos.export.quantize import quantize_stage
    from edgevos.stages import StageSpec, TensorSpec

    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c3 = torch.nn.Conv3d(8, 8, (3, 3, 3), padding=(0, 1, 1))
            self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1)  # wider than THIN_CHANNELS: quantized

        def forward(self, clip):
            return (self.c2(torch.relu(self.c3(clip)[:, :, 0])),)

    spec = StageSpec("mixed", (TensorSpec("clip", (1, 8, 3, 8, 8)),), (TensorSpec("y", (1, 8, 8, 8)),))
    paths = export_stages({"mixed": Mixed().eval()}, [spec], tmp_path)
    feeds = [spec.dummy_feeds(seed=i) for i in range(4)]
    info = quantize_stage(paths["mixed"], tmp_path / "q.onnx", spec, feeds, "int8-cpu")
    assert info["quantized"]
    assert [r for r in info["excluded_nodes"].values() if "Conv3d" in r]
    model = onnx.load(str(tmp_path / "q.onnx"))
    inits = _inits(model)
    weights = [inits[i] for n in model.graph.node if n.op_type == "Conv" for i in n.input[1:2] if i in inits]
    assert any(w.ndim == 5 and w.dtype == np.float32 for w in weights)


def test_zero_calibration_samples_for_a_stage(toy, tmp_path):
    from edgevos.export.quantize import quantize_stage

    spec = toy["specs"][1]
    with pytest.raises(DataError, match="stage 'head' has zero calibration samples"):
        quantize_stage(toy["paths"]["head"], tmp_path / "h.onnx", spec, [], "int8-trt")


def test_int8_cpu_thin_convs_float_bias_and_compact_file(toy, tmp_path):
    """int8-cpu: thin convs stay FP32, biases stay float, no zero-point initializers on weights,
    and ONNX Runtime still fuses every other conv into QLinearConv."""
    import onnxruntime as ort

    q = _quantize(toy, tmp_path, "int8-cpu")
    path, info = q["encoder"]
    model = onnx.load(str(path))
    inits = _inits(model)
    producers = {o: n for n in model.graph.node for o in n.output}
    thin = [k for k, r in info["excluded_nodes"].items() if "thin Conv2d" in r]
    assert len(thin) == 1  # the 3 -> 8 stem
    assert info["compact_bytes_saved"] > 0
    assert not any(a.dtype == np.int32 for a in inits.values())  # float bias, no INT32 bias/zero points
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            assert len(n.input) == 2  # all-zero weight zero point dropped (its default)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    quantized = [c for c in convs if c.input[1] in producers]
    assert len(quantized) == 2 and all(inits[c.input[2]].dtype == np.float32 for c in quantized)
    # what ONNX Runtime makes of it: the two INT8 convs fused, the stem in FP32
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node]
    assert ops.count("QLinearConv") == 2 and ops.count("Conv") + ops.count("FusedConv") == 1
    # the head's 1-channel output conv is thin too: FP32, like the stem
    hpath, hinfo = q["head"]
    assert any("thin Conv2d" in r for r in hinfo["excluded_nodes"].values())


def test_cli_method_and_keep_float_per_flavour():
    from edgevos.errors import InputError
    from edgevos.export.exporter import keep_float_for, resolve_methods
    from edgevos.export.quantize import DEFAULT_METHOD

    both = ["int8-cpu", "int8-trt"]
    assert resolve_methods(None, both) == DEFAULT_METHOD
    assert resolve_methods("minmax", both) == {"int8-cpu": "minmax", "int8-trt": "minmax"}
    assert resolve_methods("int8-trt=entropy", both) == {"int8-cpu": DEFAULT_METHOD["int8-cpu"], "int8-trt": "entropy"}
    assert resolve_methods("minmax", ["int8-cpu"]) == {"int8-cpu": "minmax"}
    with pytest.raises(InputError, match="'bogus'"):
        resolve_methods("bogus", both)
    with pytest.raises(InputError, match="'int4'"):
        resolve_methods("int4=minmax", both)
    text = "decoder_reuse,int8-trt:/features.0/*,int8-cpu:/predict/*"
    assert keep_float_for(text, "int8-trt") == ["decoder_reuse", "/features.0/*"]
    assert keep_float_for(text, "int8-cpu") == ["decoder_reuse", "/predict/*"]


def test_many_calibration_samples_reach_the_calibrator_in_chunks(tmp_path, monkeypatch):
    """More than CALIB_ALL_AT_ONCE samples are fed in equal chunks (ONNX Runtime's calibrators hold
    every intermediate tensor of one call: 128 samples of a 384x672 encoder went past 24 GB); the
    scales stay close to one call over all samples."""
    from onnxruntime.quantization import calibrate

    from edgevos.export import quantize as qmod
    from edgevos.export.onnx_export import export_stages
    from edgevos.stages import StageSpec, TensorSpec

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.Conv2d(16, 16, 3, padding=1)

        def forward(self, x):
            return (self.b(torch.relu(self.a(x))),)

    spec = StageSpec("net", (TensorSpec("x", (1, 8, 8, 8)),), (TensorSpec("y", (1, 16, 8, 8)),))
    paths = export_stages({"net": Net().eval()}, [spec], tmp_path)
    feeds = [spec.dummy_feeds(seed=i) for i in range(qmod.CALIB_ALL_AT_ONCE + 19)]  # 67: trimmed to 64
    calls = []
    collect = calibrate.HistogramCalibrater.collect_data

    def counting(self, reader):
        before = reader.pos
        collect(self, reader)
        calls.append(reader.pos - before)

    monkeypatch.setattr(calibrate.HistogramCalibrater, "collect_data", counting)
    qmod.quantize_stage(paths["net"], tmp_path / "chunked.onnx", spec, feeds, "int8-cpu")
    assert calls == [qmod.CALIB_CHUNK] * 4
    calls.clear()
    monkeypatch.setattr(qmod, "CALIB_ALL_AT_ONCE", 10_000)
    qmod.quantize_stage(paths["net"], tmp_path / "once.onnx", spec, feeds[:64], "int8-cpu")
    assert calls == [64]
    a, b = (onnx.load(str(tmp_path / f)) for f in ("chunked.onnx", "once.onnx"))
    # activation scales: the scalar float initializers, in graph order (same structure in both files)
    sa, sb = ([float(v) for v in _inits(m).values() if v.ndim == 0 and v.dtype == np.float32] for m in (a, b))
    assert sa and len(sa) == len(sb)
    for x, y in zip(sa, sb):
        assert abs(x - y) <= 0.1 * abs(y), (sa, sb)
