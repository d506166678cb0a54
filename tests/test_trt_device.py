"""Stage outputs stay on the device between TensorRT stages: a G-FRTM-fast step on the TensorRT
backend (stand-in TensorRT and libcudart, see trt_fakes) copies to the host only what the step
program reads (the stride-16 features of the target model, the gate's p_gate, the logits) and
from the host only what the host made (the frame, the target model's score)."""
import dataclasses
import gc
import sys

import numpy as np
import pytest

from trt_fakes import FakeCudaLib, add_fake_runtime, engine_io, fake_tensorrt

torch = pytest.importorskip("torch")

SIZE = (64, 128)


@pytest.fixture(scope="module")
def gfrtm_model():
    from edgevos.models.registry import get_family

    torch.manual_seed(0)
    return get_family("gfrtm").build(input_size=SIZE)


def _engine_bundle(root, specs, tag="x", family="gfrtm"):
    """A bundle whose TensorRT int8 engines are fake engines with the stages' I/O."""
    from edgevos.bundle import add_files, write_bundle

    root.mkdir()
    files, engines = {}, {}
    for s in specs:
        (root / f"{s.name}.onnx").write_bytes(b"onnx " + s.name.encode())
        files[s.name] = {"fp32": root / f"{s.name}.onnx"}
    write_bundle(root, family=family, config={}, input_size=SIZE, normalization={}, specs=specs, files=files)
    for s in specs:
        p = root / f"{s.name}.int8.trt10.3.0.sm87x16.{SIZE[0]}x{SIZE[1]}.engine"
        p.write_bytes(f"{tag}:{s.name}".encode())
        engines[s.name] = {"trt-int8": p}
    add_files(root, engines)
    return {f"{tag}:{s.name}".encode(): (engine_io(s), 1 << 16) for s in specs}


def _maker(tmp_path, monkeypatch, specs, family):
    from edgevos.jetson.trtinfo import CudaRuntime
    from edgevos.runtime.trt_backend import TrtBackend

    io = _engine_bundle(tmp_path / "b", specs, family=family)
    monkeypatch.setitem(sys.modules, "tensorrt", add_fake_runtime(fake_tensorrt(), io))
    made = []

    def make(integrated=0, **kwargs):
        lib = FakeCudaLib(integrated=integrated)
        b = TrtBackend(tmp_path / "b", "int8", cuda=CudaRuntime(lib), **kwargs)
        made.append(b)
        return b, lib

    return make, made


@pytest.fixture
def trt_backend(tmp_path, monkeypatch, gfrtm_model):
    """make(**kwargs) -> (TrtBackend on fake engines of the G-FRTM-fast stages, its FakeCudaLib)."""
    make, made = _maker(tmp_path, monkeypatch, gfrtm_model.stage_specs(), "gfrtm")
    yield make
    for b in made:
        b.close()


def _program(backend, model, tau):
    from edgevos.models.registry import get_family

    return get_family("gfrtm").make_program(backend, dataclasses.asdict(model.config), tau=tau, num_augmentations=0)


def _frames():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (60, 100, 3), dtype=np.uint8) for _ in range(4)]
    mask = np.zeros((60, 100), np.uint8)
    mask[10:40, 20:60] = 1
    return frames, mask


def _nbytes(backend, stage, name):
    t = {t.name: t for t in backend.spec(stage).inputs + backend.spec(stage).outputs}[name]
    return int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize


def _copies(lib, kind):
    return sorted(n for k, n in lib.copies if k == kind)


