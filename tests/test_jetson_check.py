"""jetson/check.sh and edgevos.jetson.check, everything they do before a GPU is needed: the
environment rows from recorded board answers, the precision matrix and trtexec arguments, the
SNR / IoU comparisons (ONNX Runtime on both sides, or a backend that distorts by a known
amount), trtexec and tegrastats parsing, the report's format, the whole run with stand-ins for
TensorRT (ONNX Runtime on the engine's source graph, a trtexec that only writes files, a
tegrastats replaying recorded lines), and what the script says where TensorRT or edgevos is
missing.  The real chain runs on a board only (test_check_on_the_board)."""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "jetson" / "check.sh"
BASH = shutil.which("bash")

RELEASE_62 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n"
RELEASE_60 = "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024\n"
TRTEXEC_PASSED = """&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --loadEngine=a.engine
[01/08/2025-10:00:00] [I] === Performance summary ===
[01/08/2025-10:00:00] [I] Throughput: 2211.3 qps
[01/08/2025-10:00:00] [I] Latency: min = 0.47 ms, max = 0.61 ms, mean = 0.49 ms, median = 0.48 ms
[01/08/2025-10:00:00] [I] GPU Compute Time: min = 0.398 ms, max = 0.582 ms, mean = 0.412 ms, median = 0.405 ms, percentile(90%) = 0.42 ms
&&&& PASSED TensorRT.trtexec [TensorRT v100300] # trtexec --loadEngine=a.engine
"""
TRTEXEC_FAILED = """&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=a.onnx --fp16
[01/08/2025-10:00:00] [E] Error[4]: [network.cpp::validate::3200] Error Code 4: Internal Error
&&&& FAILED TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=a.onnx --fp16
"""
ORIN_NANO = ("11-22-2026 10:00:00 RAM 1878/7620MB (lfb 1x4MB) SWAP 0/3810MB (cached 0MB) "
             "CPU [1%@729,0%@729,3%@729,0%@729,0%@729,0%@729] EMC_FREQ 0%@2133 GR3D_FREQ 40%@[305] "
             "cpu@47.687C gpu@46.718C tj@47.687C VDD_IN 4615mW/4615mW VDD_CPU_GPU_CV 485mW/485mW VDD_SOC 1335mW/1335mW")
ORIN_NANO_BUSY = ORIN_NANO.replace("VDD_IN 4615mW/4615mW", "VDD_IN 7385mW/6000mW").replace(
    "GR3D_FREQ 40%", "GR3D_FREQ 98%").replace("RAM 1878/", "RAM 2102/").replace("tj@47.687C", "tj@52.5C")
AGX_ORIN = ("RAM 2345/30536MB (lfb 7x4MB) SWAP 0/15268MB (cached 0MB) CPU [12%@1510,8%@1510,off,off] "
            "GR3D_FREQ 37%@[1300,1300] CV0@-256C GPU@46.2C VDD_GPU_SOC 5139mW/4920mW VDD_CPU_CV 1190mW/1100mW "
            "VIN_SYS_5V0 3418mW/3400mW")


