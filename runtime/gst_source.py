"""GStreamer sources: files (decoded losslessly), V4L2 and CSI cameras and RTSP streams
(live, latest-frame policy, reconnects), each a gst-launch description ending in
``appsink name=sink``; on a Jetson the descriptions of :mod:`edgevos.jetson.pipelines`."""
from __future__ import annotations

import collections
import os
import statistics
import threading
import time
import warnings
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np

from edgevos.errors import InputError, SourceError
from edgevos.runtime import gstreamer
from edgevos.runtime.containers import DURATION_CONTAINERS, isobmff, isobmff_problem, mp4_video_duration
from edgevos.runtime.frames import Frame, Source
from edgevos.runtime.gstreamer import quote
from edgevos.runtime.uri import URI, redact


RGB_TAIL_FILE = "videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false emit-signals=false max-buffers={max_buffers} drop=false"
LIVE_TAIL = ("queue name=leak leaky=downstream max-size-buffers=1 max-size-bytes=0 max-size-time=0 ! "
             "videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false emit-signals=false "
             "max-buffers=1 drop=true")


def pipeline_description(uri: URI, *, jetson: Optional[bool] = None, max_buffers: int = 4) -> str:
    """The gst-launch description used for a GStreamer source URI.

    Every description ends in ``appsink name=sink`` delivering RGB frames;
    live ones contain ``queue name=leak`` (latest-frame policy).
    """
    if jetson is None:
        jetson = gstreamer.on_jetson()
    if jetson:
        from edgevos.jetson import pipelines as jp

        if uri.scheme == "file":
            return jp.file_source(uri.path, max_buffers=max_buffers)
        if uri.scheme == "v4l2":
            return jp.usb_source(uri.path, **_caps_options(uri))
        if uri.scheme == "csi":
            return jp.csi_source(int(uri.path), **_caps_options(uri))
        if uri.scheme == "rtsp":
            return jp.rtsp_source(uri.raw)
    if uri.scheme == "file":
        return f"filesrc location={quote(uri.path)} ! decodebin ! " + RGB_TAIL_FILE.format(max_buffers=max_buffers)
    if uri.scheme == "v4l2":
        # decodebin passes raw (YUYV) frames through and decodes MJPEG cameras
        return f"v4l2src device={quote(uri.path)} ! {_raw_caps(uri)}decodebin ! " + LIVE_TAIL
    if uri.scheme == "csi":
        # reaching here without Jetson elements: build the Jetson preset anyway so the
        # missing element is reported by name when the pipeline is parsed
        from edgevos.jetson import pipelines as jp

        return jp.csi_source(int(uri.path), **_caps_options(uri))
    if uri.scheme == "rtsp":
        return (f"rtspsrc location={quote(uri.raw)} latency=100 protocols=tcp ! decodebin ! " + LIVE_TAIL)
    raise InputError(f"{uri} is not a GStreamer source")


def _caps_options(uri: URI) -> dict:
    out = {}
    for key in ("width", "height", "fps"):
        if key in uri.query:
            out[key] = uri.get_int(key, 0)
    return out


def _raw_caps(uri: URI) -> str:
    opts = _caps_options(uri)
    if not opts:
        return ""
    parts = ["video/x-raw"]
    if "width" in opts:
        parts.append(f"width={opts['width']}")
    if "height" in opts:
        parts.append(f"height={opts['height']}")
    if "fps" in opts:
        parts.append(f"framerate={opts['fps']}/1")
    return ",".join(parts) + " ! "


NO_VIDEO = ("no video track in {path}: the file holds no video frames (audio only, or an empty video "
            "track); give a video file")


