"""jetson/: scripts pass shellcheck, the Dockerfile is sane, build_engines.sh drives trtexec
per stage with the right flags (a stand-in trtexec), and the GStreamer presets parse."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JETSON = ROOT / "jetson"
SCRIPTS = sorted(JETSON.glob("*.sh"))


def test_kit_files_exist():
    for name in ("Dockerfile", "setup.sh", "build_engines.sh", "check.sh", "check.py", "README.md", "pipelines.py",
                 "trtinfo.py"):
        assert (JETSON / name).is_file(), name
    for s in SCRIPTS:
        assert os.access(s, os.X_OK), f"{s.name} is not executable"
        assert s.read_text().startswith("#!/usr/bin/env bash\n")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_pass_shellcheck(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    p = subprocess.run(["shellcheck", "-x", str(script)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def _instructions(text):
    """Dockerfile instructions with continuation lines joined, comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        cur += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            out.append(cur.strip())
            cur = ""
    return out


def test_dockerfile_lint():
    ins = _instructions((JETSON / "Dockerfile").read_text())
    assert ins[0].split()[0] == "FROM", "the first instruction must be FROM"
    assert re.match(r"FROM nvcr\.io/nvidia/l4t-jetpack:r36\.\d+(\.\d+)?$", ins[0]), ins[0]
    known = {"FROM", "RUN", "COPY", "ENV", "WORKDIR", "CMD", "ENTRYPOINT", "ARG", "LABEL", "USER", "EXPOSE"}
    for i in ins:
        kw = i.split()[0]
        assert kw in known, f"unknown instruction {kw}"
        assert not (kw == "ADD" and re.search(r"https?://", i)), "ADD of a URL: use RUN curl with a checksum"
        if kw == "COPY":
            for src in i.split()[1:-1]:
                if not src.startswith("--"):
                    assert (ROOT / src).exists(), f"COPY source {src} is not in the repository"
    text = " ".join(ins)
    assert "pip install" in text and "[gst,trt" in text
    assert not re.search(r"\btorch\b(?!\w)", text.replace("edgevos", "")), "the Jetson image must not install torch"
    assert "python3-gi" in text and "gstreamer1.0" in text
    assert "install --upgrade pip" not in text, "pip must not be upgraded over Debian's"
    assert re.search(r"numpy<2", text), "numpy must stay 1.x for JetPack's TensorRT bindings"
    assert re.search(r"import [^\"]*\btensorrt\b", text) and "check_trt_version" in text, "the image must import TensorRT 10"


def test_gpu_detection_knows_jetpack6_device_nodes(tmp_path):
    from conftest import GPU_NODES, has_gpu_nodes

    assert "/dev/nvgpu/igpu0/ctrl" in GPU_NODES and "/dev/nvmap" in GPU_NODES
    node = tmp_path / "nvmap"
    node.write_text("")
    assert has_gpu_nodes([str(tmp_path / "nvidia0"), str(node)]) and not has_gpu_nodes([str(tmp_path / "none")])


def _fake_bundle(root: Path):
    """A manifest with three stages; 'decoder' kept float in int8-trt (same file as fp32)."""
    from trt_fakes import conv_onnx

    root.mkdir()
    stages = []
    for name in ("encoder", "gate", "decoder"):
        conv_onnx(root / f"{name}.onnx", qdq=False)
        files = {"fp32": f"{name}.onnx"}
        if name != "decoder":
            conv_onnx(root / f"{name}.int8-trt.onnx", qdq=True)
            files["int8-trt"] = f"{name}.int8-trt.onnx"
        else:
            files["int8-trt"] = f"{name}.onnx"
        stages.append({"name": name, "files": files})
    (root / "manifest.json").write_text(json.dumps({"input_size": [256, 448], "stages": stages}))


def _run_build(tmp_path, *args):
    log = tmp_path / "calls.log"
    fake = tmp_path / "trtexec"
    fake.write_text('#!/usr/bin/env bash\necho "$*" >> "%s"\nfor a in "$@"; do case "$a" in '
                    '--saveEngine=*) touch "${a#--saveEngine=}";; esac; done\n' % log)
    fake.chmod(0o755)
    trt = tmp_path / "trt"  # TensorRT 10.3's Python bindings, as far as the script asks
    trt.mkdir(exist_ok=True)
    (trt / "tensorrt.py").write_text("__version__ = '10.3.0.30'\n")
    env = {"PATH": "/usr/bin:/bin", "TRTEXEC": str(fake), "HOME": str(tmp_path), "PYTHONPATH": str(trt)}
    p = subprocess.run(["bash", str(JETSON / "build_engines.sh"), *args], capture_output=True, text=True, env=env)
    calls = log.read_text().splitlines() if log.exists() else []
    return p, calls


