"""Bundles in use: the CLI end to end, ORT backend without torch, parity report, TensorRT names and script."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxslim")

from export_toy import ToySequence, register_toy_family  # noqa: E402

from edgevos.cli import main as cli  # noqa: E402
from edgevos.errors import BundleError, DependencyError, InputError  # noqa: E402

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def toy_bundle(tmp_path_factory):
    """`edgevos export --family toy` on synthetic data, all three precisions."""
    mp = pytest.MonkeyPatch()
    register_toy_family(mp)
    out = tmp_path_factory.mktemp("b") / "toy"
    try:
        rc = cli(["export", "--family", "toy", "--precision", "fp32,int8-cpu,int8-trt", "--calib", "test://3",
                  "--calib-frames", "24", "--input-size", "64x96", "--heldout-frames", "10", "--out", str(out), "--quiet"])
    finally:
        mp.undo()
    assert rc == 0
    return out


def test_cli_bundle_and_parity(toy_bundle, capsys):
    from edgevos.bundle import load_bundle

    b = load_bundle(toy_bundle)
    m = b.manifest
    # int8-trt also as its FP16-float form (the --trt-float default)
    assert b.precisions == ["fp32", "int8-cpu", "int8-trt", "int8-trt-f16"] and b.family == "toy"
    assert m["calibration"]["frames"] == 24 and m["calibration"]["source"] == "test://3"
    assert [s["name"] for s in m["calibration"]["sequences"]] == ["synthetic-0000", "synthetic-0001"]
    assert m["calibration"]["samples_per_stage"] == {"encoder": 22, "head": 22}
    parity = json.loads((toy_bundle / "parity.json").read_text())
    assert parity == json.loads(json.dumps(m["parity"]))
    assert parity["heldout"] == ["synthetic-0002"]
    rows = {(r["stage"], r["precision"], r["output"]): r for r in parity["stages"]}
    assert rows[("encoder", "fp32", "feat")]["max_abs_diff"] < 1e-4
    assert rows[("encoder", "int8-cpu", "feat")]["snr_db"] > 20
    e2e = parity["end_to_end"]["per_precision"]
    assert e2e["fp32"]["iou_vs_reference_mean"] > 0.999
    assert e2e["int8-cpu"]["iou_vs_reference_mean"] > 0.8
    assert "J&F_change" in e2e["int8-cpu"]


def test_cli_errors(tmp_path, monkeypatch):
    register_toy_family(monkeypatch)
    base = ["export", "--family", "toy", "--input-size", "64x96", "--quiet"]
    assert cli(base + ["--calib", str(tmp_path / "missing"), "--out", str(tmp_path / "o1")]) == 1
    from edgevos import export_bundle

    with pytest.raises(InputError, match="unknown model family 'nope'"):
        export_bundle(tmp_path / "o2", "nope", precisions="fp32", input_size="64x96", calib_frames=10)
    assert cli(base + ["--calib", "test://", "--calib-frames", "0", "--out", str(tmp_path / "o3")]) == 1
    assert cli(base + ["--precision", "int4", "--out", str(tmp_path / "o4")]) == 1


def test_ort_backend_runs_without_torch(toy_bundle, tmp_path):
    """The deployment path: load + verify the bundle and run the step program with torch unimportable."""
    code = f"""
import sys
sys.modules['torch'] = None  # any 'import torch' now fails
sys.path.insert(0, {str(TESTS)!r})
import numpy as np
from export_toy import ToyProgram, ToySequence
from edgevos.runtime.ort_backend import OrtBackend
seq = ToySequence('s', n=5, h=64, w=96)
for precision in ('fp32', 'int8-cpu', 'int8-trt'):
    for binding in (False, True):
        be = OrtBackend({str(toy_bundle)!r}, precision, threads=1, io_binding=binding)
        p = ToyProgram(be)
        p.start(seq.frame(0), seq.mask(0))
        m = [p.step(seq.frame(i)).mask for i in range(1, 5)]
        np.save({str(tmp_path)!r} + f'/{{precision}}-{{binding}}.npy', np.stack(m))
        assert be.last_ms['encoder'] > 0
print('torch' in sys.modules and sys.modules['torch'] is None)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"
    a = np.load(tmp_path / "fp32-False.npy")
    assert (a == np.load(tmp_path / "fp32-True.npy")).all()
    assert a.any()


