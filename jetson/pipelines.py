"""GStreamer pipeline presets for Jetson (JetPack 5/6): NVMM buffers, hardware decode.

Every preset is a gst-launch description ending in ``appsink name=sink``
delivering RGB frames, the contract of :class:`edgevos.runtime.gst_source.GstSource`.
Live presets insert ``queue name=leak leaky=downstream max-size-buffers=1``
(latest-frame policy; the runtime counts drops on that queue) and use
``appsink drop=true max-buffers=1``.  ``nvvidconv`` converts NVMM (device
memory) to system-memory RGBA/BGRx, and ``videoconvert`` packs RGB for numpy.

``edgevos.runtime.sources`` uses these automatically when it runs on a Jetson;
they can also be printed and tried with gst-launch-1.0 (replace the appsink
with ``fakesink``).
"""
from __future__ import annotations

_APPSINK_LIVE = ("videoconvert ! video/x-raw,format=RGB ! "
                 "appsink name=sink sync=false emit-signals=false max-buffers=1 drop=true")
_LEAK = "queue name=leak leaky=downstream max-size-buffers=1 max-size-bytes=0 max-size-time=0"


def quote(value) -> str:
    """Quote a value (a path, a URL) for a gst-launch description."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def csi_source(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30,
               flip_method: int = 0) -> str:
    """CSI camera through the Argus ISP (nvarguscamerasrc), NVMM until nvvidconv."""
    return (
        f"nvarguscamerasrc sensor-id={int(sensor_id)} ! "
        f"video/x-raw(memory:NVMM),width={int(width)},height={int(height)},framerate={int(fps)}/1,format=NV12 ! "
        f"{_LEAK} ! nvvidconv flip-method={int(flip_method)} ! video/x-raw,format=BGRx ! {_APPSINK_LIVE}"
    )


def usb_source(device: str = "/dev/video0", width: int = 0, height: int = 0, fps: int = 0) -> str:
    """USB / V4L2 camera.  Raw (YUYV) or MJPEG: decodebin passes raw frames through and
    picks the hardware JPEG decoder for MJPEG.  width/height/fps constrain a raw camera's
    mode (leave them 0 for MJPEG cameras)."""
    caps = ""
    fields = [f"width={int(width)}" if width else "", f"height={int(height)}" if height else "",
              f"framerate={int(fps)}/1" if fps else ""]
    fields = [f for f in fields if f]
    if fields:
        caps = "video/x-raw," + ",".join(fields) + " ! "
    return (f"v4l2src device={quote(device)} ! {caps}decodebin ! {_LEAK} ! nvvidconv ! "
            f"video/x-raw,format=BGRx ! {_APPSINK_LIVE}")


def rtsp_source(location: str, latency_ms: int = 100, codec: str = "h264") -> str:
    """RTSP camera: depayload, parse, hardware decode (nvv4l2decoder) into NVMM."""
    codec = codec.lower()
    if codec not in ("h264", "h265"):
        raise ValueError(f"codec must be 'h264' or 'h265', got {codec!r}")
    return (
        f"rtspsrc location={quote(location)} latency={int(latency_ms)} protocols=tcp ! "
        f"rtp{codec}depay ! {codec}parse ! nvv4l2decoder ! {_LEAK} ! "
        f"nvvidconv ! video/x-raw,format=BGRx ! {_APPSINK_LIVE}"
    )


def file_source(path: str, max_buffers: int = 4) -> str:
    """A video file: demux (decodebin picks nvv4l2decoder, the highest-ranked decoder
    on JetPack) then nvvidconv out of NVMM; lossless (appsink blocks, never drops)."""
    return (
        f"filesrc location={quote(path)} ! decodebin ! nvvidconv ! video/x-raw,format=BGRx ! "
        f"videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false emit-signals=false "
        f"max-buffers={int(max_buffers)} drop=false"
    )


def h264_file_sink(path: str, bitrate_kbps: int = 8000) -> str:
    """Overlay video encoder with the hardware H.264 encoder (Orin NX/AGX, Xavier; the
    Orin Nano has no NVENC: use the software x264enc sink there)."""
    return (
        f"appsrc name=src ! videoconvert ! video/x-raw,format=RGBA ! nvvidconv ! "
        f"video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc bitrate={int(bitrate_kbps) * 1000} ! "
        f"h264parse ! mp4mux ! filesink location={quote(path)}"
    )


PRESETS = {
    "csi": csi_source,
    "usb": usb_source,
    "rtsp": rtsp_source,
    "file": file_source,
    "h264_file_sink": h264_file_sink,
}


if __name__ == "__main__":  # print the presets
    print("csi :", csi_source(0))
    print("usb :", usb_source("/dev/video0", 1280, 720, 30))
    print("rtsp:", rtsp_source("rtsp://camera:8554/stream"))
    print("file:", file_source("clip.mp4"))
