"""edgevos bench: FLOPs counted from ONNX graphs, the matrix, a real run with an error row."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _model(nodes, inputs, outputs, inits):
    from onnx import helper

    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_count_flops_by_hand(tmp_path):
    """Conv (grouped), ConvTranspose, Gemm (transB), batched MatMul, a Q/DQ-wrapped Conv,
    QLinearConv and ConvInteger, against MAC counts done by hand."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    from edgevos.roofline import count_flops

    f32 = lambda name, a: numpy_helper.from_array(np.asarray(a, np.float32), name)  # noqa: E731
    inits = [
        f32("w1", np.zeros((16, 4, 3, 3))),        # Conv 8->16, group 2, 3x3, stride 2: out (1,16,8,8)
        f32("w2", np.zeros((16, 4, 2, 2))),        # ConvTranspose 16->8 (group 2 -> w (16, 4, 2, 2)), stride 2: out (1,8,16,16)
        f32("g", np.zeros((10, 64))),              # Gemm (3,64) x (10,64)^T
        numpy_helper.from_array(np.zeros((8, 8, 1, 1), np.int8), "wq"),
        numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "z"),
        numpy_helper.from_array(np.array(0, np.uint8), "zu"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], group=2, pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("ConvTranspose", ["c1", "w2"], ["ct"], group=2, strides=[2, 2]),
        helper.make_node("Gemm", ["a", "g"], ["gm"], transB=1),
        helper.make_node("MatMul", ["ma", "mb"], ["mm"]),
        # Q/DQ conv on ct: (1,8,16,16) -> (1,8,16,16), 1x1
        helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["wdq"]),
        helper.make_node("Conv", ["ct", "wdq"], ["qc"]),
        # QLinearConv and ConvInteger on a uint8 input (1,8,16,16), 1x1 weights (8,8,1,1)
        helper.make_node("QLinearConv", ["xu", "s", "zu", "wq", "s", "z", "s", "zu"], ["ql"]),
        helper.make_node("ConvInteger", ["xu", "wq", "zu", "z"], ["ci"]),
    ]
    inputs = [helper.make_tensor_value_info("x", T.FLOAT, [1, 8, 16, 16]),
              helper.make_tensor_value_info("a", T.FLOAT, [3, 64]),
              helper.make_tensor_value_info("ma", T.FLOAT, [2, 5, 7]),
              helper.make_tensor_value_info("mb", T.FLOAT, [2, 7, 9]),
              helper.make_tensor_value_info("xu", T.UINT8, [1, 8, 16, 16])]
    outputs = [helper.make_tensor_value_info(n, T.FLOAT, None) for n in ("gm", "mm", "qc")]
    outputs += [helper.make_tensor_value_info("ql", T.UINT8, None), helper.make_tensor_value_info("ci", T.INT32, None)]
    path = tmp_path / "m.onnx"
    onnx.save(_model(nodes, inputs, outputs, inits), path)
    r = count_flops(path)
    macs = {
        "conv": 1 * 16 * 8 * 8 * 4 * 9,
        "convT": 1 * 16 * 8 * 8 * 4 * 4,
        "gemm": 3 * 64 * 10,
        "matmul": 2 * 5 * 9 * 7,
        "qdq": 8 * 16 * 16 * 8,
        "qlinear": 8 * 16 * 16 * 8,
        "convint": 8 * 16 * 16 * 8,
    }
    assert r["unresolved"] == []
    assert r["by_op"]["ConvTranspose"] == 2 * macs["convT"]
    assert r["by_op"]["Gemm"] == 2 * macs["gemm"]
    assert r["by_op"]["MatMul"] == 2 * macs["matmul"]
    assert r["by_op"]["Conv"] == 2 * (macs["conv"] + macs["qdq"] + macs["qlinear"] + macs["convint"])
    assert r["flops"] == 2 * sum(macs.values())


