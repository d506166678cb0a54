"""rtsp:// output end to end: the overlay video is pushed with rtspclientsink (RTSP
RECORD) to a local gst-rtsp-server, which writes what it receives to a file that
is decoded again."""
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.gst


SERVER = r"""
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service("0")
factory = GstRtspServer.RTSPMediaFactory()
factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
# MPEG-TS needs no closing index, so the file is readable whatever the teardown order
factory.set_launch("( rtph264depay name=depay0 ! h264parse ! mpegtsmux ! filesink location=%s )" % sys.argv[1])
server.get_mount_points().add_factory("/out", factory)
server.attach(None)
print(server.get_bound_port(), flush=True)
GLib.MainLoop().run()
"""


def _server_or_skip(out_path):
    """A gst-rtsp-server in RECORD mode in its own process (its own GLib loop and GIL)."""
    try:
        from edgevos.runtime.sources import gst, has_element

        gst()
    except Exception as exc:
        pytest.skip(f"GStreamer with PyGObject is not available: {exc}")
    if not has_element("rtspclientsink"):
        pytest.skip("rtspclientsink is not installed (Debian: gstreamer1.0-rtsp)")
    try:
        import gi

        gi.require_version("GstRtspServer", "1.0")
    except (ImportError, ValueError) as exc:
        pytest.skip(f"gst-rtsp-server typelib is not installed (Debian: gir1.2-gst-rtsp-server-1.0): {exc}")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(out_path)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        proc.kill()
        pytest.fail(f"the RTSP server did not start (said {line!r})")
    return int(line), proc


CLIENT = r"""
import sys
import numpy as np
from edgevos.programs.base import StepResult
from edgevos.runtime.sinks import open_sink

sink = open_sink(sys.argv[1], fps=25)
for i in range(int(sys.argv[2])):
    rgb = np.full((240, 320, 3), 40, np.uint8)
    mask = np.zeros((240, 320), np.uint8)
    mask[60:140, 40 + 4 * i:120 + 4 * i] = 1
    sink.write(i, rgb, StepResult(i, mask, None, [1], False, None, {}, 0.0))
sink.close()
print("closed", sink.frames)
"""


def test_rtsp_output_reaches_a_server_and_decodes(tmp_path):
    """The sink runs in a fresh process, as `edgevos run` does (GStreamer state left by
    other tests in this process, e.g. after in-process INT8 exports, can delay the EOS)."""
    from edgevos.runtime.sources import open_source

    got = tmp_path / "received.ts"
    port, server = _server_or_skip(got)
    n = 40
    try:
        res = subprocess.run([sys.executable, "-c", CLIENT, f"rtsp://127.0.0.1:{port}/out", str(n)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and f"closed {n}" in res.stdout, res.stderr[-2000:]
        deadline = time.time() + 10
        while time.time() < deadline and (not got.is_file() or got.stat().st_size == 0):
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=10)
    frames = [f.rgb for f in open_source(f"file://{got}")]
    assert len(frames) >= n - 2, f"server received {len(frames)} of {n} frames"
    assert frames[0].shape == (240, 320, 3)
    last = frames[-1].astype(int)
    i = len(frames) - 1
    inside = last[100, 80 + 4 * i]  # object pixel: tinted red (DAVIS colour of id 1)
    outside = last[200, 10]
    assert abs(outside - 40).max() < 12
    assert inside[0] - inside[1] > 40, f"overlay colour missing at the object: {inside}"