def test_computed_step_copies_only_what_the_program_reads(trt_backend, gfrtm_model):
    """tau = 1 (FRTM-fast): encoder_low -> encoder_high -> target model (host) -> decoder_full."""
    from edgevos.jetson.trtinfo import D2H, D2D, H2D

    b, lib = trt_backend()
    prog = _program(b, gfrtm_model, tau=1.0)
    frames, mask = _frames()
    prog.start(frames[0], mask)
    for frame in frames[1:]:
        lib.copies.clear()
        r = prog.step(frame)
        assert not r.reused
        # host -> device: the frame and the target model's score; device -> host: the stride-16
        # features the target model reads and the logits.  f4, f8, f32 and r8 stay on the device.
        assert _copies(lib, H2D) == sorted([_nbytes(b, "encoder_low", "image"), _nbytes(b, "decoder_full", "score")])
        assert _copies(lib, D2H) == sorted([_nbytes(b, "encoder_high", "f16"), _nbytes(b, "decoder_full", "logits")])
        assert _copies(lib, D2D) == []


def test_discrete_gpu_maps_no_host_memory(trt_backend, gfrtm_model):
    b, lib = trt_backend()
    prog = _program(b, gfrtm_model, tau=0.5)
    frames, mask = _frames()
    prog.start(frames[0], mask)
    prog.step(frames[1])
    assert not b.mapped and lib.mapped_allocs == 0 and "cudaHostGetDevicePointer" not in lib.calls


@pytest.mark.parametrize("tau", [1.0, 0.0])
def test_integrated_gpu_step_makes_no_copies(trt_backend, gfrtm_model, tau):
    """On a Jetson's shared DRAM outputs and host inputs are mapped page-locked memory: the
    engine writes where the host reads, so a step runs no cudaMemcpy at all."""
    b, lib = trt_backend(integrated=1)
    assert b.mapped
    prog = _program(b, gfrtm_model, tau=tau)
    frames, mask = _frames()
    prog.start(frames[0], mask)
    lib.copies.clear()
    mallocs = lib.calls.get("cudaMalloc", 0)
    for frame in frames[1:]:
        prog.step(frame)
    assert lib.copies == []
    assert lib.calls.get("cudaMalloc", 0) == mallocs == 1, "device memory: only the shared activation block"
    outputs = sum(len(s.output_names) for s in b.specs.values())
    assert lib.mapped_allocs >= outputs and lib.calls["cudaHostGetDevicePointer"] == lib.mapped_allocs
    b.close()
    assert lib.host_bytes == 0 and lib.device_bytes == 0


@pytest.mark.parametrize("tau", [1.0, 0.0, 0.5])
def test_integrated_and_discrete_give_the_same_results(trt_backend, gfrtm_model, tau):
    frames, mask = _frames()
    results = []
    for integrated in (1, 0):
        b, lib = trt_backend(integrated=integrated)
        prog = _program(b, gfrtm_model, tau=tau)
        rs = [prog.start(frames[0], mask)] + [prog.step(f) for f in frames[1:]]
        results.append([(r.mask, r.model_probs, r.p_gate, r.reused) for r in rs])
    for (m1, p1, g1, u1), (m2, p2, g2, u2) in zip(*results):
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(p1, p2)
        assert (g1, u1) == (g2, u2)


def test_reuse_step_copies_only_what_the_program_reads(trt_backend, gfrtm_model):
    """tau = 0: encoder_low -> gate (p_gate read on the host) -> decoder_reuse, one object."""
    from edgevos.jetson.trtinfo import D2H, H2D

    b, lib = trt_backend()
    prog = _program(b, gfrtm_model, tau=0.0)
    frames, mask = _frames()
    prog.start(frames[0], mask)
    lib.copies.clear()
    r = prog.step(frames[1])
    assert r.reused and r.p_gate is not None
    score = _nbytes(b, "gate", "prev_score")
    assert _copies(lib, H2D) == sorted([_nbytes(b, "encoder_low", "image"), score, score])
    assert _copies(lib, D2H) == sorted([_nbytes(b, "gate", "p_gate"), _nbytes(b, "decoder_reuse", "logits")])


