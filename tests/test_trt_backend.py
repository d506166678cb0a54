"""The TensorRT backend's host side with stand-ins for TensorRT and libcudart: the CUDA runtime
it uses (ctypes on libcudart.so.12, nothing from pip), the copies a stage call makes and one
activation block shared by every stage.  Engines compute nothing here: outputs are not checked."""
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from trt_fakes import FakeCudaLib, add_fake_runtime, fake_tensorrt

ROOT = Path(__file__).resolve().parents[1]


def _engine_bundle(tmp_path):
    from edgevos.bundle import add_files, write_bundle
    from edgevos.stages import StageSpec, TensorSpec

    root = tmp_path / "b"
    root.mkdir()
    specs = [StageSpec("encoder", (TensorSpec("image", (1, 3, 8, 8)),), (TensorSpec("feat", (1, 4, 4, 4)),), "e"),
             StageSpec("head", (TensorSpec("feat", (1, 4, 4, 4)),), (TensorSpec("logits", (1, 1, 8, 8)),), "h")]
    files = {}
    for s in specs:
        (root / f"{s.name}.onnx").write_bytes(b"onnx " + s.name.encode())
        files[s.name] = {"fp32": root / f"{s.name}.onnx"}
    write_bundle(root, family="toy", config={}, input_size=(8, 8), normalization={}, specs=specs, files=files)
    engines = {}
    for s in specs:
        p = root / f"{s.name}.int8.trt10.3.0.sm87x16.8x8.engine"
        p.write_bytes(s.name.encode())
        engines[s.name] = {"trt-int8": p}
    add_files(root, engines)
    io = {b"encoder": ([("image", (1, 3, 8, 8), "in"), ("feat", (1, 4, 4, 4), "out")], 1 << 20),
          b"head": ([("feat", (1, 4, 4, 4), "in"), ("logits", (1, 1, 8, 8), "out")], 3 << 20)}
    return root, io


@pytest.fixture
def backend(tmp_path, monkeypatch):
    from edgevos.jetson.trtinfo import CudaRuntime
    from edgevos.runtime.trt_backend import TrtBackend

    root, io = _engine_bundle(tmp_path)
    trt = add_fake_runtime(fake_tensorrt(), io)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cuda", None)  # any cuda-python import fails
    lib = FakeCudaLib()
    b = TrtBackend(root, "int8", cuda=CudaRuntime(lib))
    yield b, lib, trt
    b.close()


def test_cuda_runtime_is_libcudart_through_ctypes_not_cuda_python(backend):
    b, lib, trt = backend
    assert lib.calls["cudaSetDevice"] == 1 and lib.calls["cudaStreamCreate"] == 1
    text = "".join((ROOT / f).read_text() for f in ("runtime/trt_backend.py", "export/tensorrt.py", "jetson/trtinfo.py"))
    assert not re.search(r"^\s*(from|import) cuda\b", text, re.M), "no cuda-python import on the TensorRT path"


def test_trt_extra_pulls_no_cuda_python():
    text = (ROOT / "pyproject.toml").read_text()
    extra = re.search(r"^trt = \[([^\]]*)\]", text, re.M).group(1)
    assert "cuda-python" not in extra and "cuda_python" not in extra, extra


def test_stage_call_copies_inputs_in_outputs_out_once(backend):
    from edgevos.jetson.trtinfo import D2H, H2D

    b, lib, trt = backend
    lib.copies.clear()
    out = b.run("encoder", {"image": np.ones((1, 3, 8, 8), np.float32)})
    assert out["feat"].shape == (1, 4, 4, 4)
    assert lib.copies == [(H2D, 3 * 8 * 8 * 4)] and lib.calls["cudaStreamSynchronize"] == 1
    np.asarray(out["feat"])  # read on the host: copied out once
    np.asarray(out["feat"])
    assert lib.copies == [(H2D, 3 * 8 * 8 * 4), (D2H, 4 * 4 * 4 * 4)]


def test_stages_share_one_activation_block(backend):
    b, lib, trt = backend
    strategies = {c.strategy.name for c in trt.contexts}
    assert strategies == {"USER_MANAGED"}
    blocks = {c.scratch for c in trt.contexts}
    assert len(blocks) == 2 and len({ptr for ptr, _ in blocks}) == 1, blocks  # one pointer, each its own size
    assert b.scratch_bytes == 3 << 20
    # one cudaMalloc per output (2) plus the one shared block; a host input's buffer comes
    # when a host array is first fed to it
    assert lib.calls["cudaMalloc"] == 3
    b.run("encoder", {"image": np.ones((1, 3, 8, 8), np.float32)})
    assert lib.calls["cudaMalloc"] == 4 and lib.calls["cudaHostAlloc"] == 1


def test_tensorrt_10_0_shares_the_block_through_the_device_memory_property(tmp_path, monkeypatch):
    """TensorRT 10.0 has neither set_device_memory nor device_memory_size_v2: the shared block
    is set through context.device_memory and sized from device_memory_size."""
    from edgevos.jetson.trtinfo import CudaRuntime
    from edgevos.runtime.trt_backend import TrtBackend

    root, io = _engine_bundle(tmp_path)
    trt = add_fake_runtime(fake_tensorrt(), io, trt_10_0=True)  # the 10.0 API on the engines' version
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    b = TrtBackend(root, "int8", cuda=CudaRuntime(FakeCudaLib()))
    try:
        assert {c.strategy.name for c in trt.contexts} == {"USER_MANAGED"}
        assert len({c.scratch for c in trt.contexts}) == 1 and b.scratch_bytes == 3 << 20
        assert trt.contexts[0].scratch == (b.scratch, None)
    finally:
        b.close()


def test_engines_for_another_device_are_refused(tmp_path, monkeypatch):
    from edgevos.errors import BundleError
    from edgevos.jetson.trtinfo import CudaRuntime
    from edgevos.runtime.trt_backend import TrtBackend

    root, io = _engine_bundle(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorrt", add_fake_runtime(fake_tensorrt(), io))
    with pytest.raises(BundleError, match=r"'sm87x16'.*'sm87x8'.*edgevos build"):
        TrtBackend(root, "int8", cuda=CudaRuntime(FakeCudaLib(sms=8)))