# ------------------------------------------------------------------ the script
@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_script_is_thin_and_valid_bash():
    r = subprocess.run([BASH, "-n", str(CHECK)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.access(CHECK, os.X_OK)
    text = CHECK.read_text()
    code = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(code) < 40, "the logic lives in edgevos.jetson.check"
    assert 'exec "$PYTHON" -m edgevos.jetson.check "$@"' in text


def _stub(path: Path, body: str) -> Path:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return path


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_script_without_edgevos_says_how_to_get_it(tmp_path):
    py = _stub(tmp_path / "python3", 'echo "ModuleNotFoundError: No module named \'edgevos\'" >&2; exit 1\n')
    r = subprocess.run([BASH, str(CHECK)], capture_output=True, text=True, env=dict(os.environ, PYTHON=str(py)))
    assert r.returncode == 2
    assert "edgevos is not importable" in r.stderr and "jetson/setup.sh" in r.stderr and "No module named" in r.stderr
    r = subprocess.run([BASH, str(CHECK)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHON=str(tmp_path / "nope")))
    assert r.returncode == 2 and "not found" in r.stderr


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_script_help_lists_what_it_checks_and_the_options():
    r = subprocess.run([BASH, str(CHECK), "--help"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHON=sys.executable))
    assert r.returncode == 0
    for word in ("environment", "engines", "accuracy", "speed", "power", "check.json", "--clip", "--frames", "--dla"):
        assert word in r.stdout, word


def test_readme_documents_the_script_and_only_its_real_options():
    import argparse

    from edgevos.jetson.check import add_arguments

    text = (ROOT / "jetson" / "README.md").read_text()
    section = text[text.index("`jetson/check.sh [BUNDLE] [options]`"):text.index("Docker (build on the board")]
    p = argparse.ArgumentParser()
    add_arguments(p)
    known = set(p._option_string_actions)
    mentioned = set(re.findall(r"(--[a-z][a-z0-9-]+)", section)) - {"--runtime", "--system-site-packages"}
    assert mentioned and mentioned <= known, mentioned - known
    for word in ("check.json", "tegrastats.log", "int8-f16", "trtexec", "SNR", "IoU", "300-frame"):
        assert word in section, word


def test_edgevos_check_verb():
    from edgevos.cli import COMMANDS, build_parser

    assert COMMANDS["check"][0] == "edgevos.jetson.check"
    args = build_parser().parse_args(["check", "b", "--precision", "fp16,int8", "--frames", "10", "--no-trtexec"])
    assert args.bundle == "b" and args.precision == "fp16,int8" and args.frames == 10 and args.no_trtexec


# ------------------------------------------------------------------ environment rows
@pytest.mark.parametrize("text, state, detail", [
    (RELEASE_62, "PASS", "L4T 36.4.3, JetPack 6.2"),
    ("# R36 (release), REVISION: 4.7, GCID: 1", "PASS", "L4T 36.4.7, JetPack 6.2.1"),
    ("# R36 (release), REVISION: 4, GCID: 1", "PASS", "L4T 36.4, JetPack 6.1"),
    (RELEASE_60, "FAIL", "L4T 36.3.0, JetPack 6.0 is older than JetPack 6.1"),
    ("# R35 (release), REVISION: 5.0, GCID: 35550185", "FAIL", "L4T 35.5.0, JetPack 5.1.3 is older"),
    ("Ubuntu 22.04", "FAIL", "cannot read the L4T release"),
    (None, "FAIL", "not a Jetson"),
])
def test_board_row_reads_nv_tegra_release(text, state, detail):
    from edgevos.jetson.check import board_row

    row = board_row(text)
    assert row.state == state and row.detail.startswith(detail), row
    if state == "FAIL" and text and "R36" in text:
        assert "flash JetPack 6.1 or 6.2" in row.detail


@pytest.mark.parametrize("call, state", [
    (("tensorrt_row", "10.3.0"), "PASS"), (("tensorrt_row", "10"), "PASS"), (("tensorrt_row", "8.6.2"), "FAIL"),
    (("tensorrt_row", "unknown"), "FAIL"), (("tensorrt_row", None), "FAIL"),
    (("cuda_row", "runtime 12.6 driver 12.6"), "PASS"), (("cuda_row", "runtime 12.2 driver 12.6"), "PASS"),
    (("cuda_row", "runtime 12.6 driver 12.2"), "FAIL"), (("cuda_row", "runtime 13.0 driver 13.0"), "FAIL"),
    (("cuda_row", "runtime 12.6 driver 0.0"), "FAIL"), (("cuda_row", None), "FAIL"),
    (("gpu_row", "sm87x16"), "PASS"), (("gpu_row", "sm87x8"), "PASS"), (("gpu_row", "unknown"), "FAIL"),
    (("power_row", "MAXN (0)", "on"), "PASS"), (("power_row", "15W (0)", "off"), "WARN"),
    (("power_row", "n/a", "n/a"), "WARN"),
])
def test_each_environment_row_judges_its_answer(call, state):
    from edgevos.jetson import check

    name, *args = call
    assert getattr(check, name)(*args).state == state, call


def test_failed_environment_rows_name_their_fix():
    from edgevos.jetson.check import cuda_row, gpu_row, gstreamer_row, power_row, tensorrt_row

    row = tensorrt_row("unknown")
    assert "nvidia-jetpack" in row.detail and "--system-site-packages" in row.detail
    assert "TensorRT 10" in tensorrt_row("8.6.2").detail and "JetPack 6.1" in tensorrt_row("8.6.2").detail
    assert "driver 12.2" in cuda_row("runtime 12.6 driver 12.2").detail
    assert "video" in gpu_row("unknown").detail
    assert "sudo jetson_clocks" in power_row("15W (0)", "off").detail
    everything = dict.fromkeys(("nvvidconv", "nvv4l2decoder", "nvv4l2h264enc", "nvarguscamerasrc", "nv3dsink"), True)
    assert gstreamer_row(everything).state == "PASS"
    row = gstreamer_row(dict(everything, nvv4l2h264enc=False, nvarguscamerasrc=False))
    assert row.state == "WARN" and "x264enc" in row.detail and "csi://" in row.detail
    row = gstreamer_row({"nvv4l2decoder": True})
    assert row.state == "FAIL" and "nvvidconv" in row.detail and "nvidia-l4t-gstreamer" in row.detail
    assert gstreamer_row(None).state == "FAIL"


# ------------------------------------------------------------------ arguments
def test_variants_follow_what_the_bundle_holds():
    from edgevos.errors import InputError
    from edgevos.jetson.check import variants

    vs = variants(["fp32", "int8-trt", "int8-trt-f16"])
    assert [v.label for v in vs] == ["fp16", "int8", "int8-f16", "best"]
    by = {v.label: v for v in vs}
    assert (by["fp16"].options.precision, by["fp16"].source, by["fp16"].key) == ("fp16", "fp32", "trt-fp16")
    assert (by["int8"].options.trt_float, by["int8"].source) == ("fp32", "int8-trt")
    assert (by["int8-f16"].options.trt_float, by["int8-f16"].source) == ("fp16", "int8-trt")
    assert by["best"].options.precision == "best" and by["best"].key == "trt-best"
    assert [v.label for v in variants(["fp32", "int8-cpu"])] == ["fp16"]
    assert [v.label for v in variants(["fp32", "int8-trt"])] == ["fp16", "int8", "best"]
    dla = variants(["fp32"], dla=1)[-1]
    assert dla.label == "fp16-dla1" and dla.options.dla_core == 1 and dla.key == "trt-fp16-dla1"
    assert [v.label for v in variants(["fp32", "int8-trt"], only=["best", "fp16"])] == ["best", "fp16"]
    with pytest.raises(InputError, match="int8-f16.*can build"):
        variants(["fp32", "int8-trt"], only=["int8-f16"])
    with pytest.raises(InputError, match="fp32 or int8-trt"):
        variants(["int8-cpu"])


def test_trtexec_time_arguments_and_log():
    from edgevos.jetson.check import parse_trtexec_time, trtexec_time_args

    a = trtexec_time_args("/b/e.engine")
    assert a[0] == "--loadEngine=/b/e.engine" and "--duration=0" in a and not any("DLA" in x for x in a)
    assert "--useDLACore=1" in trtexec_time_args("e.engine", dla_core=1)
    t = parse_trtexec_time(TRTEXEC_PASSED)
    assert t == {"passed": True, "mean_ms": 0.412, "median_ms": 0.405, "min_ms": 0.398, "max_ms": 0.582}
    assert parse_trtexec_time(TRTEXEC_FAILED) == {"passed": False, "mean_ms": None, "median_ms": None,
                                                   "min_ms": None, "max_ms": None}
    assert parse_trtexec_time("&&&& PASSED TensorRT.trtexec\n")["mean_ms"] is None
    assert parse_trtexec_time("Segmentation fault") is None


# ------------------------------------------------------------------ comparisons
def test_snr_and_output_comparison_by_hand():
    from edgevos.jetson.check import compare_outputs, snr_db

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 3, 4)).astype(np.float32)
    assert snr_db(ref, ref) == math.inf
    assert snr_db(ref, ref * 1.1) == pytest.approx(20.0, abs=1e-4)  # noise = 0.1 ref: 10 log10(100)
    assert snr_db(ref, ref * 1.01) == pytest.approx(40.0, abs=1e-3)
    refs = [{"y": ref}, {"y": 2 * ref}]
    got = compare_outputs(refs, [{"y": ref * 1.1}, {"y": 2 * ref * 1.1}])
    assert got["y"]["snr_db"] == pytest.approx(20.0, abs=1e-4) and got["y"]["samples"] == 2 and got["y"]["finite"]
    assert got["y"]["max_abs_diff"] == pytest.approx(float(np.abs(0.2 * ref).max()), rel=1e-5)
    bad = ref.copy()
    bad[0, 0, 0] = np.nan
    got = compare_outputs(refs, [{"y": ref}, {"y": bad}])
    assert got["y"]["finite"] is False and got["y"]["snr_db"] is None


