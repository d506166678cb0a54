"""SlowFast streaming on ONNX Runtime: stages write ring items in place, and that changes nothing."""
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxslim")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from edgevos.cli import main

    out = tmp_path_factory.mktemp("sf") / "bundle"
    rc = main(["export", "--family", "slowfast", "--input-size", "64x96", "--precision", "fp32",
               "--calib", "test://", "--calib-frames", "8", "--no-parity", "--threads", "1", "--out", str(out),
               "--quiet"])
    assert rc == 0
    return out


def _frames(n):
    from edgevos.data import SyntheticConfig, make_sequence

    seq = make_sequence(SyntheticConfig(height=96, width=144, num_frames=n, num_objects=2, seed=3))
    return [seq.frame(i) for i in range(n)], seq.mask(0)


def _items(ring):
    lanes = getattr(ring, "lanes", [ring])
    return np.concatenate([lane.window(len(lane)) for lane in lanes if len(lane)])


def test_in_place_ring_writes_match_copying_and_sliding_rings(bundle, monkeypatch):
    """Zero-copy (mirrored rings, stage outputs bound to ring slots) vs the plain path (sliding rings,
    outputs copied in): identical masks and probabilities, computed and reused frames alike."""
    from edgevos import ring as ring_mod
    from edgevos.backend import Backend
    from edgevos.runtime.ort_backend import OrtBackend
    from edgevos.runtime.session import Session

    fast = Session.from_bundle(bundle, precision="fp32", tau=0.5, threads=1)
    assert {r.layout for r in fast.program.rings.values()} == {"mirrored"}
    monkeypatch.setattr(ring_mod, "_mirrored_storage", lambda *a: None)
    plain = Session.from_bundle(bundle, precision="fp32", tau=0.5, threads=1)
    assert {r.layout for r in plain.program.rings.values()} == {"sliding"}
    monkeypatch.setattr(plain.backend, "_run_into", Backend._run_into.__get__(plain.backend, OrtBackend))

    written = []  # (stage, output, array given, array returned) of the zero-copy session
    run = fast.backend.run

    def spy(stage, feeds, out=None):
        res = run(stage, feeds, out)
        for name, a in (out or {}).items():
            written.append((stage, name, a, res[name]))
        return res

    fast.backend.run = spy
    frames, mask = _frames(30)
    a, b = fast.start(frames[0], mask), plain.start(frames[0], mask)
    reused = 0
    for i, f in enumerate(frames[1:]):
        fast.tau = plain.tau = 0.0 if i % 3 else 1.0  # runs of two reused frames (tau changes between frames)
        a = fast.step(f)
        b = plain.step(f)
        assert a.reused == b.reused
        reused += a.reused
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
        for key, ring in fast.program.rings.items():  # the rings hold the same items
            np.testing.assert_array_equal(_items(ring), _items(plain.program.rings[key]))
    # every ring is filled by the stage that computes its items, in place
    sources = {name for _, name in fast.program.ring_source.values()}
    assert {name for _, name, _, _ in written} == sources
    assert all(given is got for _, _, given, got in written)
    rings_mem = [lane._data for r in fast.program.rings.values() for lane in getattr(r, "lanes", [r])]
    assert all(any(np.shares_memory(given, m) for m in rings_mem) for _, _, given, _ in written)
    assert 0 < reused < len(frames) - 1, "the test needs computed and reused frames"


def test_out_arrays_are_checked(bundle):
    from edgevos.errors import InputError
    from edgevos.runtime.session import Session

    s = Session.from_bundle(bundle, precision="fp32", threads=1)
    spec = s.backend.spec("frame_stem")
    feeds = {"image": np.zeros(spec.inputs[0].shape, np.float32)}
    with pytest.raises(InputError, match="no output 'f4'"):
        s.backend.run("frame_stem", feeds, {"f4": np.zeros(1, np.float32)})
    t = spec.outputs[0]
    with pytest.raises(InputError, match=f"output '{t.name}' is float32"):
        s.backend.run("frame_stem", feeds, {t.name: np.zeros((1,) + tuple(t.shape), np.float32)})
    with pytest.raises(InputError, match="C-contiguous"):
        s.backend.run("frame_stem", feeds, {t.name: np.zeros(tuple(t.shape)[::-1], np.float32).T})
    dst = np.full(t.shape, 7.0, np.float32)
    res = s.backend.run("frame_stem", feeds, {t.name: dst})
    assert res[t.name] is dst
    np.testing.assert_array_equal(dst, s.backend.run("frame_stem", feeds)[t.name])


