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
(NVMM, hardware decode); elsewhere from the software presets below.
"""
from __future__ import annotations

import collections
import os
import queue
import statistics
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

import numpy as np

from edgevos.errors import DataError, InputError, SourceError, require
from edgevos.runtime.uri import URI, parse_source, redact

_GST = None
_GST_LOCK = threading.Lock()


def _prefer_libgcc_unwinder() -> None:
    """Put libgcc_s's C++ unwinder in the global symbol scope before GStreamer loads.

    libgstreamer links libunwind.so.8, which also exports ``_Unwind_*``.  If it
    reaches the global scope first, C++ libraries loaded later in the process
    (PyTorch's tracer and ``torch.load``) unwind their exceptions with it and
    abort.  Loading libgcc_s globally first keeps the toolchain's unwinder.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("gcc_s") or "libgcc_s.so.1"
    try:
        ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
    except OSError:  # not a glibc/libgcc system: nothing to protect
        pass


def gst():
    """Import and initialise GStreamer (``Gst``) once; DependencyError if absent."""
    global _GST
    with _GST_LOCK:
        if _GST is None:
            _prefer_libgcc_unwinder()
            gi = require("gi", "gst", "GStreamer sources and sinks")
            try:
                gi.require_version("Gst", "1.0")
                gi.require_version("GstApp", "1.0")
                from gi.repository import Gst, GstApp  # noqa: F401  (GstApp adds try_pull_sample)
            except (ValueError, ImportError) as exc:
                from edgevos.errors import DependencyError

                raise DependencyError(
                    f"GStreamer 1.0 introspection data not found ({exc}): install the OS packages "
                    "gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 (Debian/Ubuntu; JetPack has them)"
                ) from exc
            Gst.init(None)
            _GST = Gst
    return _GST


def has_element(name: str) -> bool:
    return gst().ElementFactory.find(name) is not None


def on_jetson() -> bool:
    """True on a Jetson with its hardware video elements available."""
    if not Path("/etc/nv_tegra_release").exists():
        return False
    try:
        return has_element("nvv4l2decoder") and has_element("nvvidconv")
    except Exception:
        return False


@dataclass
class Frame:
    """One decoded frame: ``rgb`` is (H, W, 3) uint8 (read-only for GStreamer sources:
    copy it before drawing on it); ``pts`` in seconds or None; ``gt`` the ground-truth
    id mask when the source has one.  ``index`` is the source's frame number from 0: for a
    file, from the PTS (a frame the decoder dropped leaves a gap); for a live source, the
    count of delivered frames, continued across reconnects."""

    index: int
    pts: Optional[float]
    rgb: np.ndarray
    gt: Optional[np.ndarray] = None


class Source:
    """Base class: an iterable of :class:`Frame` plus state the runner reads."""

    live = False

    def __init__(self, uri: URI):
        self.uri = uri
        self.dropped = 0  # frames never delivered: too slow for a live source, undecodable in a file
        self.delivered = 0
        self.reconnects = 0
        self.first_mask: Optional[np.ndarray] = None
        self.fps: Optional[float] = None  # nominal frame rate when known
        self.size: Optional[Tuple[int, int]] = None  # (H, W) once known
        self._stop = threading.Event()

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def stop(self) -> None:
        """Ask a running iteration to end after the current frame (thread/signal safe)."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _check_size(self, h: int, w: int, index: int) -> None:
        if self.size is None:
            self.size = (h, w)
        elif self.size != (h, w):
            raise SourceError(
                f"{self.uri}: frame size changed from {self.size[1]}x{self.size[0]} to {w}x{h} at frame "
                f"{index}; a size change mid-stream is not supported (the session, buffers and video "
                "outputs are sized on the first frame): restart the run for the new size"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri})"


# ----------------------------------------------------------------------------
# synthetic and DAVIS sources (ground truth)
# ----------------------------------------------------------------------------
class TestSource(Source):
    """``test://?frames=60&objects=2&seed=0&size=240x432&speed=1``: a synthetic
    sequence (moving shapes on a textured background) with ground truth."""

    __test__ = False  # not a pytest class

    def __init__(self, uri: URI):
        super().__init__(uri)
        from edgevos.data.synthetic import SyntheticConfig

        h, w = uri.get_size("size", (240, 432))
        kwargs = dict(height=h, width=w, num_frames=uri.get_int("frames", 60),
                      num_objects=uri.get_int("objects", 2), seed=uri.get_int("seed", 0))
        if "speed" in uri.query:
            kwargs["speed"] = uri.get_float("speed", 1.0)
        if kwargs["num_frames"] < 1 or kwargs["num_objects"] < 1:
            raise InputError(f"{uri}: frames and objects must be >= 1")
        unknown = set(uri.query) - {"size", "frames", "objects", "seed", "speed", "fps"}
        if unknown:
            raise InputError(f"{uri}: unknown option(s) {sorted(unknown)}; known: frames, objects, seed, size, speed, fps")
        self._config = SyntheticConfig(**kwargs)
        self._scene = self._start_scene()  # built lazily: one frame at a time, however long the sequence
        self._first = next(self._scene)
        self.first_mask = self._first[1].copy()
        self.size = tuple(self._first[0].shape[:2])
        self.fps = uri.get_float("fps", 30.0)
        if not 0 < self.fps < 1e4:
            raise InputError(f"{uri}: fps={uri.query.get('fps')} must be a positive rate, e.g. fps=30")

    def _start_scene(self):
        from edgevos.data.synthetic import iter_frames

        scene = iter_frames(self._config)
        next(scene)  # the depth order
        return scene

    def __len__(self) -> int:
        return self._config.num_frames

    def __iter__(self) -> Iterator[Frame]:
        if self._scene is not None:  # the first pass reuses the frame rendered for first_mask
            scene, first, self._scene = self._scene, self._first, None
        else:
            scene = self._start_scene()
            first = next(scene)
        for i in range(len(self)):
            if self._stop.is_set():
                return
            rgb, mask, _ = first if i == 0 else next(scene)
            self.delivered += 1
            yield Frame(i, i / self.fps, rgb, mask)


class DavisSource(Source):
    """``davis://ROOT?seq=NAME``: the JPEG frames of one DAVIS-layout sequence,
    with its annotations as ground truth (``first_mask`` from frame 0)."""

    def __init__(self, uri: URI):
        super().__init__(uri)
        from edgevos.data.davis import DavisDataset

        name = uri.query.get("seq")
        if not name:
            raise InputError(f"{uri}: name the sequence, e.g. davis://ROOT?seq=bear")
        try:
            self._seq = DavisDataset(uri.path, sequences=[name], allow_missing_masks=True)[name]
        except DataError as exc:
            raise SourceError(f"{uri}: {exc}") from exc
        self.first_mask = self._seq.mask(0)
        self.fps = 24.0

    def __len__(self) -> int:
        return len(self._seq)

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self._seq)):
            if self._stop.is_set():
                return
            try:
                rgb = self._seq.frame(i)
                gt = self._seq.mask(i)
            except DataError as exc:
                raise SourceError(f"{self.uri}: {exc}") from exc
            self._check_size(rgb.shape[0], rgb.shape[1], i)
            self.delivered += 1
            yield Frame(i, i / self.fps, rgb, gt)


# ----------------------------------------------------------------------------
# GStreamer sources
# ----------------------------------------------------------------------------
def _q(path: str) -> str:
    """Quote a value for gst_parse_launch."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Prefetcher:
    """Iterates a lossless source in a background thread ("edgevos-frames"), ``depth`` frames ahead.

    Turning a decoded GStreamer sample into a numpy frame (pull, copy out of the
    buffer, caps) costs the consumer ~0.5-1 ms a frame; here it overlaps with
    inference, and the consumer only takes the next frame off a queue (measured:
    wait per frame 0.7-1.0 -> 0.06 ms, pipeline/bare 0.87 -> 0.92, 8 of 8 paired
    runs better).  Frames come in order; an error of the source is raised where
    the stream broke, after every frame before it.  For files, test:// and
    davis:// only: a live source keeps its latest-frame policy in the caller.
    """

    _END = object()

    class _Error:
        def __init__(self, exc: BaseException):
            self.exc = exc

    def __init__(self, source: Source, depth: int = 3):
        self.source = source
        self._queue: "queue.Queue" = queue.Queue(maxsize=max(1, int(depth)))
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgevos-frames", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for frame in self.source:
                if not self._put(frame):
                    return
        except BaseException as exc:  # raised to the consumer in order
            self._put(self._Error(exc))
            return
        self._put(self._END)

    def __iter__(self) -> Iterator[Frame]:
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._thread.is_alive():
                    continue
                return  # the reader ended without a word (closed)
            if item is self._END:
                return
            if isinstance(item, self._Error):
                raise item.exc
            yield item

    def close(self, timeout: float = 5.0) -> None:
        """Stop the reader (the source ends its iteration) and wait for it; idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.source.stop()
        while True:  # free a reader blocked on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout)


def frames_of(source: Source, prefetch: int = 3):
    """(iterator, prefetcher or None): a lossless source read ``prefetch`` frames ahead in a
    background thread; a live source (latest-frame policy) or ``prefetch=0`` read in the caller."""
    if prefetch <= 0 or getattr(source, "live", False):
        return iter(source), None
    p = Prefetcher(source, prefetch)
    return iter(p), p


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
        jetson = on_jetson()
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
        return f"filesrc location={_q(uri.path)} ! decodebin ! " + RGB_TAIL_FILE.format(max_buffers=max_buffers)
    if uri.scheme == "v4l2":
        # decodebin passes raw (YUYV) frames through and decodes MJPEG cameras
        return f"v4l2src device={_q(uri.path)} ! {_raw_caps(uri)}decodebin ! " + LIVE_TAIL
    if uri.scheme == "csi":
        # reaching here without Jetson elements: build the Jetson preset anyway so the
        # missing element is reported by name when the pipeline is parsed
        from edgevos.jetson import pipelines as jp

        return jp.csi_source(int(uri.path), **_caps_options(uri))
    if uri.scheme == "rtsp":
        return (f"rtspsrc location={_q(uri.raw)} latency=100 protocols=tcp ! decodebin ! " + LIVE_TAIL)
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
            problem = _isobmff_problem(p)
            if problem:
                raise SourceError(f"{u}: {problem}")
        elif u.scheme == "v4l2":
            if not os.path.exists(u.path):
                raise SourceError(f"{u}: camera device {u.path} does not exist: is the camera plugged in? "
                                  "(list devices with: ls /dev/video*)")
        gst()
        if u.scheme == "csi" and not on_jetson():
            for element in ("nvarguscamerasrc", "nvvidconv"):
                if not has_element(element):
                    raise SourceError(
                        f"{u}: needs the GStreamer element '{element}', which is not installed here "
                        "(CSI cameras work on a Jetson with JetPack); use v4l2:///dev/videoN for a USB camera"
                    )

    def _start(self) -> None:
        Gst = gst()
        desc = self._description or pipeline_description(self.uri, max_buffers=self.max_buffers)
        try:
            pipeline = Gst.parse_launch(desc)
        except Exception as exc:  # GLib.Error: no element "...", syntax error
            raise SourceError(f"{self.uri}: cannot build the GStreamer pipeline: {redact(str(exc))}") from exc
        sink = pipeline.get_by_name("sink")
        if sink is None:
            raise SourceError(f"{self.uri}: pipeline has no 'appsink name=sink'")
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
        return gst().PadProbeReturn.OK

    def _teardown(self) -> None:
        if self._pipeline is not None:
            self._pipeline.set_state(gst().State.NULL)
            self._pipeline.get_state(5 * gst().SECOND)
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
        Gst = gst()
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
        Gst = gst()
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
        Gst = gst()
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
        Gst = gst()
        path = Path(self.uri.path)
        if _isobmff(path):
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


_BMFF_TOP = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"moof", b"mfra", b"uuid",
             b"styp", b"sidx", b"meta", b"pdin", b"udta"}


#: containers whose recorded duration is exact (not estimated from the bitrate)
DURATION_CONTAINERS = ("video/x-matroska", "video/webm", "video/x-msvideo", "video/quicktime")


def _isobmff(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


def _boxes(fh, start: int, end: int):
    """(type, payload offset, payload end) of the ISO BMFF boxes between two file offsets."""
    import struct

    offset = start
    while offset + 8 <= end:
        fh.seek(offset)
        hdr = fh.read(16)
        if len(hdr) < 8:
            return
        size, kind = struct.unpack(">I4s", hdr[:8])
        head = 8
        if size == 1 and len(hdr) >= 16:
            size, head = struct.unpack(">Q", hdr[8:16])[0], 16
        elif size == 0:
            size = end - offset
        if size < head:
            return
        yield kind, offset + head, min(offset + size, end)
        offset += size


def mp4_video_duration(path: Path) -> Optional[float]:
    """The presentation duration (s) of an MP4/MOV file's first video track, from its
    ``moov`` index (``tkhd`` in movie time, else ``mdhd``); None when there is no such
    index, the file is fragmented (durations live in the fragments) or it is malformed."""
    import struct

    def child(fh, start, end, kind):
        return next(((a, b) for k, a, b in _boxes(fh, start, end) if k == kind), None)

    def full_box(fh, start, fields_v0, fields_v1):
        fh.seek(start)
        version = fh.read(1)[0]
        fh.seek(start + 4)
        fmt = fields_v1 if version == 1 else fields_v0
        return struct.unpack(fmt, fh.read(struct.calcsize(fmt)))

    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            moov = child(fh, 0, size, b"moov")
            if moov is None or child(fh, *moov, b"mvex") is not None:
                return None
            mvhd = child(fh, *moov, b"mvhd")
            movie_scale = full_box(fh, mvhd[0], ">IIII", ">QQIQ")[2] if mvhd else 0
            for kind, start, end in _boxes(fh, *moov):
                if kind != b"trak":
                    continue
                mdia = child(fh, start, end, b"mdia")
                hdlr = child(fh, *mdia, b"hdlr") if mdia else None
                if hdlr is None:
                    continue
                fh.seek(hdlr[0] + 8)
                if fh.read(4) != b"vide":
                    continue
                tkhd = child(fh, start, end, b"tkhd")
                if tkhd and movie_scale:
                    t = full_box(fh, tkhd[0], ">IIIII", ">QQIIQ")[4]
                    if 0 < t < 0xFFFFFFFF:
                        return t / movie_scale
                mdhd = child(fh, *mdia, b"mdhd")
                if mdhd:
                    scale, dur = full_box(fh, mdhd[0], ">IIII", ">QQIQ")[2:4]
                    return dur / scale if scale and 0 < dur < 0xFFFFFFFF else None
                return None
    except (OSError, IndexError, struct.error, TypeError):
        return None
    return None


def _isobmff_problem(path: Path) -> Optional[str]:
    """For MP4/MOV files: a reason the file cannot play (no 'moov' index: the recording
    was cut off before it was finalized), else None.  Other containers: None."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8 or head[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
            return None
        offset, seen = 0, set()
        while offset + 8 <= size:
            fh.seek(offset)
            hdr = fh.read(16)
            box_size, kind = struct.unpack(">I4s", hdr[:8])
            if kind not in _BMFF_TOP:
                return None  # not a box sequence we understand: let GStreamer judge
            if box_size == 1 and len(hdr) >= 16:
                box_size = struct.unpack(">Q", hdr[8:16])[0]
            elif box_size == 0:
                box_size = size - offset
            if box_size < 8:
                return None
            seen.add(kind)
            if kind in (b"moov", b"moof"):
                return None
            if offset + box_size > size:
                break
            offset += box_size
    if b"moov" not in seen and b"moof" not in seen:
        return ("MP4/MOV file has no 'moov' index: it is truncated or was not finalized "
                "(a recording cut off before it was closed); re-copy or re-record it")
    return None


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
