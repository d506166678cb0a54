"""The bad-input matrix: every wrong input ends in an EdgevosError whose message names
the value and the fix (or in a documented recovery), never in a traceback from numpy,
ONNX Runtime, GStreamer or torch.

Already covered elsewhere (not repeated here): session basics in
tests/test_gfrtm.py::test_bad_input_gives_clear_errors (float/NaN frames, 2-channel
frames, wrong-size/empty/id>255 masks, size change); missing/empty/garbage/truncated
MP4 and truncated MKV in tests/test_gst_io.py; URI parsing in
tests/test_run_cli.py::test_uri_parsing_and_redaction; toy-bundle tamper/missing/extra/
newer/escape in tests/test_bundle.py; ENOSPC via a patched mask writer in
tests/test_run_cli.py::test_disk_full_while_writing_masks_stops_the_run_cleanly.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgevos.errors import BundleError, DependencyError, EdgevosError, InputError, SourceError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability_common import ROOT, bundle_copy, gst_or_skip, ort_bundle, tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def session():
    from edgevos.runtime.session import Session

    return Session.from_model(tiny_model(), tau=1.0, num_augmentations=0)


def _box_mask(h, w, obj=1, dtype=np.uint8):
    m = np.zeros((h, w), dtype)
    m[h // 4: h - h // 4, w // 4: w - w // 4] = obj
    return m


def _frame(h=48, w=80, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------ frames and masks (hypothesis)
DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64,
          np.bool_, np.complex64]


@st.composite
def frames(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    ndim = draw(st.integers(0, 4))
    dims = [draw(st.sampled_from([0, 1, 2, 3, 4, 7, 8, 9, 16, 33, 48])) for _ in range(ndim)]
    if ndim == 3 and draw(st.booleans()):
        dims[2] = 3
    elements = None
    if dtype.kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=dtype.itemsize * 8)
    return draw(hnp.arrays(dtype, tuple(dims), elements=elements))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(frame=frames())
def test_any_frame_is_accepted_or_input_error(session, frame):
    hw = frame.shape[:2] if frame.ndim >= 2 else (16, 16)
    try:
        res = session.start(frame, _box_mask(*hw))
    except InputError as exc:
        assert str(exc)
    else:
        assert frame.dtype == np.uint8 and frame.shape[2] == 3
        assert res.mask.shape == frame.shape[:2]
    # once started on a good frame, step() takes the same frames
    session.start(_frame(), _box_mask(48, 80))
    try:
        res = session.step(frame)
    except InputError as exc:
        assert str(exc)
    else:
        assert frame.shape == (48, 80, 3) and frame.dtype == np.uint8 and res.mask.shape == (48, 80)


MASK_VALUES = [-1, 0, 0, 0, 1, 1, 2, 3, 254, 255, 256, 1000]


@st.composite
def masks(draw):
    dtype = np.dtype(draw(st.sampled_from([np.uint8, np.int8, np.uint16, np.int32, np.int64, np.uint64,
                                           np.float32, np.float64, np.bool_])))
    shape = draw(st.sampled_from([(48, 80), (48, 80), (48, 80), (80, 48), (48, 81), (48, 80, 1), (48, 80, 3),
                                  (48,), (0, 0)]))
    if dtype == np.bool_:
        return draw(hnp.arrays(dtype, shape))
    values = [v for v in MASK_VALUES if np.can_cast(np.min_scalar_type(v), dtype) or dtype.kind == "f"]
    small = draw(hnp.arrays(dtype, (6, 10), elements=st.sampled_from(values)))
    # blocks of 8x8 pixels, so objects are large enough to survive resizing
    big = np.kron(small, np.ones((8, 8), dtype)) if len(shape) >= 2 else small.reshape(-1)
    if shape[:2] == (48, 80):
        return big.reshape(48, 80, *shape[2:]) if len(shape) == 2 or shape[2] == 1 else np.repeat(big[..., None], 3, -1)
    if len(shape) == 1:
        return big[: shape[0]]
    return np.zeros(shape, dtype)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(mask=masks())
def test_any_first_mask_is_accepted_or_input_error(session, mask):
    frame = _frame()
    try:
        res = session.start(frame, mask)
    except InputError as exc:
        assert str(exc)
        return
    m = np.asarray(mask).reshape(48, 80).astype(np.int64)
    assert res.object_ids == [int(i) for i in np.unique(m) if 0 < i < 255]
    session.step(frame)  # and the started session runs


# ------------------------------------------------------------------ frames and masks (named cases)
@pytest.mark.parametrize("frame, words", [
    (np.full((48, 80, 3), np.inf, np.float32), "NaN or infinite"),
    (np.zeros((48, 80, 4), np.uint8), "shape (48, 80, 4): pass an RGB image of shape (H, W, 3)"),
    (np.zeros((48, 80), np.uint8), "shape (48, 80)"),
    (np.zeros((48, 80, 3), np.uint16), "dtype is uint16: pass uint8 RGB"),
    ([[0, 0, 0]], "numpy array"),
    (np.zeros((4, 4, 3), np.uint8), "too small"),
])
def test_bad_frames_named(session, frame, words):
    with pytest.raises(InputError) as ei:
        session.start(frame, _box_mask(48, 80))
    assert words in str(ei.value)


@pytest.mark.parametrize("mask, words", [
    (np.zeros((48, 80), np.float32), "dtype is float32: pass integer object ids"),
    (np.full((48, 80), 255, np.uint8), "empty"),  # only void pixels
    (_box_mask(48, 80, obj=256, dtype=np.uint16), "ids must be 1..254"),
    (np.zeros((48, 80, 3), np.uint8), "pass a 2-D array"),
    ("mask.png", "numpy array"),
])
def test_bad_first_masks_named(session, mask, words):
    with pytest.raises(InputError) as ei:
        session.start(_frame(), mask)
    assert words in str(ei.value)


def test_tiny_object_is_named_and_rejected_start_leaves_session_untouched(session):
    session.start(_frame(), _box_mask(48, 80))
    before = (session.program.frame_hw, session.object_ids, session.program.frame_index)
    mask = _box_mask(48, 80)
    mask[0, 0] = 2  # one pixel: vanishes at the model's input size
    with pytest.raises(InputError, match="object vanished at the feature resolution"):
        session.start(_frame(64, 96), np.pad(mask, ((0, 16), (0, 16))))
    assert (session.program.frame_hw, session.object_ids, session.program.frame_index) == before
    assert session.step(_frame(seed=1)).mask.shape == (48, 80)  # still usable


def test_add_object_and_step_errors_after_start(session):
    session.start(_frame(), _box_mask(48, 80))
    with pytest.raises(InputError, match="no new object ids"):
        session.add_object(_frame(seed=2), _box_mask(48, 80))
    with pytest.raises(InputError, match="mask is 40x20 but frame is 80x48"):
        session.add_object(_frame(seed=2), np.ones((20, 40), np.uint8))
    with pytest.raises(InputError, match="size cannot change"):
        session.step(_frame(96, 160))
    assert session.step(_frame(seed=3)).object_ids == [1]


def test_mid_stream_resolution_change_through_the_run_loop(session, tmp_path):
    """A source whose frames change size: the run stops with a clear error, exit code 1,
    and every mask computed before the change is on disk."""
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import Frame, Source
    from edgevos.runtime.uri import parse_source

    class Changing(Source):
        def __iter__(self):
            for i in range(6):
                yield Frame(i, None, _frame(48, 80, i) if i < 4 else _frame(64, 96, i))

    sink = open_sink(f"masks://{tmp_path / 'm'}")
    s = run_pipeline(Changing(parse_source("test://")), [sink], session, first_mask=_box_mask(48, 80))
    assert s.exit_code == 1 and s.stopped_by == "error" and s.frames == 4
    assert "frame is 96x64 but the sequence started at 80x48" in s.error
    assert len(list((tmp_path / "m").glob("*.png"))) == 4


# ------------------------------------------------------------------ sources
@pytest.mark.parametrize("uri, words", [
    ("", "empty source URI"),
    ("   ", "empty source URI"),
    ("http://example.com/x.mp4", "unknown source URI scheme 'http://'"),
    ("file://", "has no path"),
    ("rtsp:///x", "has no host"),
    ("test://?frames=0", "frames must be >= 1"),
    ("test://?size=0x10", "HEIGHTxWIDTH"),
])
def test_bad_source_uris(uri, words):
    from edgevos.runtime.sources import open_source

    with pytest.raises(InputError) as ei:
        open_source(uri)
    assert words in str(ei.value)


def _decode_all(uri, **kw):
    from edgevos.runtime.sources import open_source

    return sum(1 for _ in open_source(uri, **kw))


def test_bad_video_files(tmp_path):
    gst_or_skip()
    from edgevos.runtime.sinks import open_sink

    good = tmp_path / "good.mp4"
    with open_sink(f"file://{good}", fps=10, overlay=False) as s:
        for i in range(8):
            s.write(i, _frame(48, 64, i), None)
    data = bytearray(good.read_bytes())
    ftyp_end = int.from_bytes(data[:4], "big")
    assert data.count(b"avc1", ftyp_end) >= 1  # the sample entries (the brands may list avc1 too)
    data[ftyp_end:] = data[ftyp_end:].replace(b"avc1", b"zzzz")  # valid MP4, codec nobody decodes
    (tmp_path / "codec.mp4").write_bytes(bytes(data))
    (tmp_path / "text.mp4").write_text("this is a text file, not a video\n" * 20)
    (tmp_path / "zero.mkv").write_bytes(b"")
    os.symlink(tmp_path / "gone.mp4", tmp_path / "dangling.mp4")
    cases = {
        "codec.mp4": ["missing a plug-in", "re-encode the video to H.264"],
        "text.mp4": ["appears to be a text file"],
        "zero.mkv": ["file is empty (0 bytes)"],
        "dangling.mp4": ["file not found"],
    }
    for name, words in cases.items():
        with pytest.raises(SourceError) as ei:
            _decode_all(f"file://{tmp_path / name}", timeout=5)
        for w in words:
            assert w in str(ei.value) and name in str(ei.value), str(ei.value)
    assert _decode_all(f"file://{good}") == 8


def test_device_that_is_not_a_camera():
    gst_or_skip()
    with pytest.raises(SourceError) as ei:
        _decode_all("v4l2:///dev/null", timeout=2)
    assert "/dev/null" in str(ei.value) and "v4l2" in str(ei.value)
    with pytest.raises(SourceError, match="/dev/video63 does not exist.*ls /dev/video"):
        _decode_all("v4l2://63")


# ------------------------------------------------------------------ bundles
def _edit_manifest(root: Path, fn) -> None:
    m = json.loads((root / "manifest.json").read_text())
    fn(m)
    (root / "manifest.json").write_text(json.dumps(m))


def test_real_bundle_faults_refuse_to_load(tmp_path_factory, tmp_path):
    from edgevos.bundle import sha256
    from edgevos.runtime.session import Session

    assert Session.from_bundle(ort_bundle(tmp_path_factory), threads=1).object_ids == []

    def fault(name, how):
        d = bundle_copy(tmp_path_factory, tmp_path / name)
        how(d)
        with pytest.raises(BundleError) as ei:
            Session.from_bundle(d, threads=1)
        return str(ei.value)

    def tamper(d):
        b = bytearray((d / "gate.onnx").read_bytes())
        b[len(b) // 2] ^= 1
        (d / "gate.onnx").write_bytes(bytes(b))

    def newer(d):
        _edit_manifest(d, lambda m: m.update(format_version=99, edgevos_version="9.0"))

    def link_out(d):  # same bytes (hash matches), but the file lives outside the bundle
        outside = tmp_path / "outside.onnx"
        outside.write_bytes((d / "gate.onnx").read_bytes())
        (d / "gate.onnx").unlink()
        os.symlink(outside, d / "gate.onnx")

    def dir_link(d):
        os.symlink("/etc", d / "etc")

    def escape(d):
        outside = tmp_path / "evil.onnx"
        outside.write_bytes((d / "gate.onnx").read_bytes())

        def edit(m):
            next(s for s in m["stages"] if s["name"] == "gate")["files"]["fp32"] = "../evil.onnx"
            m["files"]["../evil.onnx"] = sha256(outside)
        _edit_manifest(d, edit)

    msgs = {
        "missing": fault("missing", lambda d: (d / "decoder_full.onnx").unlink()),
        "extra": fault("extra", lambda d: (d / "notes.txt").write_text("x")),
        "tampered": fault("tampered", tamper),
        "newer": fault("newer", newer),
        "symlink": fault("symlink", link_out),
        "dirlink": fault("dirlink", dir_link),
        "escape": fault("escape", escape),
        "garbage": fault("garbage", lambda d: (d / "manifest.json").write_text("{not json")),
    }
    assert "'decoder_full.onnx' listed in the manifest is missing" in msgs["missing"]
    assert "'notes.txt' is not listed" in msgs["extra"]
    assert "'gate.onnx' does not match its SHA-256" in msgs["tampered"] and "re-export" in msgs["tampered"]
    assert "format_version 99" in msgs["newer"] and "upgrade edgevos" in msgs["newer"]
    assert "resolves outside the bundle" in msgs["symlink"]
    assert "'etc' is not listed" in msgs["dirlink"]
    assert "'../evil.onnx' points outside" in msgs["escape"]
    assert "unreadable" in msgs["garbage"]


def test_bundle_weights_file_cannot_escape(tmp_path_factory, tmp_path):
    d = bundle_copy(tmp_path_factory, tmp_path / "w")
    from edgevos.bundle import load_bundle

    b = load_bundle(d)
    b.manifest["weights_file"] = "../../etc/passwd"
    with pytest.raises(BundleError, match="points outside the bundle"):
        b.weights_path()
    b.manifest["weights_file"] = "gate.onnx"
    assert b.weights_path() == (d / "gate.onnx").resolve()
    b.manifest["weights_file"] = "unlisted.pt"
    with pytest.raises(BundleError, match="no SHA-256"):
        b.weights_path()


def test_engine_built_for_another_tensorrt_or_gpu(tmp_path_factory, tmp_path):
    """No TensorRT here: the check runs on engine names registered in a real bundle."""
    from edgevos.bundle import add_files, load_bundle
    from edgevos.runtime.trt_backend import TrtBackend, engine_mismatch

    d = bundle_copy(tmp_path_factory, tmp_path / "trt")
    b0 = load_bundle(d)
    engines = {}
    for spec in b0.specs:
        p = d / f"{spec.name}.int8.trt10.3.0.nvidia-jetson-orin-nano.128x224.engine"
        p.write_bytes(b"not really an engine")
        engines[spec.name] = {"trt-int8": p}
    add_files(d, engines)
    b = load_bundle(d)
    assert engine_mismatch(b, "trt-int8", "10.3.0.30", "NVIDIA Jetson Orin Nano") is None
    assert engine_mismatch(b, "trt-int8", "10.3.0", "unknown") is None
    why = engine_mismatch(b, "trt-int8", "10.7.0.23", "NVIDIA Jetson Orin Nano")
    assert "TensorRT 10.3.0" in why and "this is TensorRT 10.7.0" in why
    why = engine_mismatch(b, "trt-int8", "10.3.0.30", "NVIDIA Jetson AGX Orin")
    assert "'nvidia-jetson-orin-nano'" in why and "'nvidia-jetson-agx-orin'" in why
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(DependencyError, match=r"edgevos\[trt\]"):
            TrtBackend(d, precision="int8")


# ------------------------------------------------------------------ outputs
def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_output_directory_not_writable(tmp_path):
    """Root ignores permission bits: a read-only filesystem (or, without mount rights, a path
    under a regular file) is what really refuses writes."""
    gst_or_skip()
    from edgevos.runtime.sinks import open_sink

    ro = tmp_path / "ro"
    if _mount_tmpfs(ro, "ro,size=64k"):
        try:
            for uri in (f"masks://{ro}", f"file://{ro / 'out.mp4'}", f"json://{ro / 's.jsonl'}"):
                with pytest.raises(SourceError) as ei:
                    open_sink(uri)
                assert "not writable" in str(ei.value) and str(ro) in str(ei.value)
            with pytest.raises(SourceError, match="cannot create output directory .*Read-only file system"):
                open_sink(f"masks://{ro / 'sub'}")
        finally:
            _umount(ro)
    else:
        (tmp_path / "f").write_text("x")
        with pytest.raises(SourceError, match="cannot create output directory"):
            open_sink(f"masks://{tmp_path / 'f' / 'm'}")


def test_mask_directory_replaced_by_a_file_mid_run(session, tmp_path):
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    out = tmp_path / "m"
    masks = open_sink(f"masks://{out}")

    class Saboteur:  # a sink that swaps the mask folder for a file after frame 3
        uri, frames = "sabotage", 0

        def write(self, i, rgb, result):
            if i == 3:
                masks.flush()
                for p in out.iterdir():
                    p.unlink()
                out.rmdir()
                out.write_text("now a file")

        def close(self):
            pass

    s = run_pipeline(open_source("test://?frames=40&size=48x80&objects=1"), [masks, Saboteur()], session)
    assert s.exit_code == 1 and s.frames < 40
    assert f"writing masks to {out} failed" in s.error
    assert "File exists" in s.error or "Not a directory" in s.error


def test_disk_fills(session, tmp_path):
    """A 192 KiB tmpfs fills while masks and a video are written: the run stops with
    'No space left on device', every PNG on disk is complete, no temp file is left
    behind, and the unfinished video never appears under its final name."""
    gst_or_skip()
    from edgevos.data.masks import read_mask
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "size=192k"):
        pytest.skip("cannot mount a tmpfs here (not root); ENOSPC is covered by test_run_cli with a patched writer")
    try:
        sinks = [open_sink(f"masks://{disk / 'm'}"), open_sink(f"json://{disk / 's.jsonl'}")]
        s = run_pipeline(open_source("test://?frames=3000&size=96x160&objects=1"), sinks, session, warmup=0)
        assert s.exit_code == 1 and "No space left on device" in s.error and s.frames < 3000
        pngs = sorted((disk / "m").glob("*.png"))
        assert len(pngs) > 10 and not list((disk / "m").glob("*.tmp"))
        for p in pngs:
            assert read_mask(p).shape == (96, 160)
        for p in list((disk / "m").iterdir()) + [disk / "s.jsonl"]:
            p.unlink()
        video = disk / "out.mkv"
        sink = open_sink(f"file://{video}", fps=30, overlay=False)
        src = open_source("test://?frames=400&size=240x432&objects=1")  # noisy texture: compresses badly
        s = run_pipeline(src, [sink], session, warmup=0)
        assert s.exit_code == 1 and "No space left on the resource" in s.error, s.error
        assert "could not finalize the video" in s.error and "partial data left in" in s.error
        assert not video.exists()
        assert s.sink_frames == [0]  # what is on disk under the final name, not what was queued
        kept = []
        try:  # what fitted still plays; a cluster cut off mid-write is named so when it is read
            kept.extend(open_source(f"file://{next(disk.glob('out.partial-*.mkv'))}"))
        except SourceError as exc:
            assert "truncated" in str(exc), exc
        assert len(kept) > 10
    finally:
        _umount(disk)


def test_disk_fills_while_an_mp4_is_written(tmp_path):
    """The MP4 is written in fragments: when the disk fills, the partial file keeps playing
    up to the last fragment that fitted (a 3 MiB tmpfs, noise frames that compress badly: room for
    several fragments even with the encoder's look-ahead holding frames back)."""
    gst_or_skip()
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "size=3m"):
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        sink = open_sink(f"file://{disk / 'out.mp4'}", fps=30, overlay=False)
        rng = np.random.default_rng(0)
        with pytest.raises(SourceError, match="No space left"):
            for i in range(2000):
                sink.write(i, rng.integers(0, 255, (240, 432, 3), dtype=np.uint8), None)
        with pytest.raises(SourceError, match="partial data left in"):
            sink.close()
        assert sink.frames == 0 and not (disk / "out.mp4").exists()
        kept = list(open_source(f"file://{next(disk.glob('out.partial-*.mp4'))}"))
        assert len(kept) > 30, i
    finally:
        _umount(disk)