class _Scaled:
    """A backend standing in for an engine set: another backend's outputs times ``scale``."""

    def __init__(self, inner, scale):
        self.inner, self.scale = inner, scale

    def has(self, stage):
        return self.inner.has(stage)

    def run(self, stage, feeds):
        return {k: np.asarray(v) * self.scale for k, v in self.inner.run(stage, feeds).items()}


def test_engine_comparison_with_onnx_runtime_on_both_sides(tmp_path):
    """ORT FP32 against itself: infinite SNR; the int8-trt graph in ORT: finite; a backend 10 %
    off: 20 dB against every reference."""
    pytest.importorskip("onnx")
    from trt_fakes import qdq_bundle

    from edgevos.backend import open_backend
    from edgevos.bundle import load_bundle
    from edgevos.jetson.check import compare_engine, judge_stages, run_stage

    b = load_bundle(qdq_bundle(tmp_path / "b"))
    fp32 = open_backend("onnxruntime", b, "fp32", 1)
    q = open_backend("onnxruntime", b, "int8-trt", 1)
    rng = np.random.default_rng(0)
    feeds = {s: [{"x": rng.standard_normal((1, 4, 8, 8)).astype(np.float32)} for _ in range(3)] for s in ("encoder", "decoder")}
    refs = {"fp32": {s: run_stage(fp32, s, f) for s, f in feeds.items()},
            "int8-trt": {s: run_stage(q, s, f) for s, f in feeds.items()}}
    same = {r["stage"]: r for r in compare_engine(fp32, refs, feeds)}
    assert same["encoder"]["snr_vs_fp32_db"] == math.inf and same["decoder"]["snr_vs_int8-trt_db"] == math.inf
    assert 10 < same["encoder"]["snr_vs_int8-trt_db"] < 60  # quantized encoder: close, not equal
    quant = {r["stage"]: r for r in compare_engine(q, refs, feeds)}
    assert quant["encoder"]["snr_vs_int8-trt_db"] == math.inf
    assert 10 < quant["encoder"]["snr_vs_fp32_db"] < 60  # SNR is relative to the reference: not symmetric
    assert quant["encoder"]["max_abs_diff_vs_fp32"] == same["encoder"]["max_abs_diff_vs_int8-trt"]
    off = compare_engine(_Scaled(q, 1.1), refs, feeds)
    assert all(r["snr_vs_int8-trt_db"] == pytest.approx(20.0, abs=1e-3) for r in off)
    assert judge_stages("int8/python", off, "int8-trt").state == "PASS"
    far = compare_engine(_Scaled(q, 1.5), refs, feeds)  # noise 0.5 of the signal: 6 dB
    row = judge_stages("int8/python", far, "int8-trt")
    assert row.state == "WARN" and "6.0 dB" in row.detail
    nan = compare_engine(_Scaled(q, np.nan), refs, feeds)
    assert judge_stages("int8/python", nan, "int8-trt").state == "FAIL"


