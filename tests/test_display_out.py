"""display:// output: a clear error without a display, and a real X11 window under Xvfb
(the frames shown are captured back from the X server with ximagesrc)."""
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from edgevos.errors import SourceError

pytestmark = pytest.mark.gst


def _gst_or_skip():
    try:
        from edgevos.runtime.sources import gst

        return gst()
    except Exception as exc:
        pytest.skip(f"GStreamer with PyGObject is not available: {exc}")


def _frame(i, mask_value=1):
    from edgevos.programs.base import StepResult

    mask = np.zeros((120, 160), np.uint8)
    mask[30:90, 40:120] = mask_value
    return np.full((120, 160, 3), 30, np.uint8), StepResult(i, mask, None, [mask_value], False, None, {}, 0.0)


def test_no_display_is_a_clear_error_not_a_crash(monkeypatch):
    _gst_or_skip()
    from edgevos.runtime import gstreamer
    from edgevos.runtime.sinks import open_sink

    for var in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    real = gstreamer.has_element
    monkeypatch.setattr(gstreamer, "has_element", lambda name: name != "nvdrmvideosink" and real(name))
    with pytest.raises(SourceError, match="no display") as ei:
        open_sink("display://")
    assert "file://" in str(ei.value)  # says what to do instead


@pytest.fixture
def xvfb(monkeypatch):
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (Debian: xvfb)")
    num = 90 + os.getpid() % 50
    proc = subprocess.Popen(["Xvfb", f":{num}", "-screen", "0", "320x240x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = f"/tmp/.X11-unix/X{num}"
    deadline = time.time() + 10
    while not os.path.exists(sock) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not os.path.exists(sock):
        proc.kill()
        pytest.skip("Xvfb did not start")
    monkeypatch.setenv("DISPLAY", f":{num}")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    yield f":{num}"
    proc.terminate()
    proc.wait(timeout=10)


def _grab_screen(Gst, display):
    pipe = Gst.parse_launch(f"ximagesrc display-name={display} num-buffers=1 use-damage=false ! videoconvert ! "
                            "video/x-raw,format=RGB ! appsink name=sink sync=false")
    pipe.set_state(Gst.State.PLAYING)
    sample = pipe.get_by_name("sink").try_pull_sample(5 * Gst.SECOND)
    pipe.set_state(Gst.State.NULL)
    assert sample is not None, "could not capture the X screen"
    s = sample.get_caps().get_structure(0)
    w, h = s.get_value("width"), s.get_value("height")
    data = sample.get_buffer().extract_dup(0, sample.get_buffer().get_size())
    stride = (w * 3 + 3) & ~3
    return np.lib.stride_tricks.as_strided(np.frombuffer(data, np.uint8), (h, w, 3), (stride, 3, 1)).copy()


def test_display_output_shows_the_overlay_in_an_x11_window(xvfb):
    Gst = _gst_or_skip()
    from edgevos.runtime.sinks import display_sink, open_sink
    from edgevos.runtime.sources import has_element

    assert display_sink().split()[0] in ("ximagesink", "xvimagesink", "glimagesink", "nv3dsink")
    if not has_element("ximagesrc"):
        pytest.skip("ximagesrc is not installed; cannot read the screen back")
    sink = open_sink("display://", fps=25)
    for i in range(15):
        sink.write(i, *_frame(i))
    sink._queue.join()  # every frame drawn and pushed
    time.sleep(0.5)
    screen = _grab_screen(Gst, xvfb).astype(int)
    sink.close()
    assert sink.frames == 15
    # the window shows the 30-grey frame with the object tinted in DAVIS red (128, 0, 0) at alpha 0.5
    red = (screen[..., 0] - screen[..., 1] > 30) & (screen[..., 0] > 60)
    grey = (np.abs(screen - 30).max(-1) < 8)
    assert red.sum() > 0.5 * 60 * 80, f"overlay not on screen: {red.sum()} red pixels"
    assert grey.sum() > 0.5 * (120 * 160 - 60 * 80), f"frame background not on screen: {grey.sum()} pixels"
