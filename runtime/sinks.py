"""Sinks: where segmented frames go.

Every sink has ``write(frame_index, rgb, result)`` (``result`` has ``.mask``,
an (H, W) uint8 id map, and optionally ``.reused``, ``.p_gate``,
``.total_ms``, ``.stage_ms``) and ``close()``, which finalizes the output and
is idempotent; sinks are context managers.

* ``file://out.mp4`` / ``file://out.mkv``: overlay video.  ``appsrc (I420) !
  ENCODER ! h264parse ! mp4mux|matroskamux ! filesink``, ENCODER the Jetson's
  NVENC (``nvv4l2h264enc`` through ``nvvidconv``) where it exists, else x264enc,
  openh264enc or the FFmpeg encoder; an encoder that fails to start or fails on
  the first frame (an Orin Nano lists nvv4l2h264enc but has no NVENC; the failure
  can come when the caps are negotiated) falls back to the next with a warning,
  and ``?encoder=NAME`` picks one.  The file is written under a temporary
  name and renamed into place once the muxer has finished (EOS reached the
  file), so ``out.mp4`` only ever exists as a playable file.
* ``masks://DIR[?seq=NAME][&overwrite=1]``: DAVIS-layout indexed PNGs ``DIR[/NAME]/00000.png``,
  numbered by source frame.  The directory must hold no PNGs (two runs' masks never mix);
  ``overwrite=1`` deletes the masks of an earlier run first.  Each mask is written
  atomically (temp + rename) by a background thread; ``close()``
  waits until every queued mask is on disk.
* ``display://``: an on-screen window (Wayland, X11, or a Jetson's DRM sink; chosen from the environment);
  a Jetson's sinks (nv3dsink, nvdrmvideosink) get the frames in NVMM memory through ``nvvidconv``.
* ``json://stats.jsonl``: one JSON line per frame (gate decision, timings, object areas).
* ``rtsp://host:port/path``: the overlay stream pushed to an RTSP server
  (``rtspclientsink``, from gst-rtsp-server; where the plugin exists).
"""
from __future__ import annotations

from typing import Optional, Union

from edgevos.runtime.file_sinks import JsonSink, MaskSink
from edgevos.runtime.sink_base import QueuedSink, Sink
from edgevos.runtime.uri import URI, parse_sink
from edgevos.runtime.video_encoding import (
    ENCODER_ELEMENT,
    ENCODERS,
    HARDWARE_ENCODERS,
    MIN_VIDEO_SIDE,
    MP4_FRAGMENT_MS,
    NVMM_SINKS,
    display_sink,
    encoder_candidates,
    i420_bytes,
    video_sink_description,
)
from edgevos.runtime.video_sink import VideoSink

__all__ = [
    "ENCODERS", "ENCODER_ELEMENT", "HARDWARE_ENCODERS", "MIN_VIDEO_SIDE", "MP4_FRAGMENT_MS", "NVMM_SINKS",
    "JsonSink", "MaskSink", "QueuedSink", "Sink", "VideoSink",
    "display_sink", "encoder_candidates", "i420_bytes", "open_sink", "video_sink_description",
]


def open_sink(uri: Union[str, URI], *, fps: Optional[float] = None, **options) -> Sink:
    """Open a sink URI (see the module docstring)."""
    u = uri if isinstance(uri, URI) else parse_sink(uri)
    if u.scheme == "masks":
        return MaskSink(u, **options)
    if u.scheme == "json":
        return JsonSink(u)
    return VideoSink(u, fps=fps, **options)