def test_a_video_write_error_already_raised_still_keeps_the_partial_file(tmp_path, monkeypatch):
    """Once a frame failed, no later frame is pushed and close() does not finalize, even when
    write() has already raised that failure: finalizing rewrites the MP4's head to span the
    whole file and then needs room for the index at its end, so on a full disk it turned the
    playable fragments into a file without an index (the flake of the test above: it happened
    whenever no second frame failed after the first error was raised)."""
    gst_or_skip()
    from edgevos.runtime.sinks import VideoSink, open_sink
    from edgevos.runtime.sources import open_source

    real = VideoSink._encode
    pushed = []

    def encode(self, frame_index, rgb, mask, lines):
        if frame_index == 30:
            raise SourceError(f"{self.uri}: output failed at frame 30: No space left on the resource.")
        real(self, frame_index, rgb, mask, lines)
        pushed.append(frame_index)

    monkeypatch.setattr(VideoSink, "_encode", encode)
    sink = open_sink(f"file://{tmp_path / 'out.mp4'}", fps=30, overlay=False)
    rng = np.random.default_rng(0)
    with pytest.raises(SourceError, match="No space left"):
        for i in range(200):
            sink.write(i, rng.integers(0, 255, (96, 160, 3), dtype=np.uint8), None)
            if i >= 30:
                sink._queue.join()  # the worker has met frame 30: the next write raises its error
    with pytest.raises(SourceError, match="partial data left in"):
        sink.close()
    assert pushed == list(range(30))  # nothing after the failure
    assert sink.frames == 0 and not (tmp_path / "out.mp4").exists()
    kept = list(open_source(f"file://{next(tmp_path.glob('out.partial-*.mp4'))}"))
    assert 18 <= len(kept) <= 30  # the fragments finished before the failure (200 ms = 6 frames each)


