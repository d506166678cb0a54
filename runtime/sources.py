"""Video sources: iterate a URI as :class:`Frame` objects.

``open_source(uri)`` returns a :class:`Source`; iterating it yields
``Frame(index, pts, rgb)`` with ``rgb`` a (H, W, 3) uint8 array.

* ``file://`` decodes with GStreamer (``filesrc ! decodebin ! videoconvert !
  appsink``) *losslessly*: appsink holds a few decoded frames and blocks the
  decoder, which runs in GStreamer's threads while the caller runs inference.
* ``v4l2://``, ``csi://`` and ``rtsp://`` are *live*: the latest-frame policy
  (leaky queue + ``appsink drop=true max-buffers=1``) keeps latency bounded;
  frames the caller was too slow for are counted in ``source.dropped``.  A
  source that delivers no frame for ``timeout`` seconds is a stall; with
  ``reconnect=N`` the pipeline is rebuilt up to N times (exponential backoff)
  and the frame index continues, so a session keeps its state.
* ``test://`` (synthetic) and ``davis://`` carry ground truth: ``frame.gt`` and
  ``source.first_mask``.

Failures raise :class:`SourceError` naming the URI (credentials redacted):
missing, empty, corrupt or truncated files (frames ending before the duration the
container records for the video stream), unknown codecs, missing cameras,
GStreamer bus errors.  Frames already yielded stay valid.  A frame size change
mid-stream is not supported (sessions, ring buffers and video sinks are sized
on the first frame): it raises SourceError saying so.

On a Jetson (``/etc/nv_tegra_release`` and the ``nvv4l2decoder``/``nvvidconv``
elements present) the pipelines come from :mod:`edgevos.jetson.pipelines`
(NVMM, hardware decode); elsewhere from the software presets of
:mod:`edgevos.runtime.gst_source`.

This module opens a URI; the sources live in :mod:`~edgevos.runtime.frames` (the base
class, read-ahead), :mod:`~edgevos.runtime.labelled_sources` (``test://``, ``davis://``),
:mod:`~edgevos.runtime.gst_source` (GStreamer) and :mod:`~edgevos.runtime.containers`
(MP4/MOV index checks); GStreamer itself is loaded by :mod:`~edgevos.runtime.gstreamer`.
"""
from __future__ import annotations

from typing import Union

from edgevos.runtime.containers import mp4_video_duration
from edgevos.runtime.frames import Frame, Prefetcher, Source, frames_of
from edgevos.runtime.gst_source import NO_VIDEO, GstSource, pipeline_description
from edgevos.runtime.gstreamer import gst, has_element, on_jetson
from edgevos.runtime.labelled_sources import DavisSource, TestSource
from edgevos.runtime.uri import URI, parse_source

__all__ = ["Frame", "Source", "GstSource", "TestSource", "DavisSource", "Prefetcher", "frames_of", "open_source",
           "pipeline_description", "gst", "has_element", "on_jetson", "mp4_video_duration", "NO_VIDEO"]


def open_source(uri: Union[str, URI], **options) -> Source:
    """Open a source URI (see the module docstring).

    Options for GStreamer sources: ``timeout`` (seconds without a frame before
    a stall is reported), ``reconnect`` (live: rebuild attempts),
    ``backoff`` (first reconnect delay, doubled each attempt),
    ``max_buffers`` (file: decoded frames queued ahead), ``description``
    (a custom gst-launch string ending in ``appsink name=sink``), ``decode_threads``
    (software decoders' threads, default 1, 0 = the decoder's choice; or ``?decode-threads=N``).
    """
    u = uri if isinstance(uri, URI) else parse_source(uri)
    if u.scheme == "test":
        return TestSource(u)
    if u.scheme == "davis":
        return DavisSource(u)
    return GstSource(u, **options)