def test_stage_rows_and_peak():
    from edgevos.roofline import measure_peak, stage_rows

    peaks = measure_peak(threads=1, size=256, repeat=2, budget_s=0.5)
    assert peaks["fp32"]["gflops"] > 0.1
    rows = stage_rows({"enc": {"flops": 2e9}, "dec": {"flops": 1e9}},
                      {"enc": {"p50": 10.0}, "dec": None}, {"enc": "int8-cpu", "dec": "fp32"},
                      {"fp32": {"gflops": 100.0}, "int8": {"gflops": 400.0}})
    enc, dec = rows
    assert enc["achieved_gflops"] == pytest.approx(200.0) and enc["fraction_of_peak"] == pytest.approx(0.5)
    assert dec["achieved_gflops"] is None and dec["peak_gflops"] == 100.0


def test_matrix_and_argument_errors():
    from edgevos.bench import matrix, parse_families, parse_weights
    from edgevos.errors import InputError

    fams = parse_families("gfrtm,slowfast:3-7")
    assert fams == [("gfrtm", None), ("slowfast", "3-7")]
    rows, skipped = matrix(fams[:1], ["torch", "onnxruntime"], ["fp32", "int8-cpu"], [1.0, 0.7])
    assert len(rows) == 6 and skipped == ["torch x int8-cpu"]
    assert parse_weights("gfrtm=a.pt,slowfast=b.pt", fams) == {"gfrtm": "a.pt", "slowfast": "b.pt"}
    for bad in (lambda: parse_families("gfrtm:3-7"), lambda: parse_families("nope"),
                lambda: parse_weights("gfrtm=a.pt", fams),
                lambda: matrix(fams, ["torch"], ["int3"], [1.0]), lambda: matrix(fams, ["cuda"], ["fp32"], [1.0])):
        with pytest.raises(InputError):
            bad()


def test_tensorrt_rows_take_int8_best_and_fp16():
    """The matrix records strongly typed int8 and best (INT8 + FP16 flags) side by side."""
    from edgevos.bench import matrix

    rows, skipped = matrix([("gfrtm", None)], ["tensorrt"], ["int8", "best", "fp16"], [1.0])
    assert [r["precision"] for r in rows] == ["int8", "best", "fp16"] and not skipped



def test_bench_presets_come_from_the_family_registry(monkeypatch):
    """A family's presets are its registry entry's: a new family with presets needs no bench change."""
    from edgevos.bench import parse_families
    from edgevos.errors import InputError
    from edgevos.models import registry

    def check(preset):
        if preset not in ("small", "large"):
            raise InputError(f"unknown toy preset '{preset}'")

    monkeypatch.setattr(sys.modules[__name__], "check_toy_preset", check, raising=False)
    monkeypatch.setitem(registry.FAMILIES, "toy", registry.Family("toy", "toy", "m:f", "m:C",
                                                                   f"{__name__}:check_toy_preset"))
    assert parse_families("toy:large,gfrtm") == [("toy", "large"), ("gfrtm", None)]
    with pytest.raises(InputError, match="unknown toy preset 'huge'"):
        parse_families("toy:huge")
    with pytest.raises(InputError, match=r"gfrtm has no presets.*\['slowfast', 'toy'\]"):
        parse_families("gfrtm:3-7")