def test_mask_iou_and_its_judgement():
    from edgevos.jetson.check import IOU_FAIL, IOU_WARN, judge_e2e, mask_ious

    a = np.zeros((10, 10), np.uint8)
    a[2:8, 2:8] = 1
    b = np.zeros_like(a)
    b[2:8, 2:5] = 1  # half of a
    got = mask_ious([a, a, a], [np.zeros_like(a), a, b])  # frame 0 (the given mask) is not compared
    assert got == {"mean": pytest.approx(0.75), "min": pytest.approx(0.5), "frames": 2}
    ok = {"fp32": {"mean": 0.97, "min": 0.9}, "int8-trt": {"mean": 0.99, "min": 0.95}}
    assert judge_e2e("int8/python", ok, "int8-trt").state == "PASS"
    assert judge_e2e("int8/python", dict(ok, **{"int8-trt": {"mean": IOU_WARN - 0.01, "min": 0.5}}), "int8-trt").state == "WARN"
    row = judge_e2e("fp16/python", {"fp32": {"mean": IOU_FAIL - 0.01, "min": 0.0}}, "fp32")
    assert row.state == "FAIL" and "masks are wrong" in row.detail
    assert judge_e2e("fp16/python", {}, "fp32").state == "SKIP"


# ------------------------------------------------------------------ tegrastats
def test_tegrastats_summary_from_recorded_lines():
    from edgevos.jetson.check import summarise_tegrastats

    s = summarise_tegrastats([ORIN_NANO, "some other line", ORIN_NANO_BUSY, ""])
    assert s == {"samples": 2, "mean_watts": 6.0, "max_watts": 7.385, "rail": "VDD_IN", "gpu_load_mean": 69.0,
                 "ram_peak_mb": 2102, "temp_max_c": 52.5}
    agx = summarise_tegrastats([AGX_ORIN])
    assert agx["rail"] == "sum of rails" and agx["mean_watts"] == pytest.approx(5.139 + 1.19 + 3.418)
    assert summarise_tegrastats(["RAM 1878/7620MB (lfb 1x4MB)"]) is None and summarise_tegrastats([]) is None