# ------------------------------------------------------------------ untrusted files
UNTRUSTED_CHILD = r"""
import os, pickle, sys, json
import torch
from edgevos.errors import InputError
from edgevos.models.weights import load_checkpoint

marker, d = sys.argv[1], sys.argv[2]

class Payload:
    def __reduce__(self):
        return (os.system, ("touch " + marker,))

ckpt = {"family": "gfrtm", "state_dict": {}, "x": Payload()}
with open(os.path.join(d, "evil.pt"), "wb") as fh:
    pickle.dump(ckpt, fh)
torch.save(ckpt, os.path.join(d, "evil_zip.pt"))  # torch's zip format, same payload
data = open(os.path.join(d, "evil_zip.pt"), "rb").read()
open(os.path.join(d, "trunc.pt"), "wb").write(data[:100])
out = {}
for name in ("evil.pt", "evil_zip.pt", "trunc.pt"):
    try:
        load_checkpoint("gfrtm", os.path.join(d, name))
        out[name] = "LOADED"
    except InputError as exc:
        out[name] = str(exc)
print(json.dumps(out))
"""


def test_malicious_checkpoint_is_refused_and_never_executed(tmp_path):
    """Run in a fresh interpreter: in a process where GStreamer has probed files, torch's
    zip reader can abort (the same clash as the TorchScript tracer)."""
    marker = tmp_path / "pwned"
    script = tmp_path / "child.py"
    script.write_text(UNTRUSTED_CHILD)
    proc = subprocess.run([sys.executable, str(script), str(marker), str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    msgs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not marker.exists()
    for name in ("evil.pt", "evil_zip.pt"):
        assert name in msgs[name] and "refused" in msgs[name] and "never executed" in msgs[name], msgs[name]
        assert "weights_only` set to `False`" not in msgs[name]  # never advise unpickling an untrusted file
    assert "cannot load checkpoint" in msgs["trunc.pt"]


def test_credentials_never_in_clear(tmp_path_factory, tmp_path):
    """`edgevos run` on an unreachable camera with credentials: stdout, stderr and the
    JSON log never show the password (connection to loopback port 1 fails fast)."""
    gst_or_skip()
    from edgevos.data.masks import write_mask
    from edgevos.runtime.pipeline import run_pipeline
    from edgevos.runtime.sources import open_source

    try:  # the failure shows either when the pipeline starts or on the first pull
        src = open_source("rtsp://user:s3cret@127.0.0.1:1/x", timeout=2)
        summary = run_pipeline(src, [], None, first_mask=_box_mask(48, 80))
        text = json.dumps(summary.as_dict())
        assert summary.exit_code == 1 and summary.stopped_by == "source error"
    except SourceError as exc:
        text = str(exc)
    assert "s3cret" not in text and "rtsp://***@127.0.0.1:1/x" in text
    write_mask(tmp_path / "m.png", _box_mask(128, 224))
    log = tmp_path / "log.json"
    proc = subprocess.run(
        [sys.executable, "-m", "edgevos", "run", "rtsp://user:s3cret@127.0.0.1:1/x", f"masks://{tmp_path / 'o'}",
         "--bundle", str(ort_bundle(tmp_path_factory)), "--init-mask", str(tmp_path / "m.png"), "--timeout", "2",
         "--reconnect", "1", "--log", str(log), "--no-power", "--threads", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr + (log.read_text() if log.exists() else "")
    assert proc.returncode == 1, out
    assert "rtsp://***@127.0.0.1:1/x" in out
    assert "s3cret" not in out and "user:" not in out