def test_build_engines_int8_strongly_typed_where_quantized(tmp_path):
    pytest.importorskip("onnx")
    bundle = tmp_path / "b"
    _fake_bundle(bundle)
    p, calls = _run_build(tmp_path, str(bundle), "int8")
    assert p.returncode == 0, p.stderr
    assert len(calls) == 3
    for stage, src in (("encoder", "encoder.int8-trt.onnx"), ("gate", "gate.int8-trt.onnx"), ("decoder", "decoder.onnx")):
        call = next(c for c in calls if f"/{stage}." in c.split()[0])
        assert f"--onnx={bundle}/{src}" in call
        if stage == "decoder":  # kept float: FP16, no INT8 without Q/DQ scales
            assert "--fp16" in call and "--int8" not in call and "--stronglyTyped" not in call
        else:
            assert "--stronglyTyped" in call and "--int8" not in call and "--fp16" not in call
        assert "--timingCacheFile=" in call and "--memPoolSize=workspace:1024M" in call
        assert "--exportLayerInfo=" in call and "--profilingVerbosity=detailed" in call
    engines = sorted(x.name for x in bundle.glob("*.engine"))
    from edgevos.export.tensorrt import parse_engine_name

    parsed = [parse_engine_name(e) for e in engines]
    assert all(parsed) and {d["stage"] for d in parsed} == {"encoder", "gate", "decoder"}
    assert {d["tag"] for d in parsed} == {"int8"} and {(d["h"], d["w"]) for d in parsed} == {("256", "448")}
    assert {d["ver"] for d in parsed} == {"10.3.0"}


def test_build_engines_fp16_and_dla(tmp_path):
    pytest.importorskip("onnx")
    bundle = tmp_path / "b"
    _fake_bundle(bundle)
    p, calls = _run_build(tmp_path, str(bundle), "fp16")
    assert p.returncode == 0, p.stderr
    assert all("--fp16" in c and "--stronglyTyped" not in c and ".int8-trt." not in c for c in calls)
    p, calls = _run_build(tmp_path, str(bundle), "fp16", "1")
    assert p.returncode == 0, p.stderr
    dla = calls[3:]
    assert len(dla) == 3 and all("--useDLACore=1" in c and "--allowGPUFallback" in c and "--int8" not in c for c in dla)
    assert any(".fp16-dla1.trt" in e.name for e in bundle.glob("*.engine"))
    p, _ = _run_build(tmp_path, str(bundle), "int8", "1")
    assert p.returncode == 2 and "fp16 1" in p.stderr


def test_build_engines_rejects_bad_input(tmp_path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    p, _ = _run_build(tmp_path, str(bundle), "int4")
    assert p.returncode == 2 and "int4" in p.stderr
    p, _ = _run_build(tmp_path, str(tmp_path / "nope"), "int8")
    assert p.returncode == 1 and "not an edgevos bundle" in p.stderr
    p, _ = _run_build(tmp_path)
    assert p.returncode == 2 and "Usage" in p.stdout


def _gst():
    try:
        from edgevos.runtime.sources import gst

        return gst()
    except Exception as exc:
        pytest.skip(f"GStreamer Python bindings unavailable: {exc}")


def _localise(desc, Gst):
    """Replace elements missing here by a local stand-in of the same role, without their
    properties (keeping names); drop the NVMM memory feature from caps."""
    out = []
    for seg in re.split(r"\s!\s", desc.replace("(memory:NVMM)", "")):
        words = seg.split()
        factory = words[0]
        if "/" in factory or Gst.ElementFactory.find(factory) is not None:
            out.append(seg)
            continue
        name = next((w for w in words if w.startswith("name=")), "")
        if factory.endswith("src"):
            sub = "videotestsrc"
        elif factory.endswith("sink"):
            sub = "fakesink"
        elif factory.endswith("conv"):  # nvvidconv: a converter
            sub = "videoconvert"
        elif "dec" in factory:  # nvv4l2decoder, nvjpegdec
            sub = "decodebin"
        elif factory.endswith("enc"):  # nvv4l2h264enc
            sub = "x264enc" if Gst.ElementFactory.find("x264enc") else "identity"
        else:
            sub = "identity"
        out.append(f"{sub} {name}".strip())
    return " ! ".join(out)


@pytest.mark.gst
def test_pipeline_presets_parse():
    from edgevos.jetson import pipelines as jp

    Gst = _gst()
    for name, fn in jp.PRESETS.items():
        desc = fn("rtsp://cam:8554/x") if name == "rtsp" else fn("clip.mp4") if name in ("file", "h264_file_sink") else fn()
        pipe = Gst.parse_launch(_localise(desc, Gst))
        assert pipe.get_by_name("sink") is not None or pipe.get_by_name("src") is not None, name
        pipe.set_state(Gst.State.NULL)
