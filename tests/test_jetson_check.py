"""jetson/check.sh: its syntax, the parsing of each check's output from recorded outputs, the
table and exit status with stand-in tools (gst-inspect-1.0, trtexec, edgevos, a Python that
answers trtinfo.py), and what it says where TensorRT is missing.  The real chain runs on a board
only (test_check_on_the_board)."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "jetson" / "check.sh"
BASH = shutil.which("bash")

pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")

RELEASE_62 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025\n"
RELEASE_60 = "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024\n"
TRTEXEC_PASSED = """&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=a.onnx --fp16
[01/08/2025-10:00:00] [I] === Performance summary ===
[01/08/2025-10:00:00] [I] Throughput: 2211.3 qps
[01/08/2025-10:00:00] [I] Latency: min = 0.47 ms, max = 0.61 ms, mean = 0.49 ms, median = 0.48 ms
[01/08/2025-10:00:00] [I] GPU Compute Time: min = 0.398 ms, max = 0.582 ms, mean = 0.412 ms, median = 0.405 ms, percentile(90%) = 0.42 ms
&&&& PASSED TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=a.onnx --fp16
"""
TRTEXEC_FAILED = """&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=a.onnx --fp16
[01/08/2025-10:00:00] [E] Error[4]: [network.cpp::validate::3200] Error Code 4: Internal Error
[01/08/2025-10:00:00] [E] Engine could not be created from network
&&&& FAILED TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=a.onnx --fp16
"""


def lib(call: str) -> subprocess.CompletedProcess:
    """Run ``call`` with check.sh's functions loaded (its checks are not run)."""
    return subprocess.run([BASH, "-c", f'source "{CHECK}"; {call}'], capture_output=True, text=True,
                          env=dict(os.environ, EDGEVOS_CHECK_LIB="1"))


def test_bash_syntax():
    r = subprocess.run([BASH, "-n", str(CHECK)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.access(CHECK, os.X_OK), "check.sh is executable"


@pytest.mark.parametrize("text, version", [
    (RELEASE_62, "36.4.3"),
    (RELEASE_60, "36.3.0"),
    ("# R35 (release), REVISION: 5.0, GCID: 35550185, BOARD: t186ref, EABI: aarch64", "35.5.0"),
    ("# R36 (release), REVISION: 4, GCID: 1", "36.4"),
    ("Ubuntu 22.04", ""),
])
def test_l4t_version_from_nv_tegra_release(text, version):
    r = lib(f"l4t_version '{text.strip()}'")
    assert r.stdout.strip() == version


@pytest.mark.parametrize("call, ok", [
    ("l4t_ok 36.4.3", True), ("l4t_ok 36.4", True), ("l4t_ok 38.2.0", True),
    ("l4t_ok 36.3.0", False), ("l4t_ok 35.5.0", False), ("l4t_ok ''", False),
    ("trt_ok 10.3.0", True), ("trt_ok 10", True), ("trt_ok 8.6.2", False), ("trt_ok unknown", False),
    ("cuda_ok 'runtime 12.6 driver 12.6'", True), ("cuda_ok 'runtime 12.2 driver 12.6'", True),
    ("cuda_ok 'runtime 12.6 driver 12.2'", False), ("cuda_ok 'runtime 13.0 driver 13.0'", False),
    ("cuda_ok 'runtime 12.6 driver 0.0'", False), ("cuda_ok 'cannot load the CUDA 12 runtime'", False),
    ("identity_ok sm87x16", True), ("identity_ok sm87x8", True), ("identity_ok unknown", False),
])
def test_each_check_judges_its_output(call, ok):
    assert (lib(call).returncode == 0) is ok, call


def test_trtexec_log_is_read_for_pass_and_time(tmp_path):
    (tmp_path / "passed.log").write_text(TRTEXEC_PASSED)
    (tmp_path / "failed.log").write_text(TRTEXEC_FAILED)
    (tmp_path / "no-time.log").write_text("&&&& PASSED TensorRT.trtexec [TensorRT v100300] # trtexec\n")
    r = lib(f'trtexec_result "$(cat {tmp_path}/passed.log)"')
    assert r.returncode == 0 and r.stdout.strip() == "GPU compute mean 0.412 ms"
    r = lib(f'trtexec_result "$(cat {tmp_path}/failed.log)"')
    assert r.returncode == 1 and r.stdout == ""
    r = lib(f'trtexec_result "$(cat {tmp_path}/no-time.log)"')
    assert r.returncode == 0 and r.stdout.strip() == "passed"


def _stub(path: Path, body: str) -> Path:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return path


def _board(tmp_path, trt="10.3.0", cuda="runtime 12.6 driver 12.6", identity="sm87x16", release=RELEASE_62,
           elements=("nvvidconv", "nvv4l2decoder", "nvv4l2h264enc", "nvarguscamerasrc", "nv3dsink"),
           trtexec_log=TRTEXEC_PASSED, trtexec_rc=0, builder_rc=0):
    """Environment for check.sh with recorded board outputs: trtinfo.py answers, gst-inspect-1.0
    knowing ``elements``, a trtexec printing ``trtexec_log``, an edgevos whose doctor passes.
    ``builder_rc`` None runs edgevos' Python builder for real on the stand-in ``tensorrt``."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    fake = tmp_path / "fake-trt"
    fake.mkdir()
    (fake / "tensorrt.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'tests')!r})\nfrom trt_fakes import fake_tensorrt\n"
        "sys.modules[__name__] = fake_tensorrt()\n")
    if builder_rc is None:
        builder = f'PYTHONPATH="{fake}" exec "{sys.executable}" - "${{@:2}}" <<< "$script"'
    else:
        builder = f'echo "layers GPU=3"; exit {builder_rc}'
    
    (tmp_path / "trtexec.log").write_text(trtexec_log)
    _stub(bin_ / "python3", f"""
case "$1" in
  */trtinfo.py)
    case "$2" in
      trt-version) echo "{trt}" ;;
      cuda) echo "{cuda}" ;;
      identity) echo "{identity}" ;;
    esac ;;
  -)
    script="$(cat)"
    if grep -q build_engine <<< "$script"; then {builder}; fi
    exec "{sys.executable}" - "${{@:2}}" <<< "$script" ;;
