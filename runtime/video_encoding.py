"""GStreamer output descriptions: the H.264 encoders (hardware first, with fallbacks), the
display sink for the session's window system, the muxer per file type, and frames as I420."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from edgevos.errors import InputError, SourceError
from edgevos.runtime.uri import URI


#: encoder name (``?encoder=`` of a video sink URI) -> GStreamer chain from I420 frames to H.264
ENCODERS = {
    # Jetson NVENC (Orin NX/AGX, Xavier): into NVMM with the VIC, constant-quality-like VBR
    "nvv4l2h264enc": "nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc control-rate=0 "
                     "bitrate=8000000 iframeinterval=60 insert-sps-pps=true",
    # constant quality (CRF 21): no bitrate target to chase, and the same frames give the same file
    "x264enc": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 pass=qual quantizer=21",
    "openh264enc": "openh264enc",
    "avenc_h264": "avenc_h264",
    "avenc_h264_omx": "avenc_h264_omx",
}
HARDWARE_ENCODERS = ("nvv4l2h264enc",)
#: the smallest frame side an encoded output takes (one H.264 macroblock; x264 fails below it)
MIN_VIDEO_SIDE = 16
#: an MP4 output is written in fragments of this many milliseconds (what a crash can lose)
MP4_FRAGMENT_MS = 200
#: the name the encoder element gets in an output pipeline
ENCODER_ELEMENT = "enc"
#: the elements that write an output (an error from one of them is not the encoder's)
OUTPUT_ELEMENTS = ("filesink", "rtspclientsink")


def encoder_candidates(uri: Optional[URI] = None) -> list:
    """Encoder names to try, best first: the one asked for (``?encoder=NAME``), else the
    hardware encoder where its elements exist, then the software ones that are installed."""
    from edgevos.runtime.gstreamer import has_element

    asked = uri.query.get("encoder") if uri is not None else None
    if asked:
        if asked not in ENCODERS:
            raise InputError(f"{uri}: encoder '{asked}' is unknown: choose one of {sorted(ENCODERS)}")
        if not has_element(asked):
            raise SourceError(f"{uri}: encoder '{asked}' is not installed here")
        return [asked]
    names = [n for n in ENCODERS if has_element(n) and (n not in HARDWARE_ENCODERS or has_element("nvvidconv"))]
    if not names:
        raise SourceError(
            "no H.264 encoder found (nvv4l2h264enc, x264enc, openh264enc, avenc_h264): install "
            "gstreamer1.0-plugins-ugly (x264enc) or gstreamer1.0-plugins-bad (openh264enc)"
        )
    return names


#: Jetson video sinks that take frames in NVMM (device) memory: ``nvvidconv`` copies system
#: memory frames there (and converts the format) on the VIC
NVMM_SINKS = ("nv3dsink", "nvdrmvideosink")


def _nvmm(sink: str) -> str:
    return f"nvvidconv ! video/x-raw(memory:NVMM) ! {sink}" if sink in NVMM_SINKS else sink


def display_sink() -> str:
    """The video sink element for ``display://``, chosen from the session's display.

    GStreamer's autovideosink picks by rank, not by what is reachable: without a
    display it can pick waylandsink, which takes the whole process down.  So the
    sink is chosen here from the environment: Wayland (WAYLAND_DISPLAY), X11
    (DISPLAY), or a Jetson's DRM/EGL sinks on a console without X.
    """
    from edgevos.runtime.gstreamer import has_element

    if os.environ.get("WAYLAND_DISPLAY") and os.environ.get("XDG_RUNTIME_DIR") and has_element("waylandsink"):
        return "waylandsink sync=false"
    if os.environ.get("DISPLAY"):
        for name in ("nv3dsink", "ximagesink", "xvimagesink", "glimagesink"):  # ximagesink needs no Xv/GL
            if has_element(name) and (name not in NVMM_SINKS or has_element("nvvidconv")):
                return _nvmm(name) + " sync=false"
        raise SourceError("display://: DISPLAY is set but no X11 video sink is installed: install "
                          "gstreamer1.0-x (ximagesink, xvimagesink)")
    if has_element("nvdrmvideosink") and has_element("nvvidconv"):  # Jetson console without a window system
        return _nvmm("nvdrmvideosink") + " sync=false"
    raise SourceError(
        "display://: there is no display to show video on (neither DISPLAY nor WAYLAND_DISPLAY with "
        "XDG_RUNTIME_DIR is set): run in a desktop session or with X forwarding, or write the overlay to "
        "a file (file://out.mp4) or stream it (rtsp://server:8554/path)"
    )


def video_sink_description(uri: URI, location: Optional[str] = None, encoder: Optional[str] = None) -> str:
    """The gst-launch description (after ``appsrc name=src``) for a video sink URI, with
    ``encoder`` (a name in :data:`ENCODERS`; default: the first candidate)."""
    from edgevos.runtime.gstreamer import has_element, quote

    if uri.scheme == "display":
        return f"videoconvert ! {display_sink()}"
    name = encoder or encoder_candidates(uri)[0]
    enc = f"{ENCODERS[name]} name={ENCODER_ELEMENT}"  # the chain's last element is the encoder
    parse = " ! h264parse" if has_element("h264parse") else ""
    if not parse and name != "x264enc":
        raise SourceError(f"{uri}: encoder '{name}' needs h264parse (gstreamer1.0-plugins-bad)")
    head = f"videoconvert ! video/x-raw,format=I420 ! {enc}{parse}"
    if uri.scheme == "rtsp":
        if not has_element("rtspclientsink"):
            raise SourceError(
                f"{uri}: RTSP output needs the GStreamer element 'rtspclientsink' "
                "(gstreamer1.0-rtsp / gst-rtsp-server), which is not installed here"
            )
        return f"{head} ! rtspclientsink location={quote(uri.raw)}"
    suffix = Path(uri.path).suffix.lower()
    if suffix in (".mp4", ".mov", ".m4v"):
        # fragmented while it is written (a fragment every MP4_FRAGMENT_MS, each playable on its
        # own), so a kill or power loss keeps every finished fragment; at the end of the stream
        # the muxer rewrites the index into a normal, seekable MP4
        mux = f"mp4mux fragment-duration={MP4_FRAGMENT_MS} fragment-mode=first-moov-then-finalise"
    elif suffix == ".mkv":
        mux = "matroskamux"
    else:
        raise InputError(f"{uri}: unsupported video file extension '{suffix}': use .mp4 or .mkv")
    # unbuffered: what the muxer wrote is in the file at once, not in a 64 KiB buffer a kill -9 loses
    return f"{head} ! {mux} ! filesink buffer-mode=unbuffered location={quote(location or uri.path)}"


def i420_bytes(rgb: np.ndarray) -> bytes:
    """An RGB frame (even height and width) as an I420 buffer in GStreamer's default layout
    (each plane's rows padded to 4 bytes)."""
    import cv2

    h, w = rgb.shape[:2]
    flat = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420).reshape(-1)  # Y, U, V planes, packed
    sy, sc = (w + 3) & ~3, (w // 2 + 3) & ~3
    if sy == w and sc == w // 2:
        return flat.tobytes()
    out = np.zeros(sy * h + 2 * sc * (h // 2), np.uint8)
    y, c = h * w, (h // 2) * (w // 2)
    out[:sy * h].reshape(h, sy)[:, :w] = flat[:y].reshape(h, w)
    for k in range(2):
        start = sy * h + k * sc * (h // 2)
        out[start:start + sc * (h // 2)].reshape(h // 2, sc)[:, :w // 2] = flat[y + k * c:y + (k + 1) * c].reshape(h // 2, w // 2)
    return out.tobytes()