def test_binding_table_covers_a_full_period_and_wraps(bundle, monkeypatch):
    """The per-frame binding table: built at start without moving the rings, and right past its wrap-around."""
    from edgevos import ring as ring_mod
    from edgevos.runtime.session import Session

    fast = Session.from_bundle(bundle, precision="fp32", tau=1.0, threads=1)
    prog = fast.program
    assert prog._period and all(r.layout == "mirrored" for r in prog.rings.values())
    monkeypatch.setattr(ring_mod, "_mirrored_storage", lambda *a: None)
    plain = Session.from_bundle(bundle, precision="fp32", tau=1.0, threads=1)
    assert not plain.program._period
    frames, mask = _frames(24)
    fast.start(frames[0], mask)
    plain.start(frames[0], mask)
    assert len(prog._table) == prog._period
    for key, ring in prog.rings.items():  # building the table left every ring as the fill left it
        assert ring.pushes == ring.capacity
        np.testing.assert_array_equal(_items(ring), _items(plain.program.rings[key]))
    for i in range(prog._period + 12):
        f = frames[1 + i % (len(frames) - 1)]
        a, b = fast.step(f), plain.step(f)
        if i % 7 == 0 or i >= prog._period - 2:
            np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
    assert prog.state.steps == prog._period + 12
    for key, ring in prog.rings.items():
        np.testing.assert_array_equal(_items(ring), _items(plain.program.rings[key]))


def test_bench_row_streams_slowfast_through_the_call_counter(bundle):
    """`edgevos bench` wraps the backend to count stage calls: the wrapper must pass the ring slots on."""
    from edgevos.bench import run_row
    from edgevos.data import SyntheticConfig, make_sequence
    from edgevos.runtime.session import Session

    seq = make_sequence(SyntheticConfig(height=96, width=144, num_frames=8, num_objects=1, seed=2))
    row = run_row(lambda: Session.from_bundle(bundle, precision="fp32", threads=1), [seq], warmup=1)
    assert row["frames"] == 8 and row["fps"] > 0
    assert row["stage_calls_per_frame"]["fast_body"] == 1 and "rings" in row["stage_ms"]


def test_slowfast_int8_export_keeps_its_gate_in_float(tmp_path):
    """The reuse gate's output is a decision against tau; the family keeps that stage float in INT8."""
    import json

    from edgevos.cli import main
    from edgevos.models.registry import get_family

    assert get_family("slowfast").keep_float == ("gate",)
    out = tmp_path / "bundle"
    rc = main(["export", "--family", "slowfast", "--input-size", "64x96", "--precision", "int8-cpu", "--calib",
               "test://", "--calib-frames", "8", "--calib-tau", "0", "--min-calib-samples", "1", "--no-parity",
               "--no-speed-check", "--threads", "1", "--out", str(out), "--quiet"])
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    stages = manifest["quantization"]["stages"]
    assert manifest["quantization"]["keep_float"]["int8-cpu"] == ["gate"]
    assert stages["gate"]["int8-cpu"] == {"quantized": False, "reason": "keep_float"}
    assert stages["decoder_reuse"]["int8-cpu"]["quantized"]  # the other reuse-path stage is INT8
    assert "gate.int8-cpu.onnx" not in manifest["files"] and not (out / "gate.int8-cpu.onnx").exists()
    assert "decoder_reuse.int8-cpu.onnx" in manifest["files"]