esac
""")
    _stub(bin_ / "gst-inspect-1.0", f'case "$1" in {"|".join(elements) or "none-at-all"}) exit 0 ;; *) exit 1 ;; esac\n')
    _stub(bin_ / "trtexec", f'echo "$@" > "{tmp_path}/trtexec.args"; cat "{tmp_path}/trtexec.log"; exit {trtexec_rc}\n')
    _stub(bin_ / "edgevos", '[ "$1" = doctor ] && echo "edgevos  0.0" && exit 0; exit 3\n')
    (tmp_path / "nv_tegra_release").write_text(release)
    env = dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}", PYTHON=str(bin_ / "python3"),
               TRTEXEC=str(bin_ / "trtexec"), NV_TEGRA_RELEASE=str(tmp_path / "nv_tegra_release"),
               CHECK_LOG=str(tmp_path / "log"), EDGEVOS=str(bin_ / "edgevos"))
    env.pop("EDGEVOS_CHECK_LIB", None)
    return env


def _bundle(tmp_path) -> Path:
    """Three stages; the smallest, 'head', is a real ONNX graph."""
    from trt_fakes import conv_onnx

    b = tmp_path / "bundle"
    b.mkdir()
    stages = []
    head = conv_onnx(b / "head.onnx", qdq=False).stat().st_size
    for name, size in (("encoder", head * 3), ("head", None), ("decoder", head + 1)):
        if size:
            (b / f"{name}.onnx").write_bytes(b"x" * size)
        stages.append({"name": name, "files": {"fp32": f"{name}.onnx"}})
    (b / "manifest.json").write_text(json.dumps({"stages": stages}))
    return b


def _run(env, *args):
    r = subprocess.run([BASH, str(CHECK), *map(str, args)], capture_output=True, text=True, env=env, timeout=120)
    rows = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^(\S+(?: \S+)?)\s+(PASS|WARN|FAIL|SKIP)\s+(.*)$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return r, rows


def test_a_good_board_passes_every_check(tmp_path):
    env = _board(tmp_path)
    r, rows = _run(env, _bundle(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(rows) == ["board", "TensorRT", "CUDA", "GPU", "GStreamer", "engine trtexec", "engine Python", "doctor"]
    assert all(state == "PASS" for state, _ in rows.values()), rows
    assert rows["board"][1] == "L4T 36.4.3" and rows["TensorRT"][1] == "10.3.0"
    assert rows["engine trtexec"][1] == "head FP16: GPU compute mean 0.412 ms"  # the smallest stage
    assert rows["engine Python"][1] == "head FP16: layers GPU=3"
    args = (tmp_path / "trtexec.args").read_text()
    assert f"--onnx={tmp_path}/bundle/head.onnx" in args and "--fp16" in args and "--int8" not in args
    assert str(tmp_path / "bundle") not in args.split("--saveEngine=")[1], "the engine is not written into the bundle"
    assert r.stdout.strip().endswith("result: PASS")


def test_python_builder_row_runs_edgevos_builder(tmp_path):
    """The Python builder row with edgevos' build_engine on the stand-in TensorRT: FP16, no INT8."""
    env = _board(tmp_path, builder_rc=None)
    r, rows = _run(env, _bundle(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert rows["engine Python"] == ("PASS", "head FP16: layers GPU=2"), rows  # Conv and Add on the GPU
    assert not list((tmp_path / "bundle").glob("*.engine")), "nothing written into the bundle"


def test_failures_are_named_with_their_fix_and_exit_nonzero(tmp_path):
    env = _board(tmp_path, trt="8.6.2", release=RELEASE_60, cuda="runtime 12.6 driver 12.2",
                 elements=("nvvidconv", "nvv4l2decoder", "nv3dsink"))
    r, rows = _run(env, _bundle(tmp_path))
    assert r.returncode == 1 and r.stdout.strip().endswith("result: FAIL")
    assert rows["board"][0] == "FAIL" and "36.3.0" in rows["board"][1] and "JetPack 6.1 or 6.2" in rows["board"][1]
    assert rows["TensorRT"][0] == "FAIL" and "8.6.2" in rows["TensorRT"][1] and "TensorRT 10" in rows["TensorRT"][1]
    assert rows["CUDA"][0] == "FAIL" and "driver 12.2" in rows["CUDA"][1]
    assert rows["GStreamer"][0] == "WARN" and "x264enc" in rows["GStreamer"][1] and "csi://" in rows["GStreamer"][1]
    assert rows["engine trtexec"][0] == rows["engine Python"][0] == "SKIP"


def test_failed_engine_build_fails_the_run(tmp_path):
    env = _board(tmp_path, trtexec_log=TRTEXEC_FAILED, trtexec_rc=1, builder_rc=1)
    r, rows = _run(env, _bundle(tmp_path))
    assert r.returncode == 1
    assert rows["engine trtexec"][0] == "FAIL" and "trtexec.log" in rows["engine trtexec"][1]
    assert rows["engine Python"][0] == "FAIL"
    assert "FAILED TensorRT.trtexec" in (tmp_path / "log" / "trtexec.log").read_text()


def test_missing_nvmm_elements_fail(tmp_path):
    env = _board(tmp_path, elements=("nvv4l2decoder",))
    r, rows = _run(env)
    assert r.returncode == 1
    assert rows["GStreamer"][0] == "FAIL" and "nvvidconv" in rows["GStreamer"][1]
    assert "nvidia-l4t-gstreamer" in rows["GStreamer"][1]
    assert rows["engine trtexec"][0] == "SKIP" and "no bundle given" in rows["engine trtexec"][1]


def test_without_tensorrt_says_how_to_get_it(tmp_path):
    """The real trtinfo.py under this interpreter: no tensorrt module, no libnvinfer."""
    sys.path.insert(0, str(ROOT / "jetson"))
    try:
        import trtinfo
    finally:
        sys.path.pop(0)
    if trtinfo.trt_version() != "unknown":
        pytest.skip("TensorRT is installed here")
    env = _board(tmp_path)
    env["PYTHON"] = sys.executable
    r, rows = _run(env, _bundle(tmp_path))
    assert r.returncode == 1
    state, detail = rows["TensorRT"]
    assert state == "FAIL" and "nvidia-jetpack" in detail and "--system-site-packages" in detail
    assert rows["engine trtexec"] == ("SKIP", "needs TensorRT 10 (see above)")
    assert rows["engine Python"][0] == "SKIP"
    assert rows["board"][0] == "PASS" and rows["doctor"][0] == "PASS"


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/bundle"], "not an edgevos bundle"),
    (["a", "b"], "at most one argument"),
])
def test_bad_arguments(tmp_path, args, message):
    r, _ = _run(_board(tmp_path), *args)
    assert r.returncode == 2 and message in r.stderr


def test_trtinfo_cuda_versions_text():
    from trt_fakes import FakeCudaLib

    from edgevos.jetson.trtinfo import CudaRuntime, cuda_versions_text

    assert cuda_versions_text(CudaRuntime(FakeCudaLib())) == "runtime 12.6 driver 12.6"


@pytest.mark.jetson
def test_check_on_the_board(tmp_path):
    """The whole chain on a Jetson with TensorRT 10 and edgevos installed (no bundle: no engine)."""
    r = subprocess.run([BASH, str(CHECK)], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, CHECK_LOG=str(tmp_path / "log")))
    assert r.returncode == 0, r.stdout + r.stderr