def _fake_tegrastats(tmp_path, lines, every=0.01):
    script = tmp_path / "tegrastats.py"
    script.write_text(textwrap.dedent(f"""\
        import time
        lines = {list(lines)!r}
        i = 0
        while True:
            print(lines[i % len(lines)], flush=True)
            i += 1
            time.sleep({every})
    """))
    return [sys.executable, str(script)]


def test_power_monitor_logs_what_tegrastats_printed(tmp_path):
    import time

    from edgevos.runtime.power import PowerMonitor

    log = tmp_path / "tegrastats.log"
    pm = PowerMonitor(command=_fake_tegrastats(tmp_path, [ORIN_NANO, ORIN_NANO_BUSY]), log=log).start()
    deadline = time.time() + 10
    while len(pm.samples) < 4 and time.time() < deadline:
        time.sleep(0.02)
    assert pm.stop(frames=10) is not None
    lines = log.read_text().splitlines()
    assert len(lines) >= 4 and lines[0] == ORIN_NANO and lines[1] == ORIN_NANO_BUSY


# ------------------------------------------------------------------ the whole run, with stand-ins
class RecordedBoard:
    """A Probe answering like an AGX Orin on JetPack 6.2 with TensorRT 10.3."""

    def __init__(self, trt="10.3.0", clocks="on"):
        self.trt, self.clocks = trt, clocks

    def tegra_release(self):
        return RELEASE_62

    def jetson(self):
        return {"model": "NVIDIA Jetson AGX Orin Developer Kit", "l4t": "36.4.3", "jetpack": "6.2",
                "nvpmodel": "MAXN (0)", "jetson_clocks": self.clocks}

    def trt_version(self):
        return self.trt

    def cuda(self):
        return "runtime 12.6 driver 12.6"

    def identity(self):
        return "sm87x16"

    def gst_elements(self, names):
        return {n: True for n in names}

    def doctor(self):
        return {"edgevos": "test", "jetson": self.jetson()}


@pytest.fixture(scope="module")
def toy_bundle(tmp_path_factory):
    """`edgevos export --family toy`: fp32, int8-trt and its FP16-float form."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxslim")
    from export_toy import register_toy_family

    from edgevos.cli import main as cli

    mp = pytest.MonkeyPatch()
    register_toy_family(mp)
    out = tmp_path_factory.mktemp("b") / "toy"
    try:
        rc = cli(["export", "--family", "toy", "--precision", "fp32,int8-trt", "--trt-float", "fp16", "--calib",
                  "test://1", "--calib-frames", "8", "--input-size", "32x48", "--heldout-frames", "4", "--out",
                  str(out), "--quiet"])
    finally:
        mp.undo()
    assert rc == 0
    return out


@pytest.fixture
def toy_family(monkeypatch):
    from export_toy import register_toy_family

    register_toy_family(monkeypatch)


def _stand_in_trtexec(tmp_path, log=TRTEXEC_PASSED):
    """trtexec that writes the engine a build asks for and prints a recorded log when timing one."""
    calls = tmp_path / "trtexec.calls"
    (tmp_path / "time.log").write_text(log)
    return str(_stub(tmp_path / "trtexec", f"""echo "$*" >> "{calls}"
for a in "$@"; do case "$a" in
  --saveEngine=*) printf 'engine' > "${{a#--saveEngine=}}" ;;
  --exportLayerInfo=*) echo '{{"Layers": []}}' > "${{a#--exportLayerInfo=}}" ;;
  --loadEngine=*) cat "{tmp_path / 'time.log'}" ;;
