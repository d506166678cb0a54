"""GStreamer sources and sinks: decode, encode, masks, bad input, live policy, Jetson presets."""
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from edgevos.errors import InputError, SourceError
from edgevos.runtime.uri import parse_source


def _gst_or_skip():
    try:
        from edgevos.runtime.sources import gst

        return gst()
    except Exception as exc:  # DependencyError: gi / typelibs missing
        pytest.skip(f"GStreamer with PyGObject is not available: {exc}")


pytestmark = pytest.mark.gst


@pytest.fixture(scope="module")
def Gst():
    return _gst_or_skip()


@pytest.fixture(scope="module")
def clip(videos_dir):
    p = videos_dir / "cutie_example.mp4"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return p


def _result(mask, reused=False):
    return SimpleNamespace(mask=mask, reused=reused, p_gate=0.4, total_ms=5.0, stage_ms={"enc": 3.0})


def _mask_for(i, h, w):
    m = np.zeros((h, w), np.uint8)
    m[40:120, 30 + 2 * i:130 + 2 * i] = 1
    m[h - 80:h - 20, w - 90:w - 30] = 2
    return m


def test_decode_first_frames_of_a_real_clip(Gst, clip):
    from edgevos.runtime.sources import open_source

    frames = []
    with open_source(f"file://{clip}") as src:
        for f in src:
            frames.append(f)
            if len(frames) == 20:
                break
    assert [f.index for f in frames] == list(range(20))
    assert all(f.rgb.shape == (480, 640, 3) and f.rgb.dtype == np.uint8 for f in frames)
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))
    assert src.fps == pytest.approx(25.0) and src.size == (480, 640) and src.dropped == 0
    assert frames[5].rgb.std() > 10  # real picture content, not a blank buffer
    assert not np.array_equal(frames[0].rgb, frames[19].rgb)


def test_relative_bare_path_decodes_whole_file(Gst, clip, tmp_path, monkeypatch):
    from edgevos.runtime.sources import open_source

    shutil.copy(clip, tmp_path / "clip.mp4")
    monkeypatch.chdir(tmp_path)
    with open_source("clip.mp4") as src:
        n = sum(1 for _ in src)
    assert n == 117  # the README's frame count
    with open_source("file://clip.mp4") as src:
        assert next(iter(src)).rgb.shape == (480, 640, 3)


def test_odd_width_frames_are_unpadded(Gst, tmp_path):
    """GStreamer pads RGB rows to 4 bytes; frames come back exactly W wide."""
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    h, w = 50, 78  # 78*3 = 234, padded to 236 inside GStreamer
    out = tmp_path / "odd.mkv"
    with open_sink(f"file://{out}", fps=10, overlay=False) as sink:
        for i in range(5):
            rgb = np.full((h, w, 3), 40 * i, np.uint8)
            rgb[:, :10] = 250
            sink.write(i, rgb, None)
    got = [f.rgb for f in open_source(f"file://{out}")]
    assert len(got) == 5 and got[0].shape == (h, w, 3)
    assert abs(int(got[3][25, 40, 0]) - 120) < 12 and got[3][25, 2, 0] > 230  # lossy, but in place


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_overlay_video_and_masks_round_trip(Gst, clip, tmp_path, ext):
    from edgevos.data.masks import read_mask
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    n = 24
    src = open_source(f"file://{clip}")
    video = tmp_path / "out" / f"overlay.{ext}"
    sinks = [open_sink(f"file://{video}", fps=src.fps), open_sink(f"masks://{tmp_path / 'masks'}?seq=clip")]
    written = []
    for f in src:
        m = _mask_for(f.index, *f.rgb.shape[:2])
        for s in sinks:
            s.write(f.index, f.rgb, _result(m, reused=f.index % 2 == 1))
        written.append(m)
        if len(written) == n:
            break
    src.close()
    assert not video.exists()  # only appears once finalized
    for s in sinks:
        s.close()
        s.close()  # idempotent
    assert video.is_file()
    assert not list(video.parent.glob("*.partial"))
    decoded = list(open_source(f"file://{video}"))
    assert len(decoded) == n
    assert decoded[0].rgb.shape == (480, 640, 3)
    # the overlay is drawn: object 1's region is tinted red (DAVIS colour 1 is (128, 0, 0))
    region = decoded[3].rgb[50:110, 60:120].astype(int)
    assert region[..., 0].mean() > region[..., 2].mean() + 20
    pngs = sorted((tmp_path / "masks" / "clip").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:05d}.png" for i in range(n)]
    for i in (0, 7, n - 1):
        np.testing.assert_array_equal(read_mask(pngs[i]), written[i])