@pytest.mark.parametrize("tau", [1.0, 0.0, 0.5])
def test_device_outputs_give_the_host_copy_results(trt_backend, gfrtm_model, tau):
    """The program sees the same numbers with outputs kept on the device as with every output
    copied to the host (the fake engines' outputs depend on the inputs they were bound to)."""
    frames, mask = _frames()
    results = []
    for keep in (True, False):
        b, lib = trt_backend(device_outputs=keep)
        prog = _program(b, gfrtm_model, tau=tau)
        rs = [prog.start(frames[0], mask)] + [prog.step(f) for f in frames[1:]]
        results.append([(r.mask, r.model_probs, r.p_gate, r.reused) for r in rs])
    for (m1, p1, g1, u1), (m2, p2, g2, u2) in zip(*results):
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(p1, p2)
        assert (g1, u1) == (g2, u2)


def test_slowfast_program_runs_the_same_with_device_outputs(tmp_path, monkeypatch):
    """SlowFast writes its ring outputs into ring slots (host) and reads the rest like numpy."""
    from edgevos.jetson.trtinfo import D2H, H2D
    from edgevos.models.registry import get_family

    torch.manual_seed(0)
    model = get_family("slowfast").build(input_size=SIZE, preset="3-7")
    make, made = _maker(tmp_path, monkeypatch, model.stage_specs(), "slowfast")
    frames, mask = _frames()
    results, copies = [], []
    for keep in (True, False):
        b, lib = make(device_outputs=keep)
        prog = get_family("slowfast").make_program(b, dataclasses.asdict(model.config))
        rs = [prog.start(frames[0], mask)]
        lib.copies.clear()
        rs += [prog.step(f) for f in frames[1:]]
        results.append([(r.mask, r.model_probs) for r in rs])
        copies.append(sum(1 for k, _ in lib.copies if k in (H2D, D2H)))
    for (m1, p1), (m2, p2) in zip(*results):
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(p1, p2)
    assert copies[0] < copies[1], copies
    for b in made:
        b.close()


def test_no_device_allocation_per_step_and_close_frees_everything(trt_backend, gfrtm_model):
    b, lib = trt_backend()
    prog = _program(b, gfrtm_model, tau=0.5)
    frames, mask = _frames()
    prog.start(frames[0], mask)
    prog.step(frames[1])
    before = lib.calls["cudaMalloc"]
    for frame in frames[1:] * 3:
        prog.step(frame)
    assert lib.calls["cudaMalloc"] == before, "output blocks come back to the pool and are reused"
    held = prog.objects[0].r8  # a device-resident refiner state the program keeps
    b.close()
    assert lib.device_bytes == 0, "close() frees every device block, also those still held"
    # a handle outliving its backend was copied to the host on close and still reads
    assert np.asarray(held).shape == tuple(b.spec("decoder_full").outputs[1].shape)
    del held, prog
    gc.collect()
    assert lib.device_bytes == 0


def _toy(tmp_path, monkeypatch, **kwargs):
    from edgevos.jetson.trtinfo import CudaRuntime
    from edgevos.runtime.trt_backend import TrtBackend
    from edgevos.stages import StageSpec, TensorSpec

    specs = [StageSpec("encoder", (TensorSpec("image", (1, 3, 8, 8)),), (TensorSpec("feat", (1, 4, 4, 4)),), "e"),
             StageSpec("head", (TensorSpec("feat", (1, 4, 4, 4)),), (TensorSpec("logits", (1, 1, 8, 8)),), "h")]
    io = _engine_bundle(tmp_path / "toy", specs, tag="toy")
    monkeypatch.setitem(sys.modules, "tensorrt", add_fake_runtime(fake_tensorrt(), io))
    lib = FakeCudaLib()
    return TrtBackend(tmp_path / "toy", "int8", cuda=CudaRuntime(lib), **kwargs), lib