esac; done
""")), calls


def _tools(tmp_path, monkeypatch, trtexec_log=TRTEXEC_PASSED, build_python=None):
    """Tools whose engine sets are ONNX Runtime on the source graph; the trtexec script is the
    real generated one, run with a stand-in trtexec and a 'tensorrt' module that only has a version."""
    from edgevos.backend import open_backend
    from edgevos.bundle import load_bundle
    from edgevos.jetson.check import Tools

    trtexec, calls = _stand_in_trtexec(tmp_path, trtexec_log)
    pkg = tmp_path / "trt-pkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "tensorrt.py").write_text("__version__ = '10.3.0.30'\n")
    monkeypatch.setenv("PYTHONPATH", str(pkg))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the script's 'edgevos build --register' is not found: check registers
    opened = []

    def open_engines(root, variant):
        b = load_bundle(root)
        assert variant.key in b.precisions, f"{variant.key} engines not registered in {root}"
        be = open_backend("onnxruntime", b, variant.source, 1)
        opened.append((root, variant.label))
        return be

    def python_builder(root, variant):  # what the Python builder leaves: engines registered in the copy
        from edgevos.bundle import add_files

        assert Path(variant.options.timing_cache).parent.name == "work", "one timing cache for every set"
        b = load_bundle(root)
        files = {}
        for s in b.specs:
            p = root / f"{s.name}.{variant.options.tag}.trt10.3.0.sm87x16.32x48.engine"
            p.write_bytes(b"engine")
            files[s.name] = {variant.key: p}
        info = {"tensorrt": {variant.key: {"stages": {s.name: {"runs": "fp16", "qdq": False, "layers": {"GPU": 3}}
                                                      for s in b.specs}}}}
        add_files(root, files, info=info)
        return {}

    tools = Tools(trtexec=trtexec, build_python=build_python or python_builder, open_engines=open_engines)
    return tools, calls, opened


def _options(bundle, out, **kw):
    from edgevos.jetson.check import Options

    base = dict(bundle=Path(bundle), out=Path(out), frames=40, e2e_frames=12, samples=4)
    base.update(kw)
    return Options(**base)


def _strict(path):
    def no_constants(name):
        raise ValueError(f"{name} in the report: not strict JSON")

    return json.loads(Path(path).read_text(), parse_constant=no_constants)


def test_whole_check_with_stand_ins(tmp_path, monkeypatch, toy_bundle, toy_family):
    from edgevos.bundle import load_bundle
    from edgevos.jetson.check import FORMAT, run_check

    before = (toy_bundle / "manifest.json").read_text()
    tools, calls, opened = _tools(tmp_path, monkeypatch)
    out = tmp_path / "out"
    power = _fake_tegrastats(tmp_path, [ORIN_NANO, ORIN_NANO_BUSY])
    report = run_check(_options(toy_bundle, out, precisions=["fp16", "int8-f16"]), RecordedBoard(), tools, power)
    rows = {r["name"]: (r["state"], r["detail"]) for r in report["checks"]}
    assert report["result"] == "PASS", rows
    for label in ("fp16/python", "fp16/trtexec", "int8-f16/python", "int8-f16/trtexec"):
        for what in ("build", "stages", "masks", "time"):
            assert rows[f"{label} {what}"][0] == "PASS", (label, what, rows)
    # the generated trtexec script built each stage from the graph the set names, strongly typed where quantized
    builds = [c for c in calls.read_text().splitlines() if "--saveEngine=" in c]
    assert len(builds) == 4
    enc16 = next(c for c in builds if "encoder.int8." in c)
    assert "encoder.int8-trt-f16.onnx" in enc16 and "--stronglyTyped" in enc16 and "--int8" not in enc16
    assert all("--fp16" in c and "encoder.onnx" in c or "head" in c for c in builds if ".fp16." in c)
    timed = [c for c in calls.read_text().splitlines() if c.startswith("--loadEngine=")]
    assert len(timed) == 4  # two stages x two trtexec-built sets
    assert rows["fp16/trtexec trtexec"] == ("PASS", "GPU compute mean: encoder 0.412 ms, head 0.412 ms")
    # ORT stand-ins for the engines: the same graph gives infinite SNR and IoU 1
    assert "IoU vs ORT fp32 1.000" in rows["fp16/python masks"][1]
    assert "vs ORT int8-trt" in rows["int8-f16/python stages"][1]
    # the power run: 40 frames on the preferred set, tegrastats logged and summarised
    state, detail = rows["run int8-f16"]
    assert state == "PASS" and detail.startswith("40 frames") and "W mean (VDD_IN)" in detail, detail
    assert report["run"]["tegrastats"]["rail"] == "VDD_IN" and report["run"]["summary"]["frames"] == 40
    assert (out / "tegrastats.log").read_text().splitlines()[0] == ORIN_NANO
    # the report: strict JSON, its parts, and the printed tables
    data = _strict(out / "check.json")
    assert data == report and data["format"] == FORMAT
    assert {"format", "edgevos", "time", "argv", "environment", "bundle", "references", "engines", "run", "checks",
            "result", "seconds"} <= set(data)
    assert data["environment"]["identity"] == "sm87x16" and data["environment"]["doctor"]["edgevos"] == "test"
    e = data["engines"]["int8-f16/python"]
    assert e["source"] == "int8-trt" and e["options"]["trt_float"] == "fp16" and e["engines"] == "trt-int8"
    assert {r["stage"] for r in e["stages"]} == {"encoder", "head"}
    assert e["stages"][0]["snr_vs_int8-trt_db"] == "inf" and set(e["e2e"]) == {"fp32", "int8-trt"}
    assert set(e["stage_ms"]) == {"encoder", "head"} and e["built"]["encoder"]["layers"] == {"GPU": 3}
    assert data["engines"]["fp16/trtexec"]["trtexec_ms"]["encoder"]["mean_ms"] == 0.412
    text = (out / "check.txt").read_text()
    assert re.search(r"^check\s+state\s+detail$", text, re.M) and text.rstrip().endswith("result: PASS")
    assert re.search(r"^engine set\s+from\s+min SNR fp32\s+min SNR src\s+IoU fp32\s+IoU src\s+stages ms\s+trtexec ms$",
                     text, re.M)
    assert re.search(r"^int8-f16/trtexec\s+int8-trt\s+\S+\s+inf\s+1\.000\s+1\.000\s+[0-9.]+\s+0\.824$", text, re.M), text
    # the bundle itself is untouched and the scratch copies are gone
    assert (toy_bundle / "manifest.json").read_text() == before and not list(toy_bundle.glob("*.engine"))
    load_bundle(toy_bundle)
    assert not (out / "work").exists()


def test_a_failing_build_or_trtexec_is_a_failed_row_not_the_end(tmp_path, monkeypatch, toy_bundle, toy_family):
    from edgevos.errors import BundleError
    from edgevos.jetson.check import run_check

    def broken(root, variant):
        raise BundleError("TensorRT failed to build an engine from encoder.onnx (fp16); see the log above")

    tools, _, _ = _tools(tmp_path, monkeypatch, trtexec_log=TRTEXEC_FAILED, build_python=broken)
    report = run_check(_options(toy_bundle, tmp_path / "out", precisions=["fp16"], power_run=False),
                       RecordedBoard(clocks="off"), tools)
    rows = {r["name"]: (r["state"], r["detail"]) for r in report["checks"]}
    assert report["result"] == "FAIL"
    assert rows["fp16/python build"][0] == "FAIL" and "failed to build" in rows["fp16/python build"][1]
    assert rows["fp16/trtexec build"][0] == "PASS" and rows["fp16/trtexec masks"][0] == "PASS"
    assert rows["fp16/trtexec trtexec"][0] == "FAIL"
    assert rows["power mode"][0] == "WARN"
    assert "error: BundleError" in (tmp_path / "out" / "check.txt").read_text()


def test_copy_for_engines_leaves_engine_sets_behind(tmp_path):
    pytest.importorskip("onnx")
    from trt_fakes import qdq_bundle

    from edgevos.bundle import add_files, load_bundle
    from edgevos.jetson.check import copy_for_engines

    root = qdq_bundle(tmp_path / "b")
    for s in ("encoder", "decoder"):
        (root / f"{s}.int8.trt10.3.0.sm87x16.64x96.engine").write_bytes(b"e")
        (root / f"{s}.int8.trt10.3.0.sm87x16.64x96.engine.layers.json").write_text("{}")
    (root / "timing.trt10.3.0.sm87x16.cache").write_bytes(b"c")
    add_files(root, {s: {"trt-int8": root / f"{s}.int8.trt10.3.0.sm87x16.64x96.engine"} for s in ("encoder", "decoder")},
              extra_files=list(root.glob("*.layers.json")) + [root / "timing.trt10.3.0.sm87x16.cache"],
              info={"tensorrt": {"version": "10.3.0", "trt-int8": {"stages": {}}}})
    copy = load_bundle(copy_for_engines(root, tmp_path / "copy"))
    assert copy.precisions == ["fp32", "int8-trt"] and "trt-int8" not in copy.manifest["tensorrt"]
    assert sorted(p.name for p in copy.root.iterdir()) == sorted(
        ["manifest.json", "encoder.onnx", "decoder.onnx", "encoder.int8-trt.onnx"])
    assert load_bundle(root).precisions == ["fp32", "int8-trt", "trt-int8"]


# ------------------------------------------------------------------ the script where TensorRT is missing
def _script_env(tmp_path, release=RELEASE_62):
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    _stub(bin_ / "gst-inspect-1.0", 'case "$1" in nvvidconv|nvv4l2decoder) exit 0 ;; *) exit 1 ;; esac\n')
    (tmp_path / "nv_tegra_release").write_text(release)
    env = dict(os.environ, PYTHON=sys.executable, GST_INSPECT=str(bin_ / "gst-inspect-1.0"),
               NV_TEGRA_RELEASE=str(tmp_path / "nv_tegra_release"), CHECK_OUT=str(tmp_path / "out"),
               PYTHONPATH=str(ROOT / "tests"))
    return env


def _rows(stdout):
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r"^(\S+(?: \S+)?)\s+(PASS|WARN|FAIL|SKIP)\s+(.*)$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def _no_tensorrt_here():
    sys.path.insert(0, str(ROOT / "jetson"))
    try:
        import trtinfo
    finally:
        sys.path.pop(0)
    if trtinfo.trt_version() != "unknown":
        pytest.skip("TensorRT is installed here")


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_without_tensorrt_the_script_fails_clearly(tmp_path, toy_bundle):
    """The real script and checks on this machine (no TensorRT, no CUDA): the TensorRT row says
    where TensorRT comes from, every engine set is skipped for it, the run exits 1 with a report."""
    _no_tensorrt_here()
    r = subprocess.run([BASH, str(CHECK), str(toy_bundle), "--no-run"], capture_output=True, text=True,
                       env=_script_env(tmp_path), timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    rows = _rows(r.stdout)
    state, detail = rows["TensorRT"]
    assert state == "FAIL" and "nvidia-jetpack" in detail and "--system-site-packages" in detail
    assert rows["CUDA"][0] == "FAIL" and rows["GPU"][0] == "FAIL"
    for label in ("fp16", "int8", "int8-f16", "best"):
        assert rows[f"{label} build"] == ("SKIP", "needs TensorRT (see its row)"), rows
    assert rows["board"] == ("PASS", "L4T 36.4.3, JetPack 6.2")
    assert rows["GStreamer"][0] == "WARN" and rows["doctor"][0] == "PASS"
    assert r.stdout.rstrip().splitlines()[-2] == "result: FAIL"
    report = _strict(tmp_path / "out" / "check.json")
    assert report["result"] == "FAIL" and report["bundle"]["variants"] == ["fp16", "int8", "int8-f16", "best"]
    assert "check.json" in r.stdout.splitlines()[-1]


@pytest.mark.skipif(BASH is None, reason="needs bash")
@pytest.mark.parametrize("args, message", [
    (["/nonexistent/bundle"], "not an edgevos bundle"),
    (["--frames", "0"], "--frames: 0 must be at least 1"),
    (["--nope"], "unrecognized arguments"),
])
def test_bad_arguments(tmp_path, args, message):
    r = subprocess.run([BASH, str(CHECK), *args], capture_output=True, text=True, env=_script_env(tmp_path), timeout=120)
    assert r.returncode == 2 and message in r.stderr, r.stderr


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_unknown_precision_for_the_bundle(tmp_path, toy_bundle):
    r = subprocess.run([BASH, str(CHECK), str(toy_bundle), "--precision", "fp16-dla0"], capture_output=True,
                       text=True, env=_script_env(tmp_path), timeout=300)
    assert r.returncode == 2 and "can build" in r.stderr and "--dla" not in r.stdout


@pytest.mark.jetson
def test_check_on_the_board(tmp_path):
    """The whole chain on a Jetson with TensorRT 10 and edgevos installed (no bundle: the environment only)."""
    r = subprocess.run([BASH, str(CHECK), "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _strict(tmp_path / "out" / "check.json")["result"] == "PASS"
