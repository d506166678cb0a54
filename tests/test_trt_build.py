"""TensorRT engine builds decided on this machine: per-stage flags from each graph, the
TensorRT version gate, DLA settings and one device identity for Python and the scripts.
TensorRT itself is a recording stand-in (tests/trt_fakes.py); nothing here claims an engine runs."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgevos.errors import BundleError, DependencyError, InputError
from trt_fakes import FakeCudaLib, add_fake_inspector, conv_onnx, fake_tensorrt, qdq_bundle

ROOT = Path(__file__).resolve().parents[1]
onnx = pytest.importorskip("onnx")


@pytest.fixture
def bundle(tmp_path):
    from edgevos.bundle import load_bundle

    return load_bundle(qdq_bundle(tmp_path / "b"))


@pytest.fixture
def trt(monkeypatch):
    mod = fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", mod)
    return mod


def test_qdq_detection_reads_the_graph(tmp_path):
    from edgevos.jetson.trtinfo import has_qdq, onnx_op_counts

    q = conv_onnx(tmp_path / "q.onnx", qdq=True)
    f = conv_onnx(tmp_path / "f.onnx", qdq=False)
    assert has_qdq(q) and not has_qdq(f)
    expect = {}
    for n in onnx.load(str(q)).graph.node:
        expect[n.op_type] = expect.get(n.op_type, 0) + 1
    assert onnx_op_counts(q) == expect
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xff\xff")
    with pytest.raises(BundleError, match="bad.onnx"):
        has_qdq(bad)


# ------------------------------------------------------------------ defect 1: no INT8 without Q/DQ
def test_generated_script_int8_only_where_the_graph_has_qdq(bundle):
    from edgevos.export.tensorrt import BuildOptions, build_script

    text = build_script(bundle, [BuildOptions("int8"), BuildOptions("best")])
    blocks = text.split('"$TRTEXEC" \\\n')[1:]
    assert len(blocks) == 4
    calls = {}
    for prec, stage, block in zip(("int8", "int8", "best", "best"), ("encoder", "decoder") * 2, blocks):
        calls[prec, stage] = block.split("\n\n")[0]
    assert "--stronglyTyped" in calls["int8", "encoder"] and "--int8" not in calls["int8", "encoder"]
    assert "--int8" in calls["best", "encoder"] and "--fp16" in calls["best", "encoder"]
    for prec in ("int8", "best"):  # the kept-float stage: FP16, never INT8 without scales
        c = calls[prec, "decoder"]
        assert "--fp16" in c and "--int8" not in c and "--stronglyTyped" not in c, c
    assert "building decoder (int8: fp16)" in text


def test_python_builder_int8_only_where_the_graph_has_qdq(bundle, trt, tmp_path):
    from edgevos.export.tensorrt import BuildOptions, build_engine, plan_stage

    for prec in ("int8", "best"):
        opts = BuildOptions(prec)
        for stage in ("encoder", "decoder"):
            plan = plan_stage(bundle, stage, opts)
            info = build_engine(plan.source, tmp_path / f"{stage}.{prec}.engine", opts)
            built = trt.built[-1]
            if stage == "decoder":
                assert not plan.qdq and info["runs"] == "fp16"
                assert built["flags"] == {"FP16"} and not built["strongly_typed"]
            elif prec == "int8":
                assert built["strongly_typed"] and built["flags"] == set() and info["runs"] == "int8"
            else:
                assert built["flags"] == {"INT8", "FP16"} and not built["strongly_typed"]


def test_build_bundle_records_what_each_stage_runs_in(bundle, trt, monkeypatch):
    from edgevos.export import tensorrt as T
    from edgevos.bundle import load_bundle

    monkeypatch.setattr(T, "device_identity", lambda device=0: "sm87x16")
    engines = T.build_bundle_engines(bundle.root, T.BuildOptions("int8"), progress=False)
    assert engines["encoder"].name == "encoder.int8.trt10.3.0.sm87x16.64x96.engine"
    b = load_bundle(bundle.root)
    rec = b.manifest["tensorrt"]["trt-int8"]["stages"]
    assert rec["encoder"]["runs"] == "int8" and rec["decoder"]["runs"] == "fp16" and rec["decoder"]["qdq"] is False
    layers = json.loads((bundle.root / rec["encoder"]["layer_file"]).read_text())
    assert {"name": "conv", "type": "CONVOLUTION", "device": "GPU"} in layers["layers"]


def test_trtexec_args_read_the_graph_when_not_told(tmp_path):
    """Called without a plan, trtexec_args looks at the graph: a float graph under int8 / best
    gets --fp16, never --int8 (trtexec would invent placeholder ranges for it)."""
    from edgevos.export.tensorrt import BuildOptions, trtexec_args

    f = conv_onnx(tmp_path / "f.onnx", qdq=False)
    q = conv_onnx(tmp_path / "q.onnx", qdq=True)
    for prec in ("int8", "best"):
        a = trtexec_args(str(f), "f.engine", BuildOptions(prec))
        assert "--fp16" in a and "--int8" not in a and "--stronglyTyped" not in a, (prec, a)
    assert "--stronglyTyped" in trtexec_args(str(q), "q.engine", BuildOptions("int8"))
    assert {"--int8", "--fp16"} <= set(trtexec_args(str(q), "q.engine", BuildOptions("best")))
    with pytest.raises(InputError, match="Q/DQ"):
        trtexec_args(str(tmp_path / "missing.onnx"), "m.engine", BuildOptions("best"))


def test_build_engines_sh_int8_only_where_the_graph_has_qdq(tmp_path):
    b = qdq_bundle(tmp_path / "b")
    p, calls = _run_script(tmp_path, str(b), "best")
    assert p.returncode == 0, p.stderr
    enc = next(c for c in calls if "/encoder." in c.split()[0])
    dec = next(c for c in calls if "/decoder." in c.split()[0])
    assert "--int8" in enc and "--fp16" in enc
    assert "--int8" not in dec and "--fp16" in dec and "--stronglyTyped" not in dec


# ------------------------------------------------------------------ defect 3: one device identity
def test_identity_from_compute_capability_and_sm_count():
    from edgevos.jetson.trtinfo import CudaRuntime, device_identity

    assert device_identity(0, CudaRuntime(FakeCudaLib(cc=(8, 7), sms=16))) == "sm87x16"
    assert device_identity(0, CudaRuntime(FakeCudaLib(cc=(8, 7), sms=8))) == "sm87x8"


FAKE_CUDART_C = r"""
#include <stdlib.h>
int cudaDeviceGetAttribute(int *v, int attr, int dev) {
  const char *sms = getenv("FAKE_SMS");
  if (attr == 75) *v = 8; else if (attr == 76) *v = 7; else if (attr == 16) *v = sms ? atoi(sms) : 16; else return 1;
  return 0;
}
const char *cudaGetErrorString(int e) { return "fake"; }
"""


@pytest.fixture
def fake_cudart(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build a stand-in libcudart.so.12")
    d = tmp_path / "lib"
    d.mkdir()
    (d / "fake.c").write_text(FAKE_CUDART_C)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(d / "libcudart.so.12"), str(d / "fake.c")], check=True)
    return d


def test_identity_same_in_python_generated_script_and_build_engines_sh(fake_cudart, bundle, tmp_path):
    """The host Python path, the generated script and jetson/build_engines.sh name engines alike,
    with no /proc/device-tree/model or nvidia-smi in play."""
    from edgevos.export.tensorrt import BuildOptions, write_build_script

    env = {**os.environ, "LD_LIBRARY_PATH": str(fake_cudart), "FAKE_SMS": "8"}
    py = subprocess.run([sys.executable, "-c", "from edgevos.export.tensorrt import device_identity; print(device_identity())"],
                        capture_output=True, text=True, env=env)
    assert py.stdout.strip() == "sm87x8", py.stderr

    trtinfo_dir = _fake_tensorrt_pkg(tmp_path, "10.3.0.30")
    script = write_build_script(bundle, [BuildOptions("int8")], tmp_path / "gen" / "build.sh")
    _, gen_calls = _run_script(tmp_path, str(bundle.root), script=script,
                               env={"LD_LIBRARY_PATH": str(fake_cudart), "FAKE_SMS": "8", "PYTHONPATH": trtinfo_dir})
    p, sh_calls = _run_script(tmp_path, str(bundle.root), "int8",
                              env={"LD_LIBRARY_PATH": str(fake_cudart), "FAKE_SMS": "8", "PYTHONPATH": trtinfo_dir})
    assert p.returncode == 0, p.stderr
    for calls in (gen_calls, sh_calls):
        assert calls and all(".trt10.3.0.sm87x8.64x96.engine" in c for c in calls), calls



def test_generated_script_and_build_engines_sh_share_their_shell_functions(bundle, tmp_path):
    """One copy of the trtexec lookup, the bundle and version checks and the registration:
    jetson/trtexec_common.sh, sourced by build_engines.sh and embedded in a generated script;
    both find trtexec on PATH when TRTEXEC is not executable and refuse a folder without a manifest."""
    from edgevos.export.tensorrt import TRTEXEC_COMMON, BuildOptions, write_build_script

    common = TRTEXEC_COMMON.read_text().split("\n", 1)[1]  # without its #! line
    script = write_build_script(bundle, [BuildOptions("int8")], tmp_path / "gen" / "build.sh")
    assert common in script.read_text()
    sh = (ROOT / "jetson" / "build_engines.sh").read_text()
    assert 'source "$HERE/trtexec_common.sh"' in sh
    for text in (script.read_text(), sh):
        assert "command -v trtexec" not in text.replace(common, "")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    on_path = bin_dir / "trtexec"
    on_path.write_text('#!/usr/bin/env bash\necho "$*" >> "%s"\n' % (tmp_path / "path_calls.log"))
    on_path.chmod(0o755)
    env = {"TRTEXEC": str(tmp_path / "missing"), "PATH": f"{bin_dir}:/usr/bin:/bin"}
    for gen in (None, script):
        p, _ = _run_script(tmp_path, str(bundle.root), "int8", script=gen, env=env)
        assert p.returncode == 0, p.stderr
        p, _ = _run_script(tmp_path, str(tmp_path / "nope"), "int8", script=gen)
        assert p.returncode == 1 and "not an edgevos bundle" in p.stderr
    assert len((tmp_path / "path_calls.log").read_text().splitlines()) == 2 * len(bundle.specs)

# ------------------------------------------------------------------ defect 4: TensorRT 8.6 (JetPack 6.0)
def test_tensorrt_8_6_gets_a_clear_message(monkeypatch, bundle, tmp_path):
    from edgevos.export.tensorrt import BuildOptions, build_engine

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("8.6.2.3"))
    with pytest.raises(DependencyError, match=r"TensorRT 8\.6\.2\.3 is too old.*JetPack 6\.1"):
        build_engine(bundle.stage_path("encoder", "int8-trt"), tmp_path / "e.engine", BuildOptions("int8"))
    pkg = _fake_tensorrt_pkg(tmp_path, "8.6.2.3")
    for script in (None, "generated"):
        if script:
            from edgevos.export.tensorrt import write_build_script

            script = write_build_script(bundle, [BuildOptions("int8")], tmp_path / "gen.sh")
        p, calls = _run_script(tmp_path, str(bundle.root), "int8", script=script, env={"PYTHONPATH": pkg})
        assert p.returncode == 1 and "TensorRT 8.6.2" in p.stderr and "JetPack 6.1" in p.stderr and not calls


def test_doctor_reports_tensorrt_version_and_identity(monkeypatch):
    from edgevos import doctor

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("8.6.2.3"))
    rows = dict(doctor.tensorrt_rows())
    assert "8.6.2" in rows["TensorRT"] and "JetPack 6.1" in rows["TensorRT"]
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.3.0.30"))
    rows = dict(doctor.tensorrt_rows())
    assert rows["TensorRT"].startswith("10.3.0") and "engine device" in rows


# ------------------------------------------------------------------ defect 5: DLA builds FP16
def test_dla_builds_fp16_from_the_float_graph_and_records_placement(bundle, trt, tmp_path):
    from edgevos.export.tensorrt import BuildOptions, build_engine, plan_stage, trtexec_args

    with pytest.raises(InputError, match="--precision fp16 --dla 0"):
        BuildOptions("int8", dla_core=0)
    with pytest.raises(InputError, match="DLA"):
        BuildOptions("best", dla_core=1)
    opts = BuildOptions("fp16", dla_core=0)
    plan = plan_stage(bundle, "encoder", opts)
    assert plan.source.name == "encoder.onnx"
    args = trtexec_args(str(plan.source), "e.engine", opts, mode=plan.mode)
    assert {"--fp16", "--useDLACore=0", "--allowGPUFallback"} <= set(args) and "--int8" not in args
    info = build_engine(plan.source, tmp_path / "e.engine", opts)
    assert trt.built[-1]["flags"] == {"FP16", "GPU_FALLBACK"} and trt.built[-1]["device"] == "DLA"
    assert info["layers"] == {"DLA": 2}
    p, _ = _run_script(tmp_path, str(bundle.root), "int8", "0")
    assert p.returncode == 2 and "fp16 0" in p.stderr


def test_dla_engine_layers_come_from_the_engine_inspector(bundle, trt, tmp_path):
    """After a DLA build the engine is inspected (IEngineInspector, JSON): its DLA subgraphs
    ({ForeignNode[...]}) and GPU layers go to the layer file and the build record."""
    from edgevos.export.tensorrt import BuildOptions, build_engine, plan_stage

    add_fake_inspector(trt, {"Layers": [
        {"Name": "x to nvm", "LayerType": "Reformat"},
        {"Name": "{ForeignNode[conv...add]}", "LayerType": "ForeignNode"},
        {"Name": "y from nvm", "LayerType": "Reformat"}], "Bindings": ["x", "y"]})
    opts = BuildOptions("fp16", dla_core=1)
    plan = plan_stage(bundle, "encoder", opts)
    info = build_engine(plan.source, tmp_path / "e.engine", opts)
    assert info["engine_layers"] == {"DLA subgraphs": 1, "GPU": 2}
    record = json.loads(info["layer_file"].read_text())
    assert [x.get("device") for x in record["engine_layers"]] == [None, "DLA", None]
    assert record["layers"][0]["device"] == "DLA"  # the builder's assignment, network layer by layer
    # a GPU build records the engine's layers too, with no DLA count
    info = build_engine(plan.source, tmp_path / "g.engine", BuildOptions("fp16"))
    assert "engine_layers" not in info and len(json.loads(info["layer_file"].read_text())["engine_layers"]) == 3


# ------------------------------------------------------------------ defect 9: smaller ones
def test_tensorrt_hint_says_it_comes_with_jetpack_not_pip(monkeypatch):
    """Without TensorRT the message says where it comes from (JetPack, a venv with
    --system-site-packages), not that pip installs it."""
    from edgevos.export.tensorrt import import_tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(DependencyError) as err:
        import_tensorrt("the TensorRT backend")
    text = str(err.value)
    assert "JetPack" in text and "--system-site-packages" in text and "not from pip" in text, text


def test_jetson_readme_dla_counts_and_orin_nano_4gb_power():
    """Orin NX 8GB has one DLA core, Orin Nano none; the Orin Nano 4GB tops out at 10 W."""
    text = (ROOT / "jetson" / "README.md").read_text()
    assert re.search(r"Orin NX 8GB 1\b", text) and re.search(r"Orin Nano none", text)
    row = next(line for line in text.splitlines() if line.startswith("| Orin Nano 4GB"))
    assert "10W" in row and "15W" not in row and "25W" not in row, row
    help_text = (ROOT / "jetson" / "build_engines.sh").read_text()
    assert "Orin NX 8GB: 0;" in help_text


# ------------------------------------------------------------------ helpers
def _fake_tensorrt_pkg(tmp_path, version):
    d = tmp_path / f"trt-{version}"
    d.mkdir(exist_ok=True)
    (d / "tensorrt.py").write_text(f"__version__ = {version!r}\n")
    return str(d)


def _run_script(tmp_path, *args, script=None, env=None):
    log = tmp_path / "calls.log"
    if log.exists():
        log.unlink()
    fake = tmp_path / "trtexec"
    fake.write_text('#!/usr/bin/env bash\necho "$*" >> "%s"\nfor a in "$@"; do case "$a" in '
                    '--saveEngine=*) touch "${a#--saveEngine=}";; esac; done\n' % log)
    fake.chmod(0o755)
    base = {"PATH": "/usr/bin:/bin", "TRTEXEC": str(fake), "HOME": str(tmp_path),
            "PYTHONPATH": _fake_tensorrt_pkg(tmp_path, "10.3.0.30")}
    base.update(env or {})
    cmd = ["bash", str(script)] + list(args[:1]) if script else ["bash", str(ROOT / "jetson" / "build_engines.sh"), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=base)
    calls = log.read_text().splitlines() if log.exists() else []
    return p, calls


# ------------------------------------------------------------------ defect 8: no CPU peak for GPU rows
def test_tensorrt_rows_get_no_cpu_peak(bundle):
    from edgevos.bench_report import roofline, roofline_table

    peaks = {"fp32": {"gflops": 100.0, "how": "onnxruntime MatMul", "threads": 2, "size": 1024}, "int8": None}
    base = {"status": "ok", "family": "toy", "preset": None, "tau": 1.0,
            "stage_call_ms": {"encoder": {"p50": 1.0}, "decoder": {"p50": 1.0}}}
    rows = [dict(base, backend="tensorrt", precision="fp16"), dict(base, backend="onnxruntime", precision="fp32")]
    roof = roofline(rows, {("toy", None): bundle.root}, peaks)
    by = {e["label"]: e["stages"] for e in roof["entries"]}
    trt = next(v for k, v in by.items() if "tensorrt" in k)
    ort = next(v for k, v in by.items() if "onnxruntime" in k)
    assert all(s["peak_gflops"] is None and s["fraction_of_peak"] is None for s in trt)
    assert all(s["peak_gflops"] == 100.0 for s in ort)
    _, body = roofline_table(roof)
    assert all(r[-1] == "n/a" for r in body if "tensorrt" in r[0])
