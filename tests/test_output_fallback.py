"""Output pipelines on a Jetson: an encoder that starts but fails on the first frame (caps
negotiation, no NVENC behind the device node) falls back to the next one; ``display://`` gives
Jetson sinks their frames in NVMM memory through nvvidconv."""
import numpy as np
import pytest

from edgevos.errors import SourceError


def _gst_or_skip():
    try:
        from edgevos.runtime.sources import gst, has_element

        gst()
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"GStreamer with PyGObject is not available here ({exc})")
    for name in ("x264enc", "h264parse", "mp4mux"):
        if not has_element(name):
            pytest.skip(f"GStreamer element {name} is not installed here")


def _failing_nvenc(monkeypatch):
    """'nvv4l2h264enc' listed, its chain builds and reaches PLAYING, and fails when the first
    frame's caps are negotiated (a capsfilter no upstream format satisfies)."""
    from edgevos.runtime import sinks as S
    from edgevos.runtime import gstreamer

    real = gstreamer.has_element
    monkeypatch.setattr(gstreamer, "has_element", lambda n: n in ("nvv4l2h264enc", "nvvidconv") or real(n))
    monkeypatch.setitem(S.ENCODERS, "nvv4l2h264enc", "capsfilter caps=video/x-raw,width=2,height=2 ! "
                                                     "x264enc tune=zerolatency")


@pytest.mark.gst
def test_encoder_failing_on_the_first_frame_falls_back(tmp_path, monkeypatch):
    _gst_or_skip()
    from edgevos.runtime.sinks import open_sink
    from edgevos.runtime.sources import open_source

    _failing_nvenc(monkeypatch)
    frames = [np.full((48, 64, 3), (40 * i) % 255, np.uint8) for i in range(6)]
    with pytest.warns(RuntimeWarning, match="nvv4l2h264enc did not start.*encoding with x264enc"):
        with open_sink(f"file://{tmp_path / 'a.mp4'}", fps=10, overlay=False) as sink:
            for i, f in enumerate(frames):
                sink.write(i, f, None)
    assert sink.encoder == "x264enc"
    src = open_source(f"file://{tmp_path / 'a.mp4'}")
    got = [f.rgb for f in src]
    src.close()
    assert len(got) == 6, "the first frame, pushed while the encoder was tried, is in the file once"
    assert abs(float(got[0].mean()) - 0.0) < 8 and abs(float(got[1].mean()) - 40.0) < 8


@pytest.mark.gst
def test_the_only_encoder_failing_on_the_first_frame_is_an_error(tmp_path, monkeypatch):
    _gst_or_skip()
    from edgevos.runtime import sinks as S
    from edgevos.runtime.sinks import open_sink

    _failing_nvenc(monkeypatch)
    with pytest.raises(SourceError, match=r"frame 0|could not finalize"):
        with open_sink(f"file://{tmp_path / 'a.mp4'}?encoder=nvv4l2h264enc", fps=10, overlay=False) as sink:
            sink.write(0, np.zeros((48, 64, 3), np.uint8), None)
            sink.close()
    assert S.ENCODERS["nvv4l2h264enc"].startswith("capsfilter caps=video/x-raw,width=2")


@pytest.mark.parametrize("env, elements, want", [
    ({"DISPLAY": ":0"}, {"nv3dsink", "nvvidconv", "ximagesink"}, "nvvidconv ! video/x-raw(memory:NVMM) ! nv3dsink sync=false"),
    ({"DISPLAY": ":0"}, {"nv3dsink", "ximagesink"}, "ximagesink sync=false"),
    ({}, {"nvdrmvideosink", "nvvidconv"}, "nvvidconv ! video/x-raw(memory:NVMM) ! nvdrmvideosink sync=false"),
])
def test_jetson_display_sinks_get_nvmm_frames(monkeypatch, env, elements, want):
    from edgevos.runtime import gstreamer
    from edgevos.runtime.sinks import display_sink

    for k in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(gstreamer, "has_element", lambda n: n in elements)
    assert display_sink() == want


def test_jetson_console_without_nvvidconv_has_no_display(monkeypatch):
    from edgevos.runtime import gstreamer
    from edgevos.runtime.sinks import display_sink

    for k in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(gstreamer, "has_element", lambda n: n == "nvdrmvideosink")
    with pytest.raises(SourceError, match="no display"):
        display_sink()
