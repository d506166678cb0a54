"""Shared pieces of the reliability tests: a tiny ORT bundle (exported once per test
process, in a child process) and a tiny random-weight PyTorch model."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLE_SIZE = "128x224"  # at 64x128 the synthetic calibration objects vanish at stride 16
_BUNDLE = {}


def ort_bundle(tmp_path_factory) -> Path:
    """An fp32 G-FRTM bundle at 128x224 with random weights, exported in a spawned process
    (the TorchScript tracer crashes in a process where GStreamer was initialised)."""
    if "path" not in _BUNDLE:
        from edgevos import export_bundle

        out = tmp_path_factory.mktemp("reliability_bundle") / "gfrtm"
        log = out.parent / "export.log"
        try:
            export_bundle(out, "gfrtm", precisions=["fp32"], calib_frames=4, input_size=BUNDLE_SIZE, parity=False,
                          progress=False, isolate=True, log=log)
        except Exception as exc:
            pytest.fail(f"export of the test bundle failed: {exc}\n{log.read_text() if log.is_file() else ''}")
        _BUNDLE["path"] = out
    return _BUNDLE["path"]


def bundle_copy(tmp_path_factory, dest: Path) -> Path:
    shutil.copytree(ort_bundle(tmp_path_factory), dest, symlinks=True)
    return dest


def tiny_model():
    import torch

    from edgevos.models.registry import get_family

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return get_family("gfrtm").build(input_size=(64, 128))


def gst_or_skip():
    try:
        from edgevos.runtime.sources import gst

        return gst()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"GStreamer with PyGObject is not available: {exc}")


def gst_write(desc: str) -> None:
    """Run a gst-launch description to its end of stream."""
    Gst = gst_or_skip()
    pipeline = Gst.parse_launch(desc)
    pipeline.set_state(Gst.State.PLAYING)
    msg = pipeline.get_bus().timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    assert msg is not None and msg.type == Gst.MessageType.EOS, desc


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))