class GstSource(Source):
    """A GStreamer pipeline ending in ``appsink name=sink`` (RGB)."""

    def __init__(self, uri: URI, *, timeout: Optional[float] = None, reconnect: int = 0,
                 backoff: float = 0.5, max_buffers: int = 4, description: Optional[str] = None,
                 decode_threads: Optional[int] = None):
        super().__init__(uri)
        # software decoders (avdec_*) default to one thread: with few cores a decoder that
        # spreads over all of them pre-empts the inference thread (measured on 2 cores:
        # pipeline/bare 0.82 -> 0.87).  0 = the decoder's own choice.  URI: ?decode-threads=N
        if decode_threads is None:
            q = uri.query.get("decode-threads", 1)
            try:
                decode_threads = int(q)
            except (TypeError, ValueError):
                raise InputError(f"{uri}: decode-threads={q!r} is not a whole number: use e.g. ?decode-threads=2 "
                                 "(0 = as many as the decoder wants)") from None
        if decode_threads < 0:
            raise InputError(f"{uri}: decode_threads={decode_threads} must be >= 0 (0 = the decoder's choice)")
        self.decode_threads = int(decode_threads)
        self.live = uri.live
        # a file that yields nothing for this long is stuck; a live source has stalled
        self.timeout = float(timeout if timeout is not None else (5.0 if self.live else 10.0))
        self.reconnect = int(reconnect)
        self.backoff = float(backoff)
        self.max_buffers = int(max_buffers)
        self._description = description
        self._pipeline = None
        self._sink = None
        self._bus = None
        self._arrived = 0  # buffers that entered the leaky queue (live)
        self._arrived_lock = threading.Lock()
        self._closed = False
        self._last_end: Optional[float] = None
        self._prev: Optional[Tuple[int, Optional[float]]] = None  # (index, pts) of the last frame delivered
        self._steps: "collections.deque" = collections.deque(maxlen=15)  # recent PTS steps of one frame
        self.repeated = 0  # frames of a damaged file skipped because their PTS repeated an earlier one
        self._preflight()
        self._start()

    # -- lifecycle -----------------------------------------------------------
    def _preflight(self) -> None:
        u = self.uri
        if u.scheme == "file":
            p = Path(u.path)
            if not p.exists():
                raise SourceError(f"{u}: file not found ({p.resolve()}): check the path")
            if p.is_dir():
                raise SourceError(f"{u}: is a directory, not a video file")
            if not os.access(p, os.R_OK):
                raise SourceError(f"{u}: file is not readable (permissions)")
            if p.stat().st_size == 0:
                raise SourceError(f"{u}: file is empty (0 bytes): not a video")
            problem = isobmff_problem(p)
            if problem:
                raise SourceError(f"{u}: {problem}")
        elif u.scheme == "v4l2":
            if not os.path.exists(u.path):
                raise SourceError(f"{u}: camera device {u.path} does not exist: is the camera plugged in? "
                                  "(list devices with: ls /dev/video*)")
        gstreamer.gst()
        if u.scheme == "csi" and not gstreamer.on_jetson():
            for element in ("nvarguscamerasrc", "nvvidconv"):
                if not gstreamer.has_element(element):
                    raise SourceError(
                        f"{u}: needs the GStreamer element '{element}', which is not installed here "
                        "(CSI cameras work on a Jetson with JetPack); use v4l2:///dev/videoN for a USB camera"
                    )

    def _start(self) -> None:
        Gst = gstreamer.gst()
        desc = self._description or pipeline_description(self.uri, max_buffers=self.max_buffers)
        try:
            pipeline = Gst.parse_launch(desc)
        except Exception as exc:  # GLib.Error: no element "...", syntax error
            raise SourceError(f"{self.uri}: cannot build the GStreamer pipeline: {redact(str(exc))}") from exc
        sink = pipeline.get_by_name("sink")
        if sink is None:
            raise InputError(f"{self.uri}: the pipeline description has no 'appsink name=sink': end it "
                             "with one (see edgevos.jetson.pipelines)")
        self._pipeline, self._sink, self._bus = pipeline, sink, pipeline.get_bus()
        pipeline.connect("deep-element-added", lambda _bin, _sub, element: self._tune(element))
        it = pipeline.iterate_recurse()
        while True:
            ok, element = it.next()
            if ok != Gst.IteratorResult.OK:
                break
            self._tune(element)
        leak = pipeline.get_by_name("leak")
        if leak is not None:
            pad = leak.get_static_pad("sink")
            pad.add_probe(Gst.PadProbeType.BUFFER, self._count_arrival)
        ret = pipeline.set_state(Gst.State.PLAYING)
        if ret == Gst.StateChangeReturn.FAILURE:
            err = self._pop_error(timeout_s=0.5)
            self._teardown()
            raise SourceError(f"{self.uri}: cannot start: {err or 'state change to PLAYING failed'}")

    def _tune(self, element) -> None:
        """Thread count of software video decoders (see ``decode_threads``)."""
        factory = element.get_factory()
        if factory is None or not factory.get_name().startswith("avdec_"):
            return
        if element.find_property("max-threads") is not None:
            element.set_property("max-threads", self.decode_threads)

    def _count_arrival(self, pad, info):
        with self._arrived_lock:
            self._arrived += 1
        return gstreamer.gst().PadProbeReturn.OK

    def _teardown(self) -> None:
        if self._pipeline is not None:
            self._pipeline.set_state(gstreamer.gst().State.NULL)
            self._pipeline.get_state(5 * gstreamer.gst().SECOND)
        self._pipeline = self._sink = self._bus = None

    def __del__(self):
        try:
            if not self._closed and self._pipeline is not None:
                self._teardown()
        except Exception:
            pass

    def close(self) -> None:
        self._stop.set()
        if not self._closed:
            self._closed = True
            self._teardown()

    def _pop_error(self, timeout_s: float = 0.0) -> Optional[str]:
        """The text of a pending bus ERROR (None when there is none)."""
        if self._bus is None:
            return None
        Gst = gstreamer.gst()
        msg = self._bus.timed_pop_filtered(int(timeout_s * Gst.SECOND), Gst.MessageType.ERROR)
        if msg is None:
            return None
        err, dbg = msg.parse_error()
        src = msg.src.get_name() if msg.src is not None else "?"
        text = f"{err.message} (from element '{src}')"
        if dbg and "missing" in dbg.lower():
            text += f" [{dbg.splitlines()[0]}]"
        if "missing a plug-in" in err.message:
            text += ("; no decoder for this stream's codec is installed: install gstreamer1.0-libav / "
                     "gstreamer1.0-plugins-bad / gstreamer1.0-plugins-ugly, or re-encode the video to H.264")
        return redact(text)

    # -- frames --------------------------------------------------------------
    def _to_frame(self, sample) -> Optional[Frame]:
        Gst = gstreamer.gst()
        buf = sample.get_buffer()
        s = sample.get_caps().get_structure(0)
        w, h = s.get_value("width"), s.get_value("height")
        self._check_size(h, w, self.delivered)
        if self.fps is None:
            ok, num, den = s.get_fraction("framerate")
            if ok and den and num:
                self.fps = num / den
        data = buf.extract_dup(0, buf.get_size())
        stride = (w * 3 + 3) & ~3  # GStreamer pads RGB rows to 4 bytes
        if len(data) < stride * (h - 1) + w * 3:
            raise SourceError(f"{self.uri}: decoded buffer of {len(data)} bytes is too small for {w}x{h} RGB")
        arr = np.frombuffer(data, np.uint8)
        if stride == w * 3:
            rgb = arr[: h * w * 3].reshape(h, w, 3)
        else:
            rgb = np.lib.stride_tricks.as_strided(arr, (h, w, 3), (stride, 3, 1))
            rgb = np.ascontiguousarray(rgb)
        pts = None if buf.pts == Gst.CLOCK_TIME_NONE else buf.pts / Gst.SECOND
        if pts is not None:
            dur = buf.duration / Gst.SECOND if buf.duration != Gst.CLOCK_TIME_NONE else 0.0
            self._last_end = pts + dur
        index = self._source_index(pts)
        if index is None:
            self.repeated += 1
            return None
        frame = Frame(index, pts, rgb)
        self.delivered += 1
        if self.live:
            with self._arrived_lock:
                arrived = self._arrived
            # every buffer that entered the leaky queue was either delivered, is still
            # in flight (at most queue 1 + appsink 1) or was dropped
            self.dropped = max(self.dropped, arrived - self.delivered - 2)
        return frame

    def _source_index(self, pts: Optional[float]) -> Optional[int]:
        """A file's frame number from the PTS step since the previous frame over the frame period,
        so a frame the decoder drops (a corrupt slice) leaves a gap instead of shifting every
        later output; the gap is counted in ``dropped``.  Step by step, not from the first PTS,
        so a rate that is nominal only (29.97 against 30) never adds up to a false gap; the
        period is the median of recent one-frame steps.  Live
        sources, and files without PTS or rate, count delivered frames.  None for a frame whose
        PTS is not after the previous one's (a damaged stream's decoder output): it is skipped
        and counted in ``repeated``."""
        if self._prev is None:
            index = self.delivered
        elif self.live or pts is None or self._prev[1] is None or not (self.fps or self._steps):
            index = self._prev[0] + 1
        elif pts <= self._prev[1]:
            return None  # a damaged stream's decoder repeats a time: that frame has no place of its own
        else:
            step = pts - self._prev[1]
            # the frame period: the median of recent steps (a container's rate can be an average
            # that already counts the gap), the nominal rate until there are any
            period = statistics.median(self._steps) if self._steps else 1.0 / self.fps
            n = max(1, round(step / period))
            if n == 1:
                self._steps.append(step)
            index = self._prev[0] + n
        gap = index - (self._prev[0] + 1 if self._prev is not None else index)
        if gap > 0:
            self.dropped += gap
            if self.dropped == gap:
                warnings.warn(f"{self.uri}: {gap} frame(s) could not be decoded before {pts:.3f} s (damaged "
                              "stream?); outputs keep the source's frame numbers and the summary counts them",
                              RuntimeWarning, stacklevel=2)
        self._prev = (index, pts)
        return index

    def __iter__(self) -> Iterator[Frame]:
        Gst = gstreamer.gst()
        poll = 0.1
        while not self._stop.is_set():
            if self._sink is None:
                return
            waited = 0.0
            sample = None
            while sample is None and not self._stop.is_set():
                sample = self._sink.try_pull_sample(int(poll * Gst.SECOND))
                if sample is not None:
                    break
                err = self._pop_error()
                if err is not None:
                    self._fail(self._error_reason(err))
                    break
                if self._sink.is_eos():
                    err = self._pop_error(0.05)
                    if err is not None:
                        self._fail(self._error_reason(err))
                        break
                    if self.live:
                        self._fail("stream ended (camera disconnected?)")
                        break
                    if self.delivered == 0:
                        raise SourceError(f"{self.uri}: {NO_VIDEO.format(path=self.uri.path)}")
                    self._finish()
                    short = self._truncated()
                    self._teardown()
                    self._closed = True
                    if short:
                        raise SourceError(
                            f"{self.uri}: file is truncated: frames end at {short[0]:.2f} s but the "
                            f"container says {short[1]:.2f} s (frames already delivered: {self.delivered})"
                        )
                    return
                waited += poll
                if waited >= self.timeout:
                    self._fail(NO_VIDEO.format(path=self.uri.path) if self._no_video() else
                               f"no frame for {self.timeout:.1f} s (source stalled or disconnected)")
                    break
            if sample is None:
                continue  # stopped, or reconnected: loop re-checks
            frame = self._to_frame(sample)
            if frame is not None:
                yield frame

    def _no_video(self) -> bool:
        """A file whose decoder never produced a video format: audio only, or a video track
        without frames."""
        if self.uri.scheme != "file" or self.delivered or self._sink is None:
            return False
        pad = self._sink.get_static_pad("sink")
        return pad is not None and pad.get_current_caps() is None

    def _error_reason(self, err: str) -> str:
        """A bus error as the run reports it (GStreamer's "Internal data stream error" for a
        file without video says that instead)."""
        generic = "stream error" in err.lower()  # a missing decoder etc. keeps its own message
        return NO_VIDEO.format(path=self.uri.path) if generic and self._no_video() else f"GStreamer error: {err}"

    def _truncated(self):
        """(last frame end, video duration) when a file's frames stop well before the duration
        its container records for the video (a truncated download/copy); None otherwise.

        Like is compared with like: an MP4's video track duration (not the movie's, which an
        audio track can outlast), or the container's duration when video is its only stream;
        an elementary stream (``.h264``) or a fragmented MP4 records none, so is not judged."""
        if self.live or self._pipeline is None or self._last_end is None:
            return None
        dur_s = self._video_duration()
        if not dur_s:
            return None
        frame = 1.0 / self.fps if self.fps else 0.04
        if self._last_end < dur_s - max(3 * frame, 0.1):
            return self._last_end, dur_s
        return None

    def _video_duration(self) -> Optional[float]:
        """The duration (s) the file's container records for its video stream, or None."""
        Gst = gstreamer.gst()
        path = Path(self.uri.path)
        if isobmff(path):
            return mp4_video_duration(path)
        container = demuxer = None
        it = self._pipeline.iterate_recurse()
        while True:
            ok, element = it.next()
            if ok != Gst.IteratorResult.OK:
                break
            factory = element.get_factory()
            if factory is None:
                continue
            if factory.get_name() == "typefind" and element.get_property("caps") is not None:
                container = element.get_property("caps").get_structure(0).get_name()
            if "Demux" in (factory.get_metadata("klass") or ""):
                demuxer = element
        if container not in DURATION_CONTAINERS or demuxer is None or demuxer.numsrcpads != 1:
            return None  # an estimate (elementary stream) or the longest of several streams
        ok, dur = self._pipeline.query_duration(Gst.Format.TIME)
        return dur / Gst.SECOND if ok and dur > 0 else None

    def _finish(self) -> None:
        if self.live:
            with self._arrived_lock:
                self.dropped = max(self.dropped, self._arrived - self.delivered)

    def _fail(self, reason: str) -> None:
        """Reconnect (live, attempts left) or raise SourceError."""
        if self.live and self.reconnects < self.reconnect:
            self.reconnects += 1
            delay = min(self.backoff * (2 ** (self.reconnects - 1)), 30.0)
            self._teardown()
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self._stop.is_set():
                time.sleep(min(0.05, delay))
            if self._stop.is_set():
                return
            with self._arrived_lock:
                self._arrived = self.delivered + self.dropped  # new pipeline: keep counts monotone
            try:
                self._start()
            except SourceError as exc:
                if self.reconnects < self.reconnect:
                    self._fail(str(exc))
                    return
                raise SourceError(f"{self.uri}: {reason}; reconnect attempt {self.reconnects} failed: {exc}") from exc
            return
        self._teardown()
        self._closed = True
        tail = f" after {self.reconnects} reconnect attempt(s)" if self.reconnects else ""
        raise SourceError(f"{self.uri}: {reason}{tail} (frames already delivered: {self.delivered})")