@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "gfrtm_tiny.pt"
    code = ("import torch; torch.manual_seed(0)\n"
            "from edgevos.models.registry import get_family\n"
            "from edgevos.models.weights import save_checkpoint\n"
            f"save_checkpoint({str(path)!r}, 'gfrtm', get_family('gfrtm').build(input_size=(128, 224)))\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    return path


def test_bench_run_writes_matrix_plots_and_error_rows(tmp_path, tiny_weights):
    """torch + onnxruntime rows run (bundle exported in a child, then reused); the tensorrt row
    fails here (no TensorRT) and is recorded without stopping the matrix."""
    out = tmp_path / "bench"
    cmd = [sys.executable, "-m", "edgevos", "bench", "--source", "test://?size=120x224&objects=1",
           "--sequences", "synthetic-0", "--frames", "6", "--warmup", "1", "--out", str(out),
           "--weights", str(tiny_weights), "--input-size", "128x224", "--backend", "torch,onnxruntime,tensorrt",
           "--precision", "fp32,int8", "--tau", "1,0.5", "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    rows = res["rows"]
    assert [(r["backend"], r["precision"], r["tau"]) for r in rows] == [
        ("torch", "fp32", 1.0), ("torch", "fp32", 0.5), ("onnxruntime", "fp32", 1.0), ("onnxruntime", "fp32", 0.5),
        ("tensorrt", "int8", 1.0), ("tensorrt", "int8", 0.5)]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4
    for r in ok:
        assert r["frames"] == 6 and r["steady_frames"] == 4
        assert r["fps"] > 0 and 0 <= r["J&F"] <= 1
        assert r["latency_ms"]["e2e"]["p50"] <= r["latency_ms"]["e2e"]["p99"]
        assert "encoder_low" in r["stage_ms"] and r["stage_calls_per_frame"]["encoder_low"] == 1
        assert r["avg_watts"] is None  # no tegrastats here: n/a, never a made-up number
    assert rows[0]["reuse_rate"] == 0.0  # tau = 1 never reuses
    for r in rows[4:]:
        assert r["status"].startswith("error:") and "TensorRT" in r["status"]
    # same ONNX precision set, same weights -> one export, one bundle
    bundles = [d for d in (out / "bundles").iterdir() if d.is_dir()]
    assert [b.name for b in bundles] == ["gfrtm-int8-trt-128x224"]
    assert res["frames_per_sequence"] == [6] and res["device"]["cpu"]["model"]
    md = (out / "results.md").read_text()
    assert "| gfrtm | torch | fp32 | 1 | ok |" in md and "n/a" in md
    assert (out / "fps_vs_jf.png").stat().st_size > 5000
    roof = json.loads((out / "roofline.json").read_text())
    enc = next(s for e in roof["entries"] if e["label"] == "gfrtm onnxruntime fp32" for s in e["stages"]
               if s["stage"] == "encoder_low")
    assert enc["gflop_per_call"] > 0 and enc["achieved_gflops"] > 0 and roof["peaks"]["fp32"]["gflops"] > 0
    assert (out / "roofline.png").is_file()
    assert "physical limit" in p.stdout


def test_run_row_energy_from_tegrastats(tmp_path, tiny_weights):
    """With a tegrastats stream (a stand-in printing VDD_IN 5 W) a row reports avg watts and
    energy per frame over its steady frames: 5 W / FPS."""
    from edgevos.bench import run_row
    from edgevos.data import FirstFrames
    from edgevos.data import SyntheticConfig, make_sequence
    from edgevos.models.registry import get_family
    from edgevos.runtime.power import PowerMonitor
    from edgevos.runtime.session import Session

    fake = tmp_path / "tegrastats"
    fake.write_text("#!/usr/bin/env bash\nwhile true; do echo 'RAM 1000/8000MB VDD_IN 5000mW/5000mW'; sleep 0.02; done\n")
    fake.chmod(0o755)
    model = get_family("gfrtm").build(weights=str(tiny_weights), input_size=(128, 224))
    seq = make_sequence(SyntheticConfig(height=120, width=224, num_frames=8, num_objects=1, seed=0))
    row = run_row(lambda: Session.from_model(model, tau=1.0, threads=1), [FirstFrames(seq)], warmup=2,
                  power=PowerMonitor(command=[str(fake)]))
    assert row["avg_watts"] == pytest.approx(5.0, rel=0.05)
    assert row["energy_per_frame_j"] == pytest.approx(5.0 / row["fps"], rel=0.1)
    assert row["power_source"].startswith("tegrastats")


def test_device_line_and_jetson_clocks_warning():
    from edgevos.bench_report import device_line, jetson_warning

    jetson = {"cpu": {"model": "ARMv8 Processor rev 1 (v8l)", "usable_cores": 6}, "gpu": {"gpus": [], "present": True},
              "jetson": {"is_jetson": True, "model": "NVIDIA Jetson Orin Nano Developer Kit", "l4t": "36.4.3",
                         "jetpack": "6.2", "nvpmodel": "15W (0)", "jetson_clocks": "off"}}
    line = device_line(jetson)
    assert "Orin Nano" in line and "nvpmodel 15W (0)" in line and "jetson_clocks off" in line
    assert "jetson_clocks" in jetson_warning(jetson) and "sudo jetson_clocks" in jetson_warning(jetson)
    jetson["jetson"]["jetson_clocks"] = "on"
    assert jetson_warning(jetson) is None
    assert jetson_warning({"jetson": {"is_jetson": False}}) is None
