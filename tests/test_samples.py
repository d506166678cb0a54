"""Every sample in samples/ runs end to end on tiny inputs and writes what it promises.

The samples default to the shipped weights (``--weights default``); here they get
a small random checkpoint unless the shipped one is installed, and a 128x224 model
input, so the whole module stays fast on 2 CPU cores.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
SIZE = "128x224"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from edgevos.models.weights import WEIGHTS_DIR

    if (WEIGHTS_DIR / "gfrtm_default.pt").is_file():
        return "default"
    path = tmp_path_factory.mktemp("w") / "gfrtm_tiny.pt"
    code = ("import torch; torch.manual_seed(0)\n"
            "from edgevos.models.registry import get_family\n"
            "from edgevos.models.weights import save_checkpoint\n"
            f"save_checkpoint({str(path)!r}, 'gfrtm', get_family('gfrtm').build(input_size=(128, 224)))\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(), timeout=120)
    return str(path)


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("DISPLAY", None)
    return env


def _run(name, *args, cwd, timeout=240):
    p = subprocess.run([sys.executable, str(SAMPLES / name), *args], capture_output=True, text=True,
                       cwd=cwd, env=_env(), timeout=timeout)
    assert p.returncode == 0, f"{name} failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def test_samples_are_short_and_default_to_shipped_weights():
    names = sorted(p.name for p in SAMPLES.glob("*.py"))
    assert names == ["camera_demo.py", "embed_in_app.py", "export_int8.py", "reuse_gate_sweep.py", "segment_video.py"]
    for n in names:
        text = (SAMPLES / n).read_text()
        assert len(text.splitlines()) <= 75, f"{n} is longer than a sample should be"
        assert 'default="default"' in text, f"{n} must default to the shipped weights"
        assert text.startswith('"""'), f"{n} needs a docstring saying how to run it"


@pytest.mark.gst
def test_segment_video_generated_clip(tmp_path, weights):
    out = _run("segment_video.py", "--weights", weights, "--input-size", SIZE, "--frames", "8",
               "--out", "o", cwd=tmp_path)
    assert "steady FPS" in out
    assert (tmp_path / "o" / "overlay.mp4").stat().st_size > 1000
    assert len(list((tmp_path / "o" / "masks").glob("*.png"))) == 8


@pytest.mark.gst
def test_camera_demo_falls_back_to_test_source(tmp_path, weights):
    out = _run("camera_demo.py", "--source", "v4l2:///dev/video-nonexistent", "--weights", weights,
               "--input-size", SIZE, "--frames", "6", "--out", "cam.mp4", cwd=tmp_path)
    assert "using the synthetic test:// source" in out and "(6 frames)" in out
    assert (tmp_path / "cam.mp4").stat().st_size > 1000


def test_reuse_gate_sweep(tmp_path, weights):
    _run("reuse_gate_sweep.py", "--weights", weights, "--input-size", SIZE, "--frames", "6", "--tau", "1,0.5",
         "--out", "s", cwd=tmp_path)
    rows = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [r["tau"] for r in rows] == [1.0, 0.5]
    assert all(0 <= r["J&F"] <= 1 and r["fps"] > 0 for r in rows)
    assert rows[0]["reuse_rate"] == 0.0  # tau = 1 never reuses
    assert (tmp_path / "s" / "sweep.png").is_file()


def test_export_int8_parity_and_timing(tmp_path, weights):
    out = _run("export_int8.py", "--weights", weights, "--input-size", SIZE, "--calib-frames", "8",
               "--out", "bundle", cwd=tmp_path)
    assert "held-out mask IoU vs PyTorch" in out
    assert "int8-cpu" in out and "fp32" in out and "MB, all stages once" in out
    from edgevos.bundle import load_bundle

    assert {"fp32", "int8-cpu"} <= set(load_bundle(tmp_path / "bundle").precisions)


@pytest.mark.gst
def test_embed_in_app_loop_and_appsink_callback(tmp_path, weights):
    out = _run("embed_in_app.py", "--weights", weights, "--input-size", SIZE, "--frames", "5", cwd=tmp_path)
    published = [ln for ln in out.splitlines() if ln.strip().startswith("object pixels")]
    assert len(published) == 10  # 5 frames from the loop + 5 from the GStreamer callback
    assert "end of stream" in out