def test_ort_backend_errors(toy_bundle, tmp_path):
    from edgevos.runtime.ort_backend import OrtBackend

    with pytest.raises(InputError, match="precision 'int4'"):
        OrtBackend(toy_bundle, "int4")
    be = OrtBackend(toy_bundle, "fp32")
    with pytest.raises(InputError, match="input 'image' has shape"):
        be.run("encoder", {"image": np.zeros((1, 3, 8, 8), np.float32)})
    copy = tmp_path / "copy"
    shutil.copytree(toy_bundle, copy)
    with open(copy / "head.int8-cpu.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="head.int8-cpu.onnx"):
        OrtBackend(copy, "int8-cpu")


def test_parity_end_to_end_detects_a_broken_backend(toy_bundle):
    from edgevos.export.parity import end_to_end
    from edgevos.backend import Backend
    from edgevos.runtime.ort_backend import OrtBackend
    from export_toy import ToyProgram

    class Broken(Backend):
        name = "broken"

        def __init__(self, inner):
            super().__init__(inner.specs.values())
            self.inner = inner

        def _run(self, spec, feeds):
            out = self.inner.run(spec.name, feeds)
            return {k: -v for k, v in out.items()} if spec.name == "head" else out

    ref = OrtBackend(toy_bundle, "fp32")
    res = end_to_end(ToyProgram, ref, {"same": OrtBackend(toy_bundle, "fp32"), "broken": Broken(ref)},
                     [ToySequence("s", n=6, h=64, w=96)])
    assert res["per_precision"]["same"]["iou_vs_reference_mean"] == 1.0
    assert res["per_precision"]["broken"]["iou_vs_reference_mean"] < 0.5


def test_gfrtm_export_int8_cpu(tmp_path, capsys):
    """The real family through the CLI at a small input size; parity report printed and saved."""
    from edgevos.bundle import load_bundle

    out = tmp_path / "gfrtm"
    rc = cli(["export", "--family", "gfrtm", "--precision", "int8-cpu", "--calib", "test://", "--calib-frames", "12",
              "--input-size", "128x224", "--heldout-frames", "8", "--out", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "per-stage parity" in printed and "end to end" in printed
    b = load_bundle(out)
    assert b.precisions == ["fp32", "int8-cpu"] and b.input_size == (128, 224)
    assert {s.name for s in b.specs} >= {"encoder_low", "encoder_high", "decoder_full"}
    assert b.stage_precision("encoder_low", "int8-cpu") == "int8-cpu"
    size = {p: sum(b.stage_path(s.name, p).stat().st_size for s in b.specs) for p in b.precisions}
    assert size["int8-cpu"] < size["fp32"] / 2
    parity = json.loads((out / "parity.json").read_text())
    assert parity["end_to_end"]["per_precision"]["int8-cpu"]["iou_vs_reference_mean"] is not None


# ------------------------------------------------------------------------------ TensorRT


def test_engine_names_and_trtexec_args():
    from edgevos.export.tensorrt import BuildOptions, engine_name, parse_engine_name, slug, trtexec_args

    name = engine_name("encoder_low", "int8", "10.3.0.30", "NVIDIA Jetson AGX Orin Developer Kit", (480, 864))
    assert name == "encoder_low.int8.trt10.3.0.nvidia-jetson-agx-orin-developer-kit.480x864.engine"
    assert parse_engine_name(name) == {"stage": "encoder_low", "tag": "int8", "ver": "10.3.0",
                                       "gpu": "nvidia-jetson-agx-orin-developer-kit", "h": "480", "w": "864"}
    assert slug("GeForce RTX 4090") == "geforce-rtx-4090"
    a = trtexec_args("s.onnx", "s.engine", BuildOptions("int8", timing_cache="t.cache", workspace_mb=512), qdq=True)
    assert "--stronglyTyped" in a and "--int8" not in a and "--fp16" not in a
    assert "--memPoolSize=workspace:512M" in a and "--timingCacheFile=t.cache" in a and "--saveEngine=s.engine" in a
    a = trtexec_args("s.onnx", "s.engine", BuildOptions("fp16"), qdq=False)
    assert "--fp16" in a and "--stronglyTyped" not in a and "--int8" not in a
    dla = BuildOptions("fp16", dla_core=1)
    a = trtexec_args("s.onnx", "s.engine", dla, qdq=False)
    assert {"--fp16", "--useDLACore=1", "--allowGPUFallback"} <= set(a) and "--stronglyTyped" not in a and "--int8" not in a
    assert dla.tag == "fp16-dla1"
    with pytest.raises(InputError, match="DLA"):
        BuildOptions("int8", dla_core=1)
    with pytest.raises(InputError):
        BuildOptions("int4")
    with pytest.raises(InputError):
        BuildOptions("int8", dla_core=-1)


def test_build_script_shellcheck_and_register(toy_bundle, tmp_path):
    from edgevos.bundle import load_bundle

    b = tmp_path / "b"
    shutil.copytree(toy_bundle, b)
    assert cli(["build", str(b), "--precision", "fp16", "--dla", "0", "--script-only", "--script", str(tmp_path / "dla.sh")]) == 0
    assert "--useDLACore=0" in (tmp_path / "dla.sh").read_text()
    assert cli(["build", str(b), "--precision", "int8,fp16,best", "--script-only"]) == 0
    script = b / "build_engines.sh"
    text = script.read_text()
    assert os.access(script, os.X_OK)
    assert text.count('"$TRTEXEC" \\\n') == 6  # 2 stages x 3 precisions
    assert '--onnx="$BUNDLE/encoder.int8-trt.onnx"' in text and '--onnx="$BUNDLE/encoder.onnx"' in text
    assert '--timingCacheFile="$CACHE"' in text
    load_bundle(b)  # the script is registered in the manifest
    if shutil.which("shellcheck"):
        r = subprocess.run(["shellcheck", "-S", "style", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
    # engines built by the script get registered
    for stage in ("encoder", "head"):
        (b / f"{stage}.int8.trt10.3.0.orin.64x96.engine").write_bytes(b"engine")
    (b / "timing.trt10.3.0.orin.cache").write_bytes(b"cache")
    with pytest.raises(BundleError, match="not listed"):
        load_bundle(b)
    assert cli(["build", str(b), "--register"]) == 0
    bundle = load_bundle(b)
    assert "trt-int8" in bundle.precisions
    assert bundle.stage_path("head", "trt-int8").name == "head.int8.trt10.3.0.orin.64x96.engine"


def test_build_without_tensorrt_says_so(toy_bundle, capsys):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    assert cli(["build", str(toy_bundle), "--precision", "int8"]) == 1
    err = capsys.readouterr().err
    assert "TensorRT cannot be used on this machine" in err and "--script-only" in err
    from edgevos.runtime.trt_backend import TrtBackend

    with pytest.raises(DependencyError, match="edgevos\\[trt\\]"):
        TrtBackend(toy_bundle, "int8")


@pytest.mark.gpu
def test_trt_engines_match_ort(toy_bundle, tmp_path):
    from edgevos.export.tensorrt import BuildOptions, build_bundle_engines
    from edgevos.runtime.ort_backend import OrtBackend
    from edgevos.runtime.trt_backend import TrtBackend

    b = tmp_path / "b"
    shutil.copytree(toy_bundle, b)
    build_bundle_engines(b, BuildOptions("int8", workspace_mb=256))
    build_bundle_engines(b, BuildOptions("fp16", workspace_mb=256))
    ref = OrtBackend(b, "fp32")
    for precision in ("int8", "fp16"):
        trt = TrtBackend(b, precision)
        for spec in ref.specs.values():
            feeds = spec.dummy_feeds(seed=3)
            for name, r in ref.run(spec.name, feeds).items():
                got = trt.run(spec.name, feeds)[name]
                assert np.corrcoef(r.ravel(), got.ravel())[0, 1] > 0.99
        trt.close()


def test_benchmark_compare_two_bundles(toy_bundle):
    """Before/after timing in one interleaved run: rows per bundle, speed-up vs the same bundle's fp32."""
    from edgevos.export.benchmark import bench_compare

    r = bench_compare(toy_bundle, toy_bundle, threads=1, repeat=1, rounds=1)
    keys = {(row["bundle"], row["stage"], row["precision"]) for row in r["rows"]}
    for tag in ("before", "after"):
        for stage in ("encoder", "head"):
            assert {(tag, stage, p) for p in ("fp32", "int8-cpu", "int8-trt")} <= keys
    assert all(row["speedup"] == 1.0 for row in r["rows"] if row["precision"] == "fp32")
    assert r["size_mb"]["before int8-cpu"] == r["size_mb"]["after int8-cpu"] > 0


def test_int8_cpu_stage_slower_than_fp32_stays_fp32(tmp_path, monkeypatch):
    """The export times each int8-cpu stage against FP32 and keeps FP32 where INT8 is not faster."""
    from edgevos.export import benchmark
    from edgevos.bundle import load_bundle

    register_toy_family(monkeypatch)
    monkeypatch.setattr(benchmark, "interleaved_ms", lambda paths, feeds, threads=1: [1.0, 2.0] if "head" in str(paths[0]) else [2.0, 1.0])
    out = tmp_path / "toy"
    rc = cli(["export", "--family", "toy", "--precision", "int8-cpu", "--calib", "test://3", "--calib-frames", "12",
              "--input-size", "64x96", "--no-parity", "--out", str(out), "--quiet"])
    assert rc == 0
    b = load_bundle(out)
    assert b.stage_precision("head", "int8-cpu") == "fp32"
    assert b.stage_precision("encoder", "int8-cpu") == "int8-cpu"
    info = b.manifest["quantization"]["stages"]["head"]["int8-cpu"]
    assert info["used"] == "fp32" and "INT8 2.000 ms >= FP32 1.000 ms" in info["reason"]
    assert b.manifest["quantization"]["stages"]["encoder"]["int8-cpu"]["speed_check_ms"] == {"fp32": 2.0, "int8-cpu": 1.0}


def test_a_backend_is_one_file_plus_one_registry_line(toy_bundle, tmp_path, monkeypatch):
    from edgevos.backend import BACKENDS, BackendEntry
    from edgevos.runtime.session import Session

    monkeypatch.setitem(BACKENDS, "onnx-reference",
                        BackendEntry("onnx-reference", "toy_backend:OnnxReferenceBackend", ("fp32",), "onnx"))
    register_toy_family(monkeypatch)
    seq = ToySequence("s", n=5, h=64, w=96)
    masks = {}
    for backend in ("onnx-reference", "onnxruntime"):
        s = Session.from_bundle(toy_bundle, backend=backend, precision="fp32")
        masks[backend] = [s.start(seq.frame(0), seq.mask(0)).mask] + [s.step(seq.frame(i)).mask for i in range(1, 5)]
    assert type(s.backend).__name__ == "OrtBackend"
    assert all((a == b).mean() > 0.999 for a, b in zip(masks["onnx-reference"], masks["onnxruntime"]))
    # the CLI offers it too: its --backend choices are the registry
    assert cli(["run", "test://?frames=4&size=64x96&objects=1", f"masks://{tmp_path / 'm'}", "--bundle",
                str(toy_bundle), "--backend", "onnx-reference", "--no-power", "--quiet"]) == 0
    assert len(list((tmp_path / "m").glob("*.png"))) == 4
    with pytest.raises(InputError, match="unknown backend 'nope'"):
        Session.from_bundle(toy_bundle, backend="nope")


def test_gfrtm_export_calibrates_the_computed_frame_embedding(tmp_path, capsys):
    """A computed_embed='f8' model exports its ``gate_embed`` stage (calibrated, int8-cpu) and the
    bundle's program skips encoder_reuse + gate on frames that must compute."""
    import numpy as np

    from edgevos.bundle import load_bundle
    from edgevos.models.registry import get_family
    from edgevos.models.weights import save_checkpoint
    from edgevos.runtime.session import Session

    m = get_family("gfrtm").build(input_size=(128, 224), reuse_scale=2, refiner_stride=16, reuse_head="blend",
                                  computed_embed="f8")
    w = save_checkpoint(tmp_path / "f8.pt", "gfrtm", m)
    out = tmp_path / "bundle"
    assert cli(["export", "--family", "gfrtm", "--weights", str(w), "--precision", "int8-cpu", "--calib", "test://",
                "--calib-frames", "12", "--heldout-frames", "6", "--out", str(out), "--quiet"]) == 0
    b = load_bundle(out)
    assert "gate_embed" in b.stage_names
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["calibration"]["samples_per_stage"]["gate_embed"] >= 4  # every computed frame records one
    q = manifest["quantization"]["stages"]["gate_embed"]["int8-cpu"]
    assert q["samples"] >= 4 and q["op_counts"].get("QuantizeLinear", 0) > 0  # quantized (kept only if faster)
    s = Session.from_bundle(out, precision="int8-cpu", tau=0.0, max_reuse=1, threads=1)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)
    mask = np.zeros((120, 200), np.uint8)
    mask[30:90, 50:150] = 1
    s.start(frame, mask)
    first, second = s.step(frame), s.step(frame)
    assert first.reused and not second.reused
    assert "gate" not in second.stage_ms and "encoder_reuse" not in second.stage_ms and "gate_embed" in second.stage_ms