def test_bad_files_raise_source_error_naming_the_uri(Gst, clip, tmp_path):
    from edgevos.runtime.sources import open_source

    data = clip.read_bytes()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "trunc.mp4").write_bytes(data[: len(data) // 2])  # moov atom at the end: lost
    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    cases = {
        "missing.mp4": "not found",
        "empty.mp4": "empty",
        "trunc.mp4": "no 'moov' index",
        "garbage.mp4": "Could not determine type",
    }
    for name, words in cases.items():
        uri = f"file://{tmp_path / name}"
        with pytest.raises(SourceError) as ei:
            for _ in open_source(uri):
                pass
        assert name in str(ei.value) and words in str(ei.value), str(ei.value)
    with pytest.raises(SourceError, match="directory"):
        open_source(f"file://{tmp_path}")


def test_truncated_streamable_file_keeps_frames_then_errors(Gst, tmp_path):
    """An mkv cut in half: the frames before the cut decode, then a SourceError says so."""
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    full = tmp_path / "full.mkv"
    with open_sink(f"file://{full}", fps=20, overlay=False) as sink:
        rng = np.random.default_rng(1)
        for i in range(40):
            sink.write(i, rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), None)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    got = []
    with pytest.raises(SourceError, match="truncated") as ei:
        for f in open_source(f"file://{cut}"):
            got.append(f)
    assert 5 < len(got) < 40 and "cut.mkv" in str(ei.value)
    assert got[-1].rgb.shape == (64, 96, 3)


def test_unknown_scheme_and_missing_devices(Gst):
    from edgevos.runtime.sources import on_jetson, open_source

    with pytest.raises(InputError, match="valid source schemes are file://, v4l2://"):
        open_source("http://example.com/x.mp4")
    with pytest.raises(SourceError, match="/dev/video97 does not exist"):
        open_source("v4l2:///dev/video97")
    if not on_jetson():
        with pytest.raises(SourceError, match="nvarguscamerasrc"):
            open_source("csi://0")


def _live(description, uri="rtsp://admin:hunter2@cam.local:554/stream", **kw):
    from edgevos.runtime.sources import GstSource

    return GstSource(parse_source(uri), description=description, **kw)


LIVE_TAIL = ("queue name=leak leaky=downstream max-size-buffers=1 max-size-bytes=0 max-size-time=0 ! "
             "videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false max-buffers=1 drop=true")


def test_live_source_drops_stale_frames_and_counts_them(Gst):
    import time

    desc = ("videotestsrc is-live=true num-buffers=40 pattern=ball ! "
            "video/x-raw,width=64,height=48,framerate=100/1 ! " + LIVE_TAIL)
    src = _live(desc, timeout=2.0)
    got = []
    with pytest.raises(SourceError, match="stream ended"):
        for f in src:
            got.append(f.index)
            time.sleep(0.05)  # a slow consumer: 20 fps against a 100 fps camera
    assert got == list(range(len(got)))  # delivered indices are continuous
    assert src.dropped > 10 and len(got) + src.dropped <= 40
    assert len(got) < 25


def test_live_stall_is_detected_and_credentials_redacted(Gst):
    desc = ("videotestsrc is-live=true pattern=snow ! video/x-raw,width=32,height=24,framerate=30/1 ! "
            "identity sleep-time=1500000 ! " + LIVE_TAIL)  # 1.5 s per frame: a stalled camera
    src = _live(desc, timeout=0.4)
    with pytest.raises(SourceError) as ei:
        for _ in src:
            pass
    msg = str(ei.value)
    assert "stalled" in msg and "0.4 s" in msg
    assert "hunter2" not in msg and "admin" not in msg and "rtsp://***@cam.local:554/stream" in msg
    src.close()


def test_live_reconnect_continues_frame_index(Gst):
    desc = ("videotestsrc is-live=true num-buffers=5 ! video/x-raw,width=32,height=24,framerate=60/1 ! "
            + LIVE_TAIL)
    src = _live(desc, timeout=2.0, reconnect=2, backoff=0.05)
    got = []
    with pytest.raises(SourceError, match="after 2 reconnect attempt"):
        for f in src:
            got.append(f.index)
    assert src.reconnects == 2
    assert got == list(range(len(got))) and len(got) >= 9  # ~5 per connection, no index reset


def test_frame_size_change_is_reported(tmp_path):
    """A DAVIS-layout sequence whose 3rd frame has another size: frames before stay valid."""
    import cv2

    from edgevos.data.masks import write_mask
    from edgevos.runtime.sources import open_source

    img = tmp_path / "JPEGImages" / "480p" / "seq"
    ann = tmp_path / "Annotations" / "480p" / "seq"
    img.mkdir(parents=True)
    for i, (h, w) in enumerate([(40, 60), (40, 60), (48, 64), (40, 60)]):
        cv2.imwrite(str(img / f"{i:05d}.jpg"), np.full((h, w, 3), 90, np.uint8))
    m = np.zeros((40, 60), np.uint8)
    m[10:20, 10:30] = 1
    write_mask(ann / "00000.png", m)
    src = open_source(f"davis://{tmp_path}?seq=seq")
    np.testing.assert_array_equal(src.first_mask, m)
    got = []
    with pytest.raises(SourceError, match="frame size changed from 60x40 to 64x48 at frame 2"):
        for f in src:
            got.append(f)
    assert len(got) == 2 and got[0].gt is not None and got[1].gt is None


def test_sink_errors(Gst, tmp_path):
    from edgevos.runtime.sinks import open_sink

    with pytest.raises(InputError, match="unknown sink URI scheme 'ftp://'"):
        open_sink("ftp://x/y")
    with pytest.raises(InputError, match=r"\.avi"):
        open_sink(f"file://{tmp_path / 'x.avi'}")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(SourceError, match="cannot create output directory"):
        open_sink(f"masks://{blocker / 'm'}")
    with pytest.raises(SourceError, match="cannot create output directory"):
        open_sink(f"file://{blocker / 'out.mp4'}")


def test_read_only_output_directory(Gst, tmp_path):
    from edgevos.runtime.sinks import open_sink

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that ignores directory permissions (root)")
        with pytest.raises(SourceError, match="not writable"):
            open_sink(f"masks://{ro / 'm'}")
    finally:
        ro.chmod(0o700)


def test_sink_size_change_and_write_after_close(Gst, tmp_path):
    from edgevos.runtime.sinks import open_sink

    sink = open_sink(f"file://{tmp_path / 'a.mkv'}", fps=10, overlay=False)
    sink.write(0, np.zeros((32, 48, 3), np.uint8), None)
    with pytest.raises(SourceError, match="size changed from 48x32 to 64x32"):
        sink.write(1, np.zeros((32, 64, 3), np.uint8), None)
    sink.close()
    assert (tmp_path / "a.mkv").is_file()
    with pytest.raises(InputError, match="after close"):
        sink.write(2, np.zeros((32, 48, 3), np.uint8), None)


def test_rtsp_output_names_missing_element(Gst, monkeypatch):
    from edgevos.runtime import gstreamer
    from edgevos.runtime.sinks import open_sink

    real = gstreamer.has_element
    monkeypatch.setattr(gstreamer, "has_element", lambda name: name != "rtspclientsink" and real(name))
    with pytest.raises(SourceError, match="rtspclientsink") as ei:
        open_sink("rtsp://user:pw@server:8554/out")
    assert "pw@" not in str(ei.value)


# --------------------------------------------------------------------------- Jetson presets
_SOFT = {"nvarguscamerasrc": "videotestsrc", "nvvidconv": "videoconvert", "h264parse": "identity",
         "h265parse": "identity",
         "nvv4l2decoder": "avdec_h264", "nvv4l2h264enc": "x264enc"}


def _presets():
    from edgevos.jetson import pipelines as jp

    return {
        "csi": jp.csi_source(0),
        "usb": jp.usb_source("/dev/video0", 640, 480, 30),
        "rtsp": jp.rtsp_source("rtsp://cam:8554/x"),
        "file": jp.file_source("clip.mp4"),
        "h264_file_sink": jp.h264_file_sink("out.mp4"),
    }


def _elements(desc):
    import re

    return [tok.split()[0] for tok in re.split(r"\s!\s", desc) if re.match(r"^[a-z0-9_]+(\s|$)", tok.strip())]


@pytest.mark.parametrize("name", ["csi", "usb", "rtsp", "file", "h264_file_sink"])
def test_jetson_preset_syntax_with_local_elements(Gst, name):
    """Parse each preset with Jetson-only elements swapped for local ones (syntax, caps, properties)."""
    from edgevos.runtime.sources import has_element

    desc = _presets()[name]
    missing = [e for e in _elements(desc) if not has_element(e) and e not in _SOFT]
    if missing:
        pytest.skip(f"elements not installed here: {missing}")
    soft = desc.replace("(memory:NVMM)", "")
    for nv, sw in _SOFT.items():
        soft = soft.replace(nv + " ", sw + " ").replace(nv + "\n", sw)
    soft = soft.replace("sensor-id=0", "").replace("flip-method=0", "").replace(" mjpeg=1", "")
    soft = soft.replace("bitrate=8000000", "bitrate=8000")
    pipeline = Gst.parse_launch(soft)
    assert pipeline.get_by_name("sink") is not None or pipeline.get_by_name("src") is not None
    if name != "h264_file_sink":
        assert "appsink name=sink" in desc and ("drop=true" in desc) == (name != "file")


@pytest.mark.parametrize("name", ["csi", "usb", "rtsp", "file"])
def test_jetson_preset_parses_with_real_elements(Gst, name):
    from edgevos.runtime.sources import has_element

    desc = _presets()[name]
    missing = [e for e in _elements(desc) if not has_element(e)]
    if missing:
        pytest.skip(f"Jetson elements not installed here: {missing}")
    assert Gst.parse_launch(desc).get_by_name("sink") is not None


def test_unreachable_rtsp_camera_error_is_redacted_and_retried(Gst):
    from edgevos.runtime.sources import open_source

    src = open_source("rtsp://user:secret@127.0.0.1:9/cam", timeout=3, reconnect=2, backoff=0.05)
    with pytest.raises(SourceError) as ei:
        for _ in src:
            pass
    msg = str(ei.value)
    assert "secret" not in msg and "rtsp://***@127.0.0.1:9/cam" in msg
    assert "after 2 reconnect attempt" in msg and src.reconnects == 2


@pytest.mark.parametrize("uri", ["file:///tmp/x.mp4", "v4l2:///dev/video0", "v4l2:///dev/video1?width=640&height=480&fps=30",
                                 "rtsp://u:p@cam:554/s"])
def test_software_source_pipelines_parse(Gst, uri):
    from edgevos.runtime.sources import pipeline_description

    desc = pipeline_description(parse_source(uri), jetson=False)
    p = Gst.parse_launch(desc)
    sink = p.get_by_name("sink")
    assert sink is not None and sink.get_property("sync") is False
    live = parse_source(uri).live
    assert (p.get_by_name("leak") is not None) == live
    assert sink.get_property("drop") is live
    assert sink.get_property("max-buffers") == (1 if live else 4)


def _decoder_threads(src):
    from edgevos.runtime.sources import gst

    found = []
    it = src._pipeline.iterate_recurse()
    while True:
        ok, el = it.next()
        if ok != gst().IteratorResult.OK:
            break
        f = el.get_factory()
        if f is not None and f.get_name().startswith("avdec_"):
            found.append(el.get_property("max-threads"))
    return found


def test_software_decoder_threads_default_to_one_and_are_settable(Gst, clip):
    from edgevos.runtime.sources import open_source

    src = open_source(f"file://{clip}")
    next(iter(src))  # the decoder exists once the stream is typed
    assert _decoder_threads(src) == [1]
    src.close()
    src = open_source(f"file://{clip}?decode-threads=0")
    next(iter(src))
    assert _decoder_threads(src) == [0]
    src.close()
    with pytest.raises(InputError, match="decode-threads"):
        open_source(f"file://{clip}?decode-threads=many")


@pytest.mark.parametrize("hw", [(240, 432), (480, 854), (10, 6)])
def test_i420_buffers_have_gstreamer_plane_strides(hw):
    """Frames go to the encoder as I420 in GStreamer's default layout: rows padded to 4 bytes per plane."""
    import cv2

    from edgevos.runtime.sinks import i420_bytes

    h, w = hw
    rgb = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
    data = np.frombuffer(i420_bytes(rgb), np.uint8)
    sy, sc = (w + 3) // 4 * 4, (w // 2 + 3) // 4 * 4
    assert data.size == sy * h + 2 * sc * (h // 2)
    np.testing.assert_array_equal(data[:sy * h].reshape(h, sy)[:, :w], ref[:h * w].reshape(h, w))
    c = (h // 2) * (w // 2)
    for k in range(2):
        plane = data[sy * h + k * sc * (h // 2):][:sc * (h // 2)].reshape(h // 2, sc)[:, :w // 2]
        np.testing.assert_array_equal(plane, ref[h * w + k * c:h * w + (k + 1) * c].reshape(h // 2, w // 2))


def test_encoder_choice_hardware_first_and_fallback(tmp_path, monkeypatch):
    """NVENC is tried first where its elements exist; one that cannot start falls back to the next
    encoder with a warning and the file is still written; ?encoder= picks one or fails clearly."""
    _gst_or_skip()
    from edgevos.runtime import sinks as S
    from edgevos.runtime import gstreamer
    from edgevos.runtime.sinks import encoder_candidates, open_sink
    from edgevos.runtime.sources import open_source

    real = gstreamer.has_element
    jetson = lambda name: name in ("nvv4l2h264enc", "nvvidconv") or real(name)  # noqa: E731
    monkeypatch.setattr(gstreamer, "has_element", jetson)
    names = encoder_candidates()
    assert names[0] == "nvv4l2h264enc" and "x264enc" in names
    # here the NVENC chain cannot be built (no such elements): the sink must fall back, not fail
    frames = [np.full((48, 64, 3), (40 * i) % 255, np.uint8) for i in range(6)]
    with pytest.warns(RuntimeWarning, match="nvv4l2h264enc did not start.*encoding with x264enc"):
        with open_sink(f"file://{tmp_path / 'a.mp4'}", fps=10, overlay=False) as sink:
            for i, f in enumerate(frames):
                sink.write(i, f, None)
    assert sink.encoder == "x264enc"
    src = open_source(f"file://{tmp_path / 'a.mp4'}")
    assert len([f for f in src]) == 6
    src.close()
    monkeypatch.setattr(gstreamer, "has_element", real)
    with pytest.raises(InputError, match="encoder 'h265' is unknown"):
        open_sink(f"file://{tmp_path / 'b.mp4'}?encoder=h265")
    if not real("nvv4l2h264enc"):
        with pytest.raises(SourceError, match="encoder 'nvv4l2h264enc' is not installed"):
            open_sink(f"file://{tmp_path / 'b.mp4'}?encoder=nvv4l2h264enc")
    with open_sink(f"file://{tmp_path / 'c.mkv'}?encoder=x264enc", fps=10, overlay=False) as sink:
        sink.write(0, frames[0], None)
    assert sink.encoder == "x264enc" and (tmp_path / "c.mkv").stat().st_size > 0
    assert S.ENCODERS["x264enc"].startswith("x264enc")