def test_held_output_is_not_overwritten_by_the_next_call(tmp_path, monkeypatch):
    from edgevos.jetson.trtinfo import H2D

    b, lib = _toy(tmp_path, monkeypatch)
    first = b.run("encoder", {"image": np.full((1, 3, 8, 8), 5, np.float32)})["feat"]
    second = b.run("encoder", {"image": np.full((1, 3, 8, 8), 7, np.float32)})["feat"]
    assert float(np.asarray(first).max()) == 6.0 and float(np.asarray(second).min()) == 8.0
    lib.copies.clear()
    logits = b.run("head", {"feat": first})["logits"]  # bound where it lies: no copy in
    assert [k for k, _ in lib.copies] == []
    np.testing.assert_array_equal(np.asarray(logits), np.full((1, 1, 8, 8), 7, np.float32))
    # a host array for the same input is copied in
    lib.copies.clear()
    b.run("head", {"feat": np.zeros((1, 4, 4, 4), np.float32)})
    assert [k for k, _ in lib.copies] == [H2D]
    b.close()


def test_device_output_reads_like_a_read_only_array(tmp_path, monkeypatch):
    b, lib = _toy(tmp_path, monkeypatch)
    feat = b.run("encoder", {"image": np.ones((1, 3, 8, 8), np.float32)})["feat"]
    assert feat.shape == (1, 4, 4, 4) and feat.dtype == np.float32 and feat.ndim == 4 and len(feat) == 1
    assert lib.copies[-1][0] != 2, "shape and dtype need no copy"
    assert float(feat[0, 0, 0, 0]) == 2.0 and float((feat * 2 + 1).max()) == 5.0 and float((1 - feat).min()) == -1.0
    assert feat.reshape(-1).shape == (64,) and np.stack([feat, feat]).shape == (2, 1, 4, 4, 4)
    with pytest.raises(ValueError):
        np.asarray(feat)[0, 0, 0, 0] = 3.0  # its device copy would no longer match
    b.close()


def test_out_arrays_get_the_outputs_on_the_host(tmp_path, monkeypatch):
    from edgevos.jetson.trtinfo import D2H, H2D

    b, lib = _toy(tmp_path, monkeypatch)
    dst = np.zeros((1, 4, 4, 4), np.float32)
    lib.copies.clear()
    res = b.run("encoder", {"image": np.full((1, 3, 8, 8), 2, np.float32)}, out={"feat": dst})
    assert res["feat"] is dst and float(dst.min()) == 3.0
    assert [k for k, _ in lib.copies] == [H2D, D2H]
    b.close()


def test_host_outputs_backend_copies_every_output(tmp_path, monkeypatch):
    from edgevos.jetson.trtinfo import D2H, H2D

    b, lib = _toy(tmp_path, monkeypatch, device_outputs=False)
    lib.copies.clear()
    feat = b.run("encoder", {"image": np.ones((1, 3, 8, 8), np.float32)})["feat"]
    assert type(feat) is np.ndarray and [k for k, _ in lib.copies] == [H2D, D2H]
    b.close()


def test_mapped_memory_fills_out_arrays_and_host_outputs_without_copies(tmp_path, monkeypatch):
    b, lib = _toy(tmp_path, monkeypatch, mapped=True)
    dst = np.zeros((1, 4, 4, 4), np.float32)
    res = b.run("encoder", {"image": np.full((1, 3, 8, 8), 2, np.float32)}, out={"feat": dst})
    assert res["feat"] is dst and float(dst.min()) == 3.0
    first = b.run("encoder", {"image": np.full((1, 3, 8, 8), 5, np.float32)})["feat"]
    logits = b.run("head", {"feat": first})["logits"]  # bound where it lies
    b.run("encoder", {"image": np.full((1, 3, 8, 8), 9, np.float32)})
    assert float(np.asarray(first).max()) == 6.0 and float(np.asarray(logits).min()) == 7.0
    assert lib.copies == [] and lib.mapped_allocs > 0
    b.close()
    assert float(np.asarray(first).max()) == 6.0  # copied to the host before its block was freed
    assert lib.host_bytes == 0
